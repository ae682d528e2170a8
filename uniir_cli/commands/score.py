"""`uniir score`: Score run files: Recall@k (hit rate, as UniIR), true recall, MRR@10, nDCG@10."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Score run files: Recall@k (hit rate, as UniIR), true recall, MRR@10, nDCG@10.

    Example: uniir score --run-dir runs/clip-sf-large
    """
    raise not_implemented("score", "issue #4, evaluation pipeline")
