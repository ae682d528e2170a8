"""Shared driver of the pipeline commands (embed, index, retrieve, score, eval)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from uniir_cli.commands import show_config_and_exit

console = Console()


@contextlib.contextmanager
def live(progress: Progress) -> Iterator[Callable[[], None]]:
    """`progress` drawn from the first update on (a command that fails before its work
    shows no empty bar), and stopped at the end."""
    started = []

    def start() -> None:
        if not started:
            progress.start()
            started.append(True)

    try:
        yield start
    finally:
        if started:
            progress.stop()


PLAIN_EVERY_S = float(os.environ.get("UNIIR_PROGRESS_EVERY", "30"))


class PlainLines:
    """Progress for consoles that are not a terminal (CI logs, nohup, SLURM): one plain line
    per `PLAIN_EVERY_S` seconds (`UNIIR_PROGRESS_EVERY`), and one when a task finishes."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}  # when each task last printed
        self.started: dict[str, tuple[float, int]] = {}
        self.finished: set[str] = set()

    def __call__(self, name: str, done: int, total: int | None, info: str = "") -> None:
        now = time.monotonic()
        start, first = self.started.setdefault(name, (now, done))
        finished = total is not None and done >= total
        if name in self.finished or (not finished and now - self.last.get(name, start) < PLAIN_EVERY_S):
            return
        if finished:
            self.finished.add(name)
        self.last[name] = now
        rate = (done - first) / (now - start) if now > start else 0.0
        of = f"/{total:,}" if total is not None else ""
        console.print(f"{name}: {done:,}{of}" + (f" ({rate:,.0f}/s)" if rate else "") + (f" {info}" if info else ""),
                      highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bars() -> Iterator[Any]:
    """A (set name, done, total) callback drawing one rich bar per set, with items/s and ETA
    (plain lines when the console is not a terminal)."""
    if not console.is_terminal:
        plain = PlainLines()
        yield lambda name, done, total: plain(name, done, total)
        return
    bars = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        console=console, transient=False,
    )
    tasks: dict[str, Any] = {}

    with live(bars) as start:

        def update(name: str, done: int, total: int) -> None:
            start()
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total, rate="")
            task_id = tasks[name]
            bars.update(task_id, completed=done, total=total)
            speed = bars.tasks[task_id].speed
            bars.update(task_id, rate=f"{speed:,.0f} items/s" if speed else "")

        yield update


def print_tables(tables: list[Any]) -> None:
    """The report's tables for a terminal of any width: task and dataset names never cut (at
    80 columns Markdown rendering cut `mscoco_task0` and `mscoco_task3` alike to `mscoco_…`)."""
    from rich.table import Table

    from uniir_cli.evaluation.reporting import format_value

    for report in tables:
        rows = report.rows()
        table = Table(title=f"{report.title} (Recall, %)", title_justify="left", pad_edge=False)
        for i, header in enumerate(rows[0]):
            fixed = i < 3  # task, dataset, metric
            table.add_column(header, no_wrap=fixed, justify="left" if fixed else "right", overflow="fold")
        for row in rows:
            table.add_row(*(format_value(value) for value in row.values()))
        console.print(table)


def print_opened(session: Any) -> None:
    """The line every pipeline command starts with: run, data and model."""
    from uniir_cli.data.benchmark import EVAL_PAIRS
    from uniir_cli.data.eval_sets import eval_pairs

    model = session.checkpoint or f"{session.config.model.name} {session.config.model.size}"
    console.print(f"run directory: [bold]{session.run.root}[/]  data: {session.data_dir}  model: {model}")
    if not session.config.data.tasks:
        pairs = eval_pairs(session.config, session.layout)
        if pairs != list(EVAL_PAIRS):
            names = ", ".join(p.name for p in pairs)
            console.print(f"pairs found in the tree ({len(pairs)}): {names}", markup=False, highlight=False, soft_wrap=True)


def evaluate_with_progress(preset: str | None, **kwargs: Any) -> Any:
    """The library's `evaluate` with progress bars and the opening line (main process only)."""
    from uniir_cli.distributed import process_state
    from uniir_cli.evaluation.pipeline import evaluate

    bars = progress_bars() if process_state().is_main_process else contextlib.nullcontext(None)
    with bars as update:
        return evaluate(preset, progress=update, on_open=print_opened, **kwargs)


def run_steps(
    command: str,
    steps: tuple[str, ...],
    preset: str | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    data_dir: Path | None,
    checkpoint: Path | None,
    force: bool,
    show_config: bool,
    flags: dict[str, Any],
    compare_with: Sequence[Path] = (),
) -> Any:
    """`steps` of the evaluation pipeline for a command (`--show-config` prints and exits);
    returns the library's `Evaluation` (run, metrics summary or None). `compare_with`: scored
    runs whose columns the report shows beside this one."""
    if show_config:
        show_config_and_exit(preset, overrides, run_dir, flags)
    return evaluate_with_progress(preset, run_dir=run_dir, data_dir=data_dir, checkpoint=checkpoint,
                                  overrides=overrides or (), settings=flags, steps=steps, force=force, command=command,
                                  compare_with=compare_with)
