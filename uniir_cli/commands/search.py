"""`uniir search`: Embed one query and print the top candidates of a run's index."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Embed one query and print the top candidates of a run's index.

    Example: uniir search --run-dir runs/clip-sf-large --text 'a red bus'
    """
    raise not_implemented("search", "issue #4, evaluation pipeline")
