"""`uniir eval`: Embed, index, retrieve, score and report in one resumable command."""

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
    """Embed, index, retrieve, score and report in one resumable command.

    Example: uniir eval --preset clip-sf-large --data-dir /data/M-BEIR --set retrieve.pool="global"
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("eval", "issue #4, evaluation pipeline")
