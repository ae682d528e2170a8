"""`uniir demo`: the whole loop on a synthetic M-BEIR (for now: `--data-only` writes the data)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from uniir_cli.commands import not_implemented
from uniir_cli.errors import ConfigError
from uniir_cli.options import DataDir, Force


def run(
    data_dir: DataDir = None,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Only write the synthetic M-BEIR tree (no training or evaluation).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generator: same seed and size give identical files.")] = 0,
    size: Annotated[
        str, typer.Option("--size", help="tiny (tests), demo (default) or N test queries per (dataset, task) pair, N <= 80.")
    ] = "demo",
    image_size: Annotated[int, typer.Option("--image-size", help="Side of the square JPEG images in pixels.")] = 64,
    force: Force = False,
) -> None:
    """The whole loop on a synthetic M-BEIR: generate data, train a tiny CLIP-SF on the CPU, evaluate.

    The synthetic M-BEIR has the real layout (10 datasets, 16 evaluation pairs, local and union pools, qrels,
    instructions, JPEG images) and rules that a small model learns in minutes. An identical existing tree is
    kept unless --force. For now only --data-only works.

    Example: uniir demo --data-only --data-dir /tmp/mbeir-synthetic --size tiny
    """
    if not data_only:
        raise not_implemented("demo", "issue #5, training")
    if data_dir is None:
        raise ConfigError("--data-only needs --data-dir DIR (or UNIIR_DATA_DIR): where to write the synthetic M-BEIR")
    from uniir_cli.data.synthetic import generate_synthetic_mbeir

    summary = generate_synthetic_mbeir(data_dir, seed=seed, size=size, image_size=image_size, force=force)
    console = Console()
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
