"""`uniir demo`: the whole loop on a built-in synthetic M-BEIR, on a CPU, in minutes."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from uniir_cli.commands import options
from uniir_cli.errors import ConfigError

console = Console()


def run(
    preset: Annotated[
        str, typer.Option("--preset", "-p", help="A CPU-sized preset to train: demo (tiny CLIP-SF), blip-ff-tiny or mllm-tiny (a toy LLaVA-NeXT).")
    ] = "demo",
    data_dir: options.DataDir = None,
    run_dir: options.RunDir = None,
    data_only: Annotated[
        bool, typer.Option("--data-only", metavar="", help="Only write the synthetic M-BEIR tree (no training or evaluation).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator: same seed and size give identical files.")] = 0,
    size: Annotated[
        str, typer.Option("--size", help="tiny (tests), demo (default) or N test queries per (dataset, task) pair, N <= 80.")
    ] = "demo",
    image_size: Annotated[int, typer.Option("--image-size", help="Side of the square JPEG images in pixels.")] = 64,
    overrides: options.Overrides = None,
    force: options.Force = False,
) -> None:
    """The whole loop on a synthetic M-BEIR: generate data, train a tiny model on the CPU, evaluate, report.

    The synthetic M-BEIR has the real layout (10 datasets, 16 evaluation pairs, local and union pools, qrels,
    instructions, JPEG images) and rules that a small model learns in minutes. The report compares the
    trained model with the same model untrained, on the local pools and the global (union) pool.
    Data goes to <run-dir>/data unless --data-dir; an identical existing tree is kept unless --force.

    Example: uniir demo --run-dir runs/demo   (or: uniir demo --preset blip-ff-tiny, --preset mllm-tiny; uniir demo --data-only --data-dir /tmp/mbeir-synthetic)
    """
    from uniir_cli.commands.steps import evaluate_with_progress, print_tables
    from uniir_cli.commands.train import train_with_progress
    from uniir_cli.demo import run_demo

    if data_only:
        if data_dir is None:
            raise ConfigError("--data-only needs --data-dir DIR (or UNIIR_DATA_DIR): where to write the synthetic M-BEIR")
        from uniir_cli.data.synthetic import generate_synthetic_mbeir

        _print_generated(generate_synthetic_mbeir(data_dir, seed=seed, size=size, image_size=image_size, force=force))
        return
    started = time.monotonic()
    result = run_demo(
        preset, run_dir=run_dir, data_dir=data_dir, overrides=overrides or [], seed=seed, size=size,
        image_size=image_size, force=force, stage=lambda title: console.rule(f"[bold]{title}"),
        generated=_print_generated, evaluate_run=evaluate_with_progress, train_run=train_with_progress,
    )
    console.rule("[bold]report")
    print_tables(result.tables)
    console.print(f"done in {time.monotonic() - started:.0f} s; run directory {result.run_dir}")


def _print_generated(summary: Any) -> None:
    table = Table(title=f"synthetic M-BEIR in {summary.root} (seed {summary.seed}, size {summary.size})")
    table.add_column("part")
    table.add_column("files", justify="right")
    table.add_column("records", justify="right")
    for label, prefix in (
        ("train queries (per dataset)", "query/train/"),
        ("union train queries (up-sampled)", "query/union_train/"),
        ("val queries", "query/val/"),
        ("test queries", "query/test/"),
        ("local pools", "cand_pool/local/"),
        ("union train pool", "cand_pool/global/mbeir_union_train"),
        ("union val pool", "cand_pool/global/mbeir_union_val"),
        ("union test pool", "cand_pool/global/mbeir_union_test"),
        ("qrels", "qrels/"),
        ("instructions (pairs)", "instructions/"),
    ):
        table.add_row(label, str(summary.file_count(prefix)), str(summary.records(prefix)))
    table.add_row("images", str(summary.images), f"{summary.total_bytes / 1e6:.1f} MB in all")
    console.print(table)
    if summary.skipped:
        console.print("An identical tree was already there; kept it (use --force to rewrite).")
    else:
        console.print(f"Written in {summary.seconds:.1f} s.")
