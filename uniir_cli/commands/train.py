"""`uniir train`: Train a retriever with Accelerate on 1..N GPUs or CPU processes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Train a retriever with Accelerate on 1..N GPUs or CPU processes.

    Example: uniir train --preset clip-sf-large --data-dir /data/M-BEIR
    """
    raise not_implemented("train", "issue #5, training")
