"""`uniir embed`: Embed query sets and candidate pools into sharded fp16 files, resumably."""

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
    """Embed query sets and candidate pools into sharded fp16 files, resumably.

    Example: uniir embed --run-dir runs/clip-sf-large
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("embed", "issue #4, evaluation pipeline")
