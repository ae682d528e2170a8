"""`uniir eval`: Embed, index, retrieve, score and report in one resumable command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Embed, index, retrieve, score and report in one resumable command.

    Example: uniir eval --preset clip-sf-large --pool global
    """
    raise not_implemented("eval", "issue #4, evaluation pipeline")
