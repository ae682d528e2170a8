"""`uniir validate`: Check an M-BEIR data tree."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Check an M-BEIR data tree.

    Example: uniir validate --data-dir /data/M-BEIR
    """
    raise not_implemented("validate", "issue #2")
