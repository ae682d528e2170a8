"""`uniir report`: Paper-style tables with deltas to the published numbers."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Paper-style tables with deltas to the published numbers.

    Example: uniir report --run-dir runs/clip-sf-large --markdown
    """
    raise not_implemented("report", "issue #4, evaluation pipeline")
