"""`uniir download`: Download M-BEIR and the released UniIR checkpoints from the Hugging Face Hub."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Download M-BEIR and the released UniIR checkpoints from the Hugging Face Hub.

    Example: uniir download mbeir --data-dir /data/M-BEIR
    """
    raise not_implemented("download", "issue #6, download")
