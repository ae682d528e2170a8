"""`uniir convert`: Convert a released UniIR .pth checkpoint into a uniir checkpoint folder (safetensors)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from uniir_cli.commands import not_implemented


def run(args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (not used yet).")] = None) -> None:
    """Convert a released UniIR .pth checkpoint into a uniir checkpoint folder (safetensors).

    Example: uniir convert clip_sf_large.pth --out checkpoints/clip-sf-large
    """
    raise not_implemented("convert", "issue #3, CLIP retrievers")
