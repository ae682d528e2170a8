"""`uniir convert`: Convert a released UniIR .pth checkpoint into a uniir checkpoint folder (safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uniir_cli.errors import ModelError


def run(
    checkpoint: Annotated[Path, typer.Argument(help="Released UniIR .pth file, e.g. clip_sf_large.pth.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (model.json + model.safetensors).", file_okay=False)],
    force: Annotated[bool, typer.Option("--force", metavar="", help="Overwrite an existing checkpoint folder.")] = False,
    keep_training_state: Annotated[
        bool, typer.Option("--keep-training-state", metavar="", help="BLIP: keep the momentum encoders and queues (to fine-tune further).")
    ] = False,
) -> None:
    """Convert a released UniIR .pth checkpoint into a uniir checkpoint folder (safetensors).

    The .pth is read without executing pickled code (omegaconf need not be installed) and its weights are mapped strictly; optimizer and scheduler state are dropped (clip_sf_large.pth: 5.1 GB -> 1.7 GB). The folder works wherever --checkpoint is accepted.

    Example: uniir convert clip_sf_large.pth --out checkpoints/clip-sf-large
    """
    from uniir_cli.models.checkpoint_io import WEIGHTS_FILE, is_checkpoint_folder
    from uniir_cli.registry import load_model

    if not checkpoint.is_file():
        raise ModelError(f"{checkpoint}: no such file (expected a released UniIR .pth)")
    if is_checkpoint_folder(out) and not force:
        raise ModelError(f"{out}: already holds a uniir checkpoint; pass --force to overwrite it")
    model = load_model(checkpoint, keep_training_state=keep_training_state)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    size_gb = (out / WEIGHTS_FILE).stat().st_size / 1e9
    typer.echo(
        f"wrote {out}: {model.registry_name} size={model.config.get('size')} "
        f"({params / 1e6:.1f}M parameters, {size_gb:.2f} GB, {model.embedding_dim}-d embeddings)"
    )
