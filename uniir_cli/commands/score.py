"""`uniir score`: Recall@k (hit rate, as UniIR), true recall, MRR@10 and nDCG@10 of the retrieval results."""

from __future__ import annotations

from uniir_cli.commands import options
from uniir_cli.commands.steps import console, run_steps


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    checkpoint: options.Checkpoint = None,
    pool: options.Pool = None,
    tasks: options.Tasks = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Score the retrieval results: Recall@k (hit rate, as UniIR), true recall, MRR@10, nDCG@10.

    Writes metrics/metrics.json and the upstream-compatible metrics/eval_results.tsv.

    Example: uniir score --run-dir runs/clip-sf-large
    """
    run = run_steps(
        "score", ("score",), preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks},
    ).run
    console.print(f"score: done ({run.root})")
