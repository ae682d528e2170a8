"""Benchmark: BLIP-FF forward throughput (items/s), eager vs SDPA attention; GPU training step.

The model alone is timed on preprocessed tensors (100 token ids, 24 of them real, as a
query with its instruction; random pixels) with random weights (`pretrained=""`, no
momentum encoders for the forward). Every item runs both towers (BLIP-FF always does).

    python benchmarks/blip_forward.py                            # CPU: base, batch 1 and 16, eager vs SDPA
    python benchmarks/blip_forward.py --sizes tiny,base --batch-sizes 1,16,64
    python benchmarks/blip_forward.py --gpu                      # large, bf16 embedding + training step at 115
    python benchmarks/blip_forward.py --gpu --dry-run            # the GPU code path on the CPU, tiny model

On the GPU the training step is the full momentum-queue loss at batch 115 with gradient
checkpointing of the last 12 ViT blocks, fp16 autocast, AdamW; peak memory is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

from uniir_cli.models.base import EncoderBatch
from uniir_cli.registry import build_model

TEXT_TOKENS = 24


def make_batch(size: int, image_size: int, vocab: int, seed: int = 0, dids: bool = False) -> EncoderBatch:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(size, 100, dtype=torch.long)
    ids[:, 0], ids[:, TEXT_TOKENS - 1] = 101, 102
    ids[:, 1 : TEXT_TOKENS - 1] = torch.randint(1000, vocab - 2, (size, TEXT_TOKENS - 2), generator=gen)
    mask = (torch.arange(100) < TEXT_TOKENS).long().expand(size, -1).clone()
    tensors = {"input_ids": ids, "attention_mask": mask, "pixel_values": torch.randn(size, 3, image_size, image_size, generator=gen)}
    if dids:
        tensors["did"] = torch.randint(0, 10 * size, (size,), generator=gen)
    flags = torch.ones(size, dtype=torch.bool)
    return EncoderBatch(flags, flags.clone(), tensors)


def time_it(fn: Any, min_seconds: float, sync: Any) -> tuple[float, int]:
    fn()  # warm-up
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        sync()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 2:
            return elapsed / runs, runs


def cpu_sweep(sizes: list[str], batches: list[int], min_seconds: float) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        torch.manual_seed(0)
        model = build_model("blip_ff", size=size, vocab="tiny", training_state=False).eval()
        for batch_size in batches:
            batch = make_batch(batch_size, model.spec.image_size, model.spec.text.vocab_size)
            reference = None
            for sdpa in (False, True):
                model.set_sdpa(sdpa)
                with torch.inference_mode():
                    out = model.encode(batch)
                    seconds, runs = time_it(lambda m=model, b=batch: m.encode(b), min_seconds, lambda: None)
                reference = out if reference is None else reference
                row = {"device": "cpu", "size": size, "batch": batch_size, "attention": "sdpa" if sdpa else "eager",
                       "items_per_s": round(batch_size / seconds, 2), "runs": runs,
                       "max_abs_diff_vs_eager": float((out - reference).abs().max())}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def gpu_run(batch_size: int, min_seconds: float, dry_run: bool = False) -> list[dict[str, Any]]:
    """BLIP-FF large on CUDA; `dry_run`: the same code on the CPU with the tiny model and small
    batches, so the script is known to run before a (short) GPU session."""
    device = torch.device("cpu" if dry_run else "cuda")
    size, image_size, embed_batches = ("tiny", 32, (8,)) if dry_run else ("large", 224, (256, 512))
    batch_size = 8 if dry_run else batch_size
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)"
    rows = []
    torch.manual_seed(0)
    model = build_model("blip_ff", size=size, vocab="tiny", training_state=False).to(device).eval()
    vocab = model.spec.text.vocab_size
    model.set_sdpa(True)
    for embed_batch in embed_batches:
        batch = make_batch(embed_batch, image_size, vocab).to(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            seconds, runs = time_it(lambda m=model, b=batch: m.encode(b), min_seconds, sync)
        row = {"device": name, "size": size, "mode": "embed bf16 sdpa", "batch": embed_batch,
               "items_per_s": round(embed_batch / seconds, 1), "runs": runs}
        print(json.dumps(row), flush=True)
        rows.append(row)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    # the blip-ff-large preset: momentum encoders, queue, checkpointing of the last 12 ViT blocks
    model = build_model("blip_ff", size=size, vocab="tiny", queue_size=batch_size * 63, vit_ckpt_layer=12).to(device).train()
    model.set_sdpa(True)
    model.set_grad_checkpointing(True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device.type)
    queries, positives = (make_batch(batch_size, image_size, vocab, seed=s, dids=s == 2).to(device) for s in (1, 2))

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16):
            out = model(queries, positives, progress=1.0)
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    seconds, runs = time_it(step, min_seconds, sync)
    row = {"device": name, "size": size, "mode": "train fp16 sdpa ckpt12", "batch": batch_size,
           "samples_per_s": round(batch_size / seconds, 1), "runs": runs}
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(row), flush=True)
    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="base")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--train-batch", type=int, default=115)
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: run its code on the CPU, tiny model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(json.dumps(machine()), flush=True)
    if args.gpu:
        rows = gpu_run(args.train_batch, args.min_seconds, args.dry_run)
    else:
        rows = cpu_sweep(args.sizes.split(","), [int(b) for b in args.batch_sizes.split(",")], args.min_seconds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
