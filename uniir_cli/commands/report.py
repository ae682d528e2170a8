"""`uniir report`: paper-style tables of one or more runs next to the published numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markdown import Markdown

from uniir_cli.data.layout import MBeirLayout
from uniir_cli.errors import ConfigError
from uniir_cli.rundir import RunDir


def run(
    run_dirs: Annotated[list[Path], typer.Option("--run-dir", help="A scored run directory; repeat to compare runs.")],
    markdown: Annotated[bool, typer.Option("--markdown", metavar="", help="Print Markdown (the default).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", metavar="", help="Print CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw per-task bars into this PNG.")] = None,
    references: Annotated[
        Optional[bool], typer.Option(metavar="", help="Add the paper's and the released checkpoints' numbers (default: when the first run evaluated the published M-BEIR).")
    ] = None,
) -> None:
    """Paper-style table (task type, dataset, metric): one column per run, reference columns and deltas.

    References: the paper's Table 2 (global pool) / Table 6 (local pools) and a third-party
    reproduction of the released checkpoints, or the UniIR fork's MLLM table (six pairs, local pools), for the first run's model.

    Example: uniir report --run-dir runs/clip-sf-large --run-dir runs/my-model --markdown --plot report.png
    """
    from uniir_cli.evaluation.reporting import (
        build_tables,
        distinct_labels,
        reference_name,
        scored_run,
        to_csv,
        to_json,
        to_markdown,
    )
    from uniir_cli.evaluation.reporting import plot as draw

    if sum([markdown, as_csv, as_json]) > 1:
        raise ConfigError("choose one of --markdown, --csv, --json")
    runs = distinct_labels([scored_run(directory) for directory in run_dirs])
    first = RunDir(run_dirs[0])
    if references is None:
        recorded = first.recorded("data_dir")
        references = recorded is not None and MBeirLayout(recorded, check=False).is_published_mbeir()
    model_name = reference_name(first.stored_config().model) if references else None
    tables = build_tables(runs, model_name)
    if as_csv:
        typer.echo(to_csv(tables), nl=False)
    elif as_json:
        typer.echo(to_json(tables))
    else:
        text = to_markdown(tables)
        console = Console()
        console.print(Markdown(text)) if console.is_terminal else typer.echo(text)
    if plot is not None:
        draw(tables, str(plot))
        typer.echo(f"plot written to {plot}", err=True)
