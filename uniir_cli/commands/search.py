"""`uniir search`: embed one query and print the top candidates of an evaluated run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from uniir_cli.commands import options
from uniir_cli.errors import ConfigError


def run(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="A run whose candidates were embedded (`uniir embed`/`eval`).")],
    text: Annotated[Optional[str], typer.Option("--text", "-t", help="Query text.")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", "-i", help="Query image file.", exists=True, dir_okay=False)] = None,
    instruction: Annotated[Optional[str], typer.Option("--instruction", help="Instruction put before the text, as UniIR does (e.g. 'Find an everyday image match with caption').")] = None,
    pool: Annotated[str, typer.Option("--pool", help="'global' (all embedded candidates) or a local pool name such as mscoco_task0_test.")] = "global",
    k: Annotated[int, typer.Option("-k", help="How many candidates to show.", min=1)] = 10,
    data_dir: options.DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON lines for scripts.")] = False,
) -> None:
    """Embed one query (text, image or both, with an optional instruction) and show its top candidates.

    Example: uniir search --run-dir runs/clip-sf-large --text 'a red double-decker bus' --instruction 'Find an everyday image match with caption'
    """
    from uniir_cli.evaluation.interactive_search import search_one

    if text is None and image is None:
        raise ConfigError("give a query: --text, --image or both")
    hits = search_one(run_dir, text, image, instruction, pool, k, data_dir)
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit))
        return
    table = Table(title=f"top {k} of the {pool} pool")
    for column in ("rank", "did", "modality", "score", "text", "image"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        table.add_row(str(hit["rank"]), hit["did"], hit["modality"], f"{hit['score']:.4f}", (hit["txt"] or "")[:120], hit["img_path"] or "")
    Console().print(table)
