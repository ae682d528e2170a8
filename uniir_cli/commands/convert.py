"""`uniir convert`: a released UniIR .pth into a uniir checkpoint folder (safetensors), or
(`--merge`) a LoRA checkpoint into a full model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uniir_cli.errors import ModelError


def run(
    checkpoint: Annotated[Path, typer.Argument(help="Released UniIR .pth file (e.g. clip_sf_large.pth), or a LoRA checkpoint folder with --merge.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (model.json + model.safetensors).", file_okay=False)],
    force: Annotated[bool, typer.Option("--force", metavar="", help="Overwrite an existing checkpoint folder.")] = False,
    keep_training_state: Annotated[
        bool, typer.Option("--keep-training-state", metavar="", help="BLIP: keep the momentum encoders and queues (to fine-tune further).")
    ] = False,
    merge: Annotated[
        bool, typer.Option("--merge", metavar="", help="MLLM: merge a LoRA checkpoint (and the stages before it) into a full Hugging Face model folder.")
    ] = False,
) -> None:
    """Convert a released UniIR .pth checkpoint into a uniir checkpoint folder (safetensors).

    The .pth is read without executing pickled code (omegaconf need not be installed) and its weights are mapped strictly; optimizer and scheduler state are dropped (clip_sf_large.pth: 5.1 GB -> 1.7 GB). The folder works wherever --checkpoint is accepted.

    With --merge, a LoRA checkpoint of `uniir train` (the adapter only) becomes a full Hugging Face model folder with its processor and model.json, which evaluates like the checkpoint and loads in transformers alone.

    Example: uniir convert clip_sf_large.pth --out checkpoints/clip-sf-large

    Example: uniir convert runs/stage1/checkpoints/00001000 --merge --out checkpoints/stage1-merged
    """
    from uniir_cli.models.checkpoint_io import WEIGHTS_FILE, is_checkpoint_folder
    from uniir_cli.registry import load_model

    if is_checkpoint_folder(out) and not force:
        raise ModelError(f"{out}: already holds a uniir checkpoint; pass --force to overwrite it")
    if merge:
        from uniir_cli.models.mllm.model import merge_lora_folder

        merged = merge_lora_folder(checkpoint, out)
        typer.echo(f"wrote {out}: {merged.registry_name} with its LoRA adapter merged ({merged.embedding_dim}-d embeddings)")
        return
    if not checkpoint.is_file():
        raise ModelError(f"{checkpoint}: no such file (expected a released UniIR .pth; --merge for a LoRA checkpoint folder)")
    model = load_model(checkpoint, keep_training_state=keep_training_state)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    size_gb = (out / WEIGHTS_FILE).stat().st_size / 1e9
    typer.echo(
        f"wrote {out}: {model.registry_name} size={model.config.get('size')} "
        f"({params / 1e6:.1f}M parameters, {size_gb:.2f} GB, {model.embedding_dim}-d embeddings)"
    )
