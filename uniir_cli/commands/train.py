"""`uniir train`: train a retriever with Accelerate (1 CPU, 1..N GPUs, several nodes), resumably."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from uniir_cli.commands import options, show_config_and_exit
from uniir_cli.commands.steps import PlainLines, live

console = Console()


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", "-c", help="Initial weights: a uniir checkpoint folder or a released UniIR .pth (default: model.pretrained).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="Continue the run from its latest checkpoint.")] = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Train a retriever on M-BEIR (or any data in its layout) with the UniIR recipe of a preset.

    Multi-GPU / multi-node: `accelerate launch -m uniir_cli train ...` (or torchrun); a
    killed run continues with --resume. `uniir eval --run-dir R` then evaluates the final
    checkpoint.

    Example: uniir train --preset clip-sf-large --data-dir /data/M-BEIR --run-dir runs/clip-sf-large
    """
    if show_config:
        show_config_and_exit(preset, overrides, run_dir, {})
    final = train_with_progress(preset, run_dir=run_dir, data_dir=data_dir, checkpoint=checkpoint, resume=resume,
                                overrides=overrides or ())
    if final is not None:
        console.print(f"evaluate it with: uniir eval --run-dir {final.parent.parent}")


def train_with_progress(preset: str | None, **kwargs: Any) -> Path | None:
    """The library's `train` with a progress bar, the opening line and the final checkpoint
    (main process only); returns the final checkpoint."""
    from uniir_cli.distributed import process_state
    from uniir_cli.training.loop import train

    bars = training_progress() if process_state().is_main_process else contextlib.nullcontext(None)
    with bars as update:
        final = train(preset, progress=update, on_open=_print_opened, **kwargs)
    if final is not None:
        console.print(f"final checkpoint: [bold]{final}[/]")
    return final


def _print_opened(session: Any) -> None:
    console.print(f"run directory: [bold]{session.run.root}[/]  data: {session.data_dir}")


@contextlib.contextmanager
def training_progress() -> Iterator[Any]:
    """A rich bar over optimizer steps with loss, accuracy, lr and samples/s (plain lines when
    the console is not a terminal)."""
    if not console.is_terminal:
        plain = PlainLines()
        yield lambda record: plain("train step", record["step"], record["total_steps"], _train_info(record))
        return
    progress = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(), console=console,
    )
    task = progress.add_task("train", total=None, info="")

    with live(progress) as start:

        def update(record: dict[str, Any]) -> None:
            start()
            progress.update(
                task, completed=record["step"], total=record["total_steps"],
                info=_train_info(record),
            )

        yield update


def _train_info(record: dict[str, Any]) -> str:
    return (f"loss {record['loss']:.3f} acc {record['accuracy']:.2f} lr {record['lr']:.2e} "
            f"{record['samples_per_s']:.0f} samples/s")
