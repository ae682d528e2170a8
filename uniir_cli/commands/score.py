"""`uniir score`: Score run files: Recall@k (hit rate, as UniIR), true recall, MRR@10, nDCG@10."""

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
    """Score run files: Recall@k (hit rate, as UniIR), true recall, MRR@10, nDCG@10.

    Example: uniir score --run-dir runs/clip-sf-large
    """
    resolve_command_config(preset, overrides, run_dir, show_config=show_config)
    raise not_implemented("score", "issue #4, evaluation pipeline")
