"""`uniir validate`: check an M-BEIR data tree and print a summary table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import options
from uniir_cli.commands.options import DataDir
from uniir_cli.errors import ConfigError, DataError

SEVERITY_STYLE = {"error": "red", "warning": "yellow", "note": "dim"}


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def run(
    data_dir: DataDir = None,
    split: Annotated[
        Optional[list[str]],
        typer.Option(
            "--split", callback=options.comma_separated,
            help="Split to check: test, val, train (repeat or comma-separate). Default: all (test required, val/train where present).",
        ),
    ] = None,
    tasks: options.Tasks = None,
    images: Annotated[
        bool, typer.Option("--images", metavar="", help="Also open every referenced image (slow on the full benchmark).")
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", metavar="", help="Read pools with the fast scanner (ids and modalities only); skip the union test pool scan."
        ),
    ] = False,
    max_issues: Annotated[int, typer.Option("--max-issues", min=0, help="Print at most this many problems.")] = 30,
) -> None:
    """Check a data tree: its pairs' files, declared datasets, counts, dangling ids, instructions, images.

    The pairs are M-BEIR's 16 on a full M-BEIR tree, else those whose query files are present (or
    --tasks).

    Exits with code 2 when there are errors. Example:

        uniir validate --data-dir /data/M-BEIR --split test --images
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from uniir_cli.data.tree_check import validate_data

    if data_dir is None:
        raise ConfigError("no data directory: pass --data-dir DIR or set UNIIR_DATA_DIR")
    report = validate_data(
        data_dir, splits=split or ("test", "val", "train"), tasks=tasks or (), images=images, quick=quick, max_messages=max(max_issues, 20)
    )

    console = Console()
    table = Table(title=escape(f"M-BEIR data at {report.root}"), title_justify="left")
    for header in ("split", "set", "queries", "pool", "qrels"):
        table.add_column(header, justify="right" if header in ("queries", "pool", "qrels") else "left", no_wrap=True)
    if images:
        table.add_column("bad images", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    for row in report.rows:
        if row.absent and not row.required:
            continue
        colour = "red" if row.errors else "yellow" if row.warnings else "green"
        cells = [row.split, row.name, _count(row.queries), _count(row.pool), _count(row.qrels)]
        if images:
            cells.append(f"{row.images_bad:,}/{row.images_checked:,}" if row.images_checked else "-")
        cells += [f"[{colour}]{row.status}[/]", escape(row.detail)]
        table.add_row(*cells)
    console.print(table)
    for split in report.splits:
        rows = [r for r in report.rows if r.split == split and r.name != "union pool"]
        absent = [r.name for r in rows if r.absent]
        if absent:
            names = "all query sets" if len(absent) == len(rows) else ", ".join(absent)
            console.print(f"{split}: not present, skipped: {names}", style="dim")

    shown = 0
    rank = {"error": 0, "warning": 1, "note": 2}
    for _, issue in sorted(report.issues(), key=lambda pair: rank[pair[1].severity]):
        if shown >= max_issues:
            break
        label = f"[{SEVERITY_STYLE[issue.severity]}]{issue.severity}[/]"
        console.print(f"{label}: {escape(issue.message)}", soft_wrap=True, highlight=False, markup=True)
        shown += 1
    total = sum(len(r.issues) + r.hidden for r in report.rows)
    if total > shown:
        console.print(f"... {total - shown} more problem(s) not shown (raise --max-issues)", style="dim")
    if report.errors:
        raise DataError(
            f"{report.errors} error(s) and {report.warnings} warning(s) in {report.root}; see the table above, "
            "fix or re-download the files named (uniir download mbeir)"
        )
    console.print(f"[green]ok[/]: {escape(str(report.root))} ({report.warnings} warning(s))")
