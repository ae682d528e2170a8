"""Run a retriever over a dataset of items: fp32 vectors in item order.

The one encoding loop of uniir: the embed step feeds it a set's shards, validation during
training and UniRAG feed it whole item lists. One DataLoader for all batches, so its workers
decode and preprocess images ahead of the model with no restart between shards; fp16/bf16
autocast on a GPU (upstream ran fp16), fp32 on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from uniir_cli.data.loaders import collate_items


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """fp16/bf16 autocast on GPU (upstream ran fp16); CPU always computes in fp32."""
    if device.type != "cuda" or precision == "no":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def encode_batches(
    model: Any,
    dataset: Any,
    batches: Sequence[Sequence[int]],
    device: torch.device,
    *,
    num_workers: int = 0,
    precision: str = "no",
) -> Iterator[tuple[np.ndarray, int]]:
    """fp32 embeddings of each batch of `dataset` indices in turn (EMPTY items -> zero vector)
    with the number of images skipped in it. One DataLoader for all batches: its workers
    decode and preprocess images ahead of the model, with no restart between shards."""
    if not batches:
        return
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_items(dataset.processor),
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        batch.check()
        out = np.zeros((len(batch), model.embedding_dim), dtype=np.float32)
        if batch.inputs is not None:
            with torch.inference_mode(), autocast(device, precision):
                out[batch.present] = model.encode(batch.inputs.to(device, non_blocking=True)).float().cpu().numpy()
        yield out, batch.skipped


def consecutive_batches(rows: range, batch_size: int) -> list[range]:
    """`rows` cut into batches of `batch_size` (the last one shorter)."""
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def length_grouped_batches(dataset: Any, rows: range, batch_size: int) -> list[list[int]]:
    """`rows` in batches of items of similar length (image items apart, then by text length),
    for processors that pad a batch to its longest item (`Processor.pads_to_longest`): an
    MLLM image item is hundreds of tokens, a caption a dozen. Deterministic, so a shard's
    vectors do not depend on who encodes it; batches still never mix shards."""
    def key(row: int) -> tuple[bool, int, int]:
        item = dataset.raw(row)
        return bool(item.image_path), len(item.text or ""), row

    ordered = sorted(rows, key=key)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def encode_dataset(
    model: Any,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    *,
    num_workers: int = 0,
    precision: str = "no",
) -> tuple[np.ndarray, int]:
    """fp32 embeddings of every item of `dataset` in order and the number of images skipped."""
    out = np.zeros((len(dataset), model.embedding_dim), dtype=np.float32)
    skipped = done = 0
    batches = consecutive_batches(range(len(dataset)), batch_size)
    for vectors, count in encode_batches(model, dataset, batches, device, num_workers=num_workers, precision=precision):
        out[done : done + len(vectors)] = vectors
        done += len(vectors)
        skipped += count
    return out, skipped


def encode_items(
    model: Any,
    items: Sequence[tuple[str | None, Any]],
    *,
    instruction: str | None = None,
    queries: bool | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """[N, D] fp32 embeddings (not normalised) of (text, image) items from Python; an image
    is a path or a PIL image, either part may be None. The items are queries when an
    `instruction` is given (put before each text as UniIR does: `data.instructions`) or
    `queries=True`, else candidates; an MLLM prompt renders the two roles differently."""
    from PIL import Image

    from uniir_cli.data.instructions import QueryText, candidate_text
    from uniir_cli.data.mbeir import load_image

    as_queries = bool(instruction) if queries is None else queries
    processed = []
    for text, image in items:
        if image is not None and not isinstance(image, Image.Image):
            image = load_image(image, str(image))
        query = QueryText(text, instruction or None) if as_queries else None
        joined = query.joined if query is not None else candidate_text(text)
        processed.append(model.processor.process(joined or None, image, query))
    device = torch.device(device)
    model = model.to(device).eval()
    out = np.zeros((len(processed), model.embedding_dim), dtype=np.float32)
    with torch.inference_mode():
        for rows in consecutive_batches(range(len(processed)), batch_size):
            batch = model.processor.collate([processed[i] for i in rows]).to(device)
            out[rows.start : rows.stop] = model.encode(batch).float().cpu().numpy()
    return out
