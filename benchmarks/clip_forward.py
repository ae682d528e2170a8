"""Benchmark: CLIP-SF forward throughput (items/s), CPU fp32 and GPU bf16/fp16.

The model alone is timed: inputs are already-preprocessed tensors (random token ids of a
typical query length, random pixels), weights are random (`pretrained=""`; speed does not
depend on the values). One line per (size, input kind, batch size); the preprocessing rate
of one CPU core (tokenize + resize/crop/normalise a 500x375 image) is printed too, to size
DataLoader workers.

    python benchmarks/clip_forward.py                        # CPU sweep, fp32 (~10 minutes on 2 busy cores)
    python benchmarks/clip_forward.py --sizes large --batch-sizes 64,256   # large at 64 and 256 (long: idle machine)
    python benchmarks/clip_forward.py --sizes base --batch-sizes 1,16
    python benchmarks/clip_forward.py --gpu                  # ViT-L-14 bf16/fp16 at 256-1024 + CPU agreement
    python benchmarks/clip_forward.py --gpu --compile --json gpu.json
    python benchmarks/clip_forward.py --gpu --dry-run        # the GPU code path on the CPU, tiny model, batch 4 and 8

Goal (issue #3): >= 2,000 images/s for ViT-L-14 on one H100 (model alone); published
anchor: 312 samples/s per A100 (clip-retrieval).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from uniir_cli.models.base import EncoderBatch  # noqa: E402
from uniir_cli.registry import build_model  # noqa: E402

KINDS = ("text", "image", "image+text")
# Default CPU batches; large stops at 16 (64 takes ~10 min on 2 cores): pass --batch-sizes 64,256 for more.
CPU_BATCHES = {"tiny": (1, 16, 64, 256), "base": (1, 16, 64, 256), "large": (1, 16)}
GPU_BATCHES = (256, 512, 1024)
DRY_RUN_BATCHES = (4, 8)
TEXT_TOKENS = 24  # SOT + 22 BPE tokens + EOT: a query with its instruction


def make_batch(model: Any, kind: str, batch: int, seed: int = 0) -> EncoderBatch:
    """Preprocessed inputs in the processor's layout (no tokenizer/transform cost)."""
    gen = torch.Generator().manual_seed(seed)
    items = [{"has_text": kind != "image", "has_image": kind != "text"} for _ in range(batch)]
    size, context = model.processor.image_size, model.processor.context_length
    for item in items:
        if item["has_text"]:
            ids = torch.zeros(context, dtype=torch.long)
            ids[0], ids[TEXT_TOKENS - 1] = 49406, 49407
            ids[1 : TEXT_TOKENS - 1] = torch.randint(1, 49405, (TEXT_TOKENS - 2,), generator=gen)
            item["input_ids"] = ids
        if item["has_image"]:
            item["pixel_values"] = torch.randn(3, size, size, generator=gen)
    return model.processor.collate(items)


def time_forward(encode: Any, batch: EncoderBatch, min_seconds: float, autocast: Any, sync: Any) -> tuple[float, int]:
    """(items/s, iterations): repeat until `min_seconds` have passed (at least once)."""
    iterations, start = 0, time.perf_counter()
    with torch.inference_mode(), autocast:
        while True:
            encode(batch)
            sync()
            iterations += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return len(batch) * iterations / elapsed, iterations


def preprocess_rate(seconds: float = 2.0) -> float:
    """Items/s of tokenize + image transform on one core (image+text items)."""
    from PIL import Image

    from uniir_cli.models.clip_fusion import ClipProcessor

    proc = ClipProcessor(224, 77)
    image = Image.frombytes("RGB", (500, 375), os.urandom(500 * 375 * 3))
    text = "Retrieve an image that matches the given caption. A red bicycle leaning on a wall"
    proc.process(text, image)
    count, start = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            proc.process(text, image)
            count += 1
    return count / (time.perf_counter() - start)


def cpu_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for size in args.sizes:
        torch.manual_seed(0)
        model = build_model("clip_sf", size=size, pretrained="").eval()
        for kind in args.kinds:
            time_forward(model.encode, make_batch(model, kind, 1), 0.0, nullcontext(), lambda: None)  # warm-up
            for batch_size in args.batch_sizes or CPU_BATCHES.get(size, (1, 16)):
                rate, iters = time_forward(model.encode, make_batch(model, kind, batch_size), args.min_seconds, nullcontext(), lambda: None)
                row = {"device": "cpu", "size": size, "kind": kind, "batch": batch_size, "dtype": "fp32", "items_per_s": rate, "iters": iters}
                print(f"cpu  {size:5s} {kind:10s} bs={batch_size:4d} fp32  {rate:9.1f} items/s  ({iters} iters)", flush=True)
                rows.append(row)
        del model
    return rows


def gpu_sweep(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ViT-L-14 on CUDA; `--dry-run`: the same code on the CPU with the tiny model, batches
    4 and 8 and one timed pass each, so the script is known to run before a (short) GPU session."""
    if args.dry_run:
        device, size, batches, min_seconds, name = torch.device("cpu"), "tiny", DRY_RUN_BATCHES, 0.0, "cpu (dry run)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA device (or --dry-run to try the code on the CPU)")
        torch.backends.cudnn.benchmark = True
        device, size, batches, min_seconds, name = torch.device("cuda"), "large", GPU_BATCHES, args.min_seconds, "cuda"
    torch.manual_seed(0)
    cpu_model = build_model("clip_sf", size=size, pretrained="").eval()
    model = build_model("clip_sf", size=size, pretrained="").eval()
    model.load_state_dict(cpu_model.state_dict())
    model.to(device)
    encode = torch.compile(model.encode) if args.compile else model.encode
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        autocast = torch.autocast(device.type, dtype=dtype)
        for kind in args.kinds:
            for batch_size in args.batch_sizes or batches:
                batch = make_batch(model, kind, batch_size).to(device)
                time_forward(encode, batch, 0.0, autocast, sync)  # warm-up / compile
                rate, iters = time_forward(encode, batch, min_seconds, autocast, sync)
                print(f"{device.type:4s} {size:5s} {kind:10s} bs={batch_size:4d} {dtype_name}  {rate:9.1f} items/s  ({iters} iters)", flush=True)
                rows.append({"device": name, "size": size, "kind": kind, "batch": batch_size, "dtype": dtype_name,
                             "items_per_s": rate, "iters": iters, "compile": args.compile})
    # agreement: the same weights and inputs, CPU fp32 vs GPU fp32 / autocast
    agreement: dict[str, Any] = {}
    for kind in KINDS:
        batch = make_batch(cpu_model, kind, 16, seed=1)
        with torch.inference_mode():
            reference = cpu_model.encode(batch)
            for dtype_name, ctx in (("fp32", nullcontext()), ("bf16", torch.autocast(device.type, dtype=torch.bfloat16)),
                                    ("fp16", torch.autocast(device.type, dtype=torch.float16))):
                with ctx:
                    out = model.encode(batch.to(device)).float().cpu()
                cos = torch.nn.functional.cosine_similarity(out, reference, dim=-1)
                agreement[f"{kind}/{dtype_name}"] = {"min_cos": cos.min().item(), "max_abs": (out - reference).abs().max().item()}
                print(f"agreement {kind:10s} {dtype_name}: min cosine {cos.min().item():.6f}, max |diff| {(out - reference).abs().max().item():.2e}")
    return rows, agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="base,large", help="CPU: comma-separated sizes (tiny, base, large)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated input kinds: text, image, image+text")
    parser.add_argument("--batch-sizes", default="", help="override the batch sizes, e.g. 1,16")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each configuration at least this long")
    parser.add_argument("--gpu", action="store_true", help="GPU mode: ViT-L-14 bf16/fp16 + CPU-vs-GPU agreement")
    parser.add_argument("--compile", action="store_true", help="GPU mode: torch.compile the encoder")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: run its code on the CPU, tiny model, small batches")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    info = machine()  # its load average: other jobs on the cores skew CPU numbers
    print(json.dumps(info))
    result: dict[str, Any] = {"machine": info, "weights": "random (pretrained='')"}
    if args.gpu:
        result["rows"], result["agreement"] = gpu_sweep(args)
    else:
        result["preprocess_items_per_s_per_core"] = preprocess_rate()
        print(f"preprocess (tokenize + 500x375 image -> 224, one core): {result['preprocess_items_per_s_per_core']:.1f} items/s")
        result["rows"] = cpu_sweep(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
