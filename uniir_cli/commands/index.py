"""`uniir index`: Build exact (or approximate) inner-product indexes over the embedded pools."""

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
    """Build exact (or approximate) inner-product indexes over the embedded pools.

    Example: uniir index --run-dir runs/clip-sf-large
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("index", "issue #4, evaluation pipeline")
