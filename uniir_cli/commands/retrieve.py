"""`uniir retrieve`: Retrieve the top-k candidates for each query set from local and global pools."""

from __future__ import annotations

from uniir_cli import options
from uniir_cli.commands import not_implemented, resolve_command_config


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    show_config: options.ShowConfig = False,
) -> None:
    """Retrieve the top-k candidates for each query set from local and global pools.

    Example: uniir retrieve --run-dir runs/clip-sf-large --set retrieve.pool="both"
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("retrieve", "issue #4, evaluation pipeline")
