"""`uniir eval`: embed -> index -> retrieve -> score -> report, skipping unchanged steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    compare_run_dirs: Annotated[Optional[list[Path]], typer.Option(
        "--compare-run-dir", file_okay=False,
        help="A scored run whose columns the report shows beside this one (e.g. the zero-shot model); repeatable.")] = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Evaluate a retriever on M-BEIR: embed, index, retrieve, score and report in one resumable command.

    Steps whose inputs did not change since the last run are skipped (--force redoes them).
    Without --checkpoint, a run that was trained with `uniir train` uses its latest checkpoint.
    --compare-run-dir puts other scored runs' columns beside this run's in the report.

    Example: uniir eval --preset clip-sf-large --data-dir /data/M-BEIR --checkpoint ckpt/clip-sf-large --pool global
    """
    from uniir_cli.evaluation.pipeline import STEPS

    result = run_steps(
        "eval", STEPS, preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks, "embed.on_bad_image": on_bad_image, "retrieve.rag": rag},
        compare_with=compare_run_dirs or (),
    )
    if result.metrics is not None:
        print_tables(result.tables)
        console.print(f"report: {result.run.report_md}  metrics: {result.run.metrics_json}")
