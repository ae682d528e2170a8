"""`uniir eval`: embed -> index -> retrieve -> score -> report, skipping unchanged steps."""

from __future__ import annotations

from uniir_cli.commands import options
from uniir_cli.commands.steps import console, print_tables, run_steps


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    checkpoint: options.Checkpoint = None,
    pool: options.Pool = None,
    tasks: options.Tasks = None,
    on_bad_image: options.OnBadImage = None,
    rag: options.Rag = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Evaluate a retriever on M-BEIR: embed, index, retrieve, score and report in one resumable command.

    Steps whose inputs did not change since the last run are skipped (--force redoes them).
    Without --checkpoint, a run that was trained with `uniir train` uses its latest checkpoint.

    Example: uniir eval --preset clip-sf-large --data-dir /data/M-BEIR --checkpoint ckpt/clip-sf-large --pool global
    """
    from uniir_cli.evaluation.pipeline import STEPS

    result = run_steps(
        "eval", STEPS, preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks, "embed.on_bad_image": on_bad_image, "retrieve.rag": rag},
    )
    if result.metrics is not None:
        print_tables(result.tables)
        console.print(f"report: {result.run.report_md}  metrics: {result.run.metrics_json}")
