"""`uniir retrieve`: Retrieve the top-k candidates for each query set from local and global pools."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Retrieve the top-k candidates for each query set from local and global pools.

    Example: uniir retrieve --run-dir runs/clip-sf-large --pool both
    """
    raise not_implemented("retrieve", "issue #4, evaluation pipeline")
