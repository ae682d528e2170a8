"""`uniir train`: train a retriever with Accelerate (1 CPU, 1..N GPUs, several nodes), resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from uniir_cli.commands import options
from uniir_cli.commands import open_run, resolve_command_config

console = Console()


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", "-c", help="Initial weights: a uniir checkpoint folder or a released UniIR .pth (default: model.pretrained).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its latest checkpoint.")] = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Train a retriever on M-BEIR (or any data in its layout) with the UniIR recipe of a preset.

    Multi-GPU / multi-node: `accelerate launch -m uniir_cli train ...` (or torchrun); a
    killed run continues with --resume. `uniir eval --run-dir R` then evaluates the final
    checkpoint.

    Example: uniir train --preset clip-sf-large --data-dir /data/M-BEIR --run-dir runs/clip-sf-large
    """
    final = train_run(preset, overrides, run_dir, data_dir, checkpoint, resume, show_config)
    if final is not None:
        console.print(f"evaluate it with: uniir eval --run-dir {final.parent.parent}")


def train_run(
    preset: str | None,
    overrides: list[str] | None,
    run_dir: Path | None,
    data_dir: Path | None,
    checkpoint: Path | None = None,
    resume: bool = False,
    show_config: bool = False,
    flags: dict[str, Any] | None = None,
) -> Path | None:
    """Resolve config and run directory, train, and return the final checkpoint (main process)."""
    from uniir_cli.data.layout import MBeirLayout
    from uniir_cli.distributed import process_state
    from uniir_cli.training.loop import train

    resolved = resolve_command_config(preset, overrides, run_dir, flags, show_config)
    run, data_dir = open_run("train", resolved, preset, run_dir, data_dir)
    layout = MBeirLayout(data_dir)
    if not process_state().is_main_process:
        train(run, resolved.config, layout, resume=resume, init_checkpoint=checkpoint)
        return None
    with run.command("train"):
        run.bind_config(resolved, "train")
        run.record("data_dir", str(Path(data_dir).resolve()))
        console.print(f"run directory: [bold]{run.root}[/]  data: {data_dir}")
        with training_progress() as update:
            final = train(run, resolved.config, layout, resume=resume, init_checkpoint=checkpoint, progress=update)
    console.print(f"final checkpoint: [bold]{final}[/]")
    return final


def training_progress() -> Any:
    """A rich bar over optimizer steps with loss, accuracy, lr and samples/s."""
    import contextlib

    @contextlib.contextmanager
    def bars() -> Any:
        progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(), console=console,
        )
        task = progress.add_task("train", total=None, info="")

        def update(record: dict[str, Any]) -> None:
            progress.update(
                task, completed=record["step"], total=record["total_steps"],
                info=f"loss {record['loss']:.3f} acc {record['accuracy']:.2f} lr {record['lr']:.2e} "
                     f"{record['samples_per_s']:.0f} samples/s",
            )

        with progress:
            yield update

    return bars()
