"""`uniir embed`: Embed query sets and candidate pools into sharded fp16 files, resumably."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Embed query sets and candidate pools into sharded fp16 files, resumably.

    Example: uniir embed --run-dir runs/clip-sf-large
    """
    raise not_implemented("embed", "issue #4, evaluation pipeline")
