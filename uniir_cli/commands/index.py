"""`uniir index`: Build exact (or approximate) inner-product indexes over the embedded pools."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Build exact (or approximate) inner-product indexes over the embedded pools.

    Example: uniir index --run-dir runs/clip-sf-large
    """
    raise not_implemented("index", "issue #4, evaluation pipeline")
