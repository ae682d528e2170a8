"""`uniir train`: Train a retriever with Accelerate on 1..N GPUs or CPU processes."""

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
    """Train a retriever with Accelerate on 1..N GPUs or CPU processes.

    Example: uniir train --preset clip-sf-large --data-dir /data/M-BEIR
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("train", "issue #5, training")
