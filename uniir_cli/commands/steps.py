"""Shared driver of the pipeline commands (embed, index, retrieve, score, eval)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from uniir_cli.commands import open_run, resolve_command_config
from uniir_cli.rundir import RunDir

console = Console()


@contextlib.contextmanager
def progress_bars() -> Iterator[Any]:
    """A (set name, done, total) callback drawing one rich bar per set, with items/s and ETA."""
    bars = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        console=console, transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bars.add_task(name, total=total, rate="")
        task_id = tasks[name]
        bars.update(task_id, completed=done, total=total)
        speed = bars.tasks[task_id].speed
        bars.update(task_id, rate=f"{speed:,.0f} items/s" if speed else "")

    with bars:
        yield update


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
) -> tuple[RunDir, dict[str, Any] | None]:
    """Resolve config and run directory, then run `steps` of the evaluation pipeline.

    Returns the run and, on the main process when scored, the metrics summary."""
    from uniir_cli.data.layout import MBeirLayout
    from uniir_cli.distributed import process_state
    from uniir_cli.evaluation.pipeline import Context, default_checkpoint, evaluate

    resolved = resolve_command_config(preset, overrides, run_dir, flags, show_config)
    run, data_dir = open_run(command, resolved, preset, run_dir, data_dir)
    layout = MBeirLayout(data_dir)
    state = process_state()
    checkpoint = default_checkpoint(run, checkpoint)
    if not state.is_main_process:
        evaluate(Context(run, resolved.config, layout, checkpoint, force), steps)
        return run, None
    with run.command(command), progress_bars() as update:
        run.bind_config(resolved, command)
        run.record("data_dir", str(Path(data_dir).resolve()))
        if checkpoint is not None:
            run.record("checkpoint", str(Path(checkpoint).resolve()))
        console.print(f"run directory: [bold]{run.root}[/]  data: {data_dir}  model: "
                      f"{checkpoint or resolved.config.model.name + ' ' + resolved.config.model.size}")
        return run, evaluate(Context(run, resolved.config, layout, checkpoint, force, update), steps)
