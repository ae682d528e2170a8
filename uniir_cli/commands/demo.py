"""`uniir demo`: The whole loop on a synthetic M-BEIR."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """The whole loop on a synthetic M-BEIR.

    Example: uniir demo
    """
    raise not_implemented("demo", "issue #5")
