"""Benchmark: embed throughput through the full data pipeline vs the model alone (CLIP-SF).

The pipeline is the loop `uniir embed` runs over a pool's shards (`embedding.encode_batches`):
JPEG files on disk, written by this script, decoded and preprocessed (tokenize, resize,
crop, normalise) in DataLoader workers, collated, pinned, copied to the device, encoded
under autocast and copied back. Batches have the full batch size, as in the 5.6M union
pool (shards of 65,536 items). The model alone encodes one pre-made batch of the same
items, already on the device, again and again. Both in the same run, with the same random
weights (`pretrained=""`; speed does not depend on the values); the ratio is printed.

Each DataLoader worker builds whole batches, so the first batch takes batch x per-item time
and the workers' first batches arrive together: the ratio is taken in steady state (see
`pipeline`), the overall rate with start-up is printed beside it. 16 workers x prefetch 2 x
1024 fp32 images hold ~20 GB of shared memory (/dev/shm) at once.

    python benchmarks/embed_pipeline.py                  # CPU: base model, 1,024 items, 2 workers
    python benchmarks/embed_pipeline.py --gpu            # ViT-L-14, bf16, batch 1024, 16 workers, 65,536 items
    python benchmarks/embed_pipeline.py --dry-run        # the GPU code path on the CPU: tiny model, 160 items

Goal (issue #4): the pipeline reaches >= 80% of the model-alone throughput for ViT-L-14
CLIP-SF on one GPU. Images are written at 341x256, as M-BEIR stores them (every image was
resized to a shorter side of 256 px; spec section 1), JPEG quality 90; items
cycle over the mode's distinct files (4,096 on the GPU), which sit in the page cache once
written (as a warm M-BEIR image folder would).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, report

from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import RawItem, RawItems
from uniir_cli.models.encode import consecutive_batches, encode_batches
from uniir_cli.registry import build_model

# Per mode: model size, items, distinct images, batch size, DataLoader workers, autocast dtype.
MODES: dict[str, dict[str, Any]] = {
    "cpu": {"size": "base", "items": 1024, "images": 128, "batch": 64, "workers": 2, "precision": "no"},
    "gpu": {"size": "large", "items": 65536, "images": 4096, "batch": 1024, "workers": 16, "precision": "bf16"},
    "dry-run": {"size": "tiny", "items": 160, "images": 16, "batch": 16, "workers": 2, "precision": "bf16"},
}
IMAGE_SIZE = (341, 256)  # M-BEIR's images: shorter side 256, here 4:3
TEXT = ("Retrieve a Wikipedia image-description pair that answers the question. What colour is the "
        "bicycle leaning on the wall next to the bakery in the old town square, item {}?")


def write_image(path: str) -> int:
    """A photo-like JPEG: a smooth random colour field plus grain (noise alone would be unrealistically large)."""
    from PIL import Image

    rng = np.random.default_rng(zlib.crc32(path.encode()))
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(IMAGE_SIZE, Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.int16) + rng.integers(-12, 13, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return os.path.getsize(path)


def write_images(root: Path, count: int) -> tuple[list[str], float]:
    """`count` JPEG files under root/images (relative paths) and their mean size in KiB."""
    (root / "images").mkdir(parents=True)
    relative = [f"images/{i:06d}.jpg" for i in range(count)]
    with multiprocessing.get_context("fork").Pool(min(count, os.cpu_count() or 1)) as pool:
        sizes = pool.map(write_image, [str(root / r) for r in relative])
    return relative, sum(sizes) / len(sizes) / 1024


def make_items(images: list[str], count: int, kind: str) -> list[RawItem]:
    return [
        RawItem(f"9:{i}", TEXT.format(i) if kind != "image" else None, images[i % len(images)])
        for i in range(count)
    ]


def model_alone(model: Any, dataset: RawItems, batch_size: int, device: torch.device, precision: str, min_seconds: float) -> float:
    """Items/s of `model.encode` on one pre-made batch already on the device."""
    batch = dataset.processor.collate([dataset[i][0] for i in range(batch_size)]).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" and precision == "bf16" else nullcontext()
    with torch.inference_mode(), autocast:
        model.encode(batch)  # warm-up
        sync()
        runs, start = 0, time.perf_counter()
        while True:
            model.encode(batch)
            sync()
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds and runs >= 2:
                return batch_size * runs / elapsed


def pipeline(model: Any, dataset: RawItems, batch_size: int, device: torch.device, precision: str, workers: int) -> dict[str, float]:
    """Items/s of the embed loop over the whole dataset (DataLoader start-up included) and in
    steady state: from batch 2 x workers on, when the batches every worker started at once
    and its prefetched ones are used up (what the 700K+ items per rank of the pool see)."""
    start = time.perf_counter()
    arrivals: list[tuple[float, int]] = []
    batches = consecutive_batches(range(len(dataset)), batch_size)
    for vectors, _ in encode_batches(model, dataset, batches, device, num_workers=workers, precision=precision):
        arrivals.append((time.perf_counter(), len(vectors)))
    end = arrivals[-1][0]
    assert sum(n for _, n in arrivals) == len(dataset)
    skip = 2 * max(workers, 1)
    if len(arrivals) < skip + 2:
        raise SystemExit(f"--items too small: {len(arrivals)} batches, the steady state starts after {skip}")
    steady = sum(n for _, n in arrivals[skip + 1 :]) / (end - arrivals[skip][0])
    return {"overall": len(dataset) / (end - start), "steady": steady, "first_batch_s": arrivals[0][0] - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="ViT-L-14 on CUDA, bf16 autocast, batch 1024, 16 workers")
    parser.add_argument("--dry-run", action="store_true", help="the GPU code path on the CPU with a tiny model and few items")
    parser.add_argument("--kind", choices=("image", "image+text"), default="image+text")
    parser.add_argument("--items", type=int, default=0, help="override the mode's item count")
    parser.add_argument("--workers", type=int, default=-1, help="override the mode's DataLoader workers")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="time the model alone at least this long")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    mode = "dry-run" if args.dry_run else "gpu" if args.gpu else "cpu"
    settings = dict(MODES[mode])
    settings["items"] = args.items or settings["items"]
    settings["workers"] = settings["workers"] if args.workers < 0 else args.workers
    if mode == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (or --dry-run to try its code on the CPU)")
    device = torch.device("cuda" if mode == "gpu" else "cpu")
    min_seconds = 0.0 if mode == "dry-run" else args.min_seconds
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(json.dumps(machine()), flush=True)  # report() repeats it at the end, with the load average then

    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        images, mean_kib = write_images(root, settings["images"])  # before CUDA starts in this process
        write_s = time.perf_counter() - started
        torch.manual_seed(0)
        model = build_model("clip_sf", size=settings["size"], pretrained="").to(device).eval()
        dataset = RawItems(MBeirLayout(root, check=False), model.processor, make_items(images, settings["items"], args.kind))
        alone = model_alone(model, dataset, settings["batch"], device, settings["precision"], min_seconds)
        print(f"model alone:   {alone:10.1f} items/s", flush=True)
        full = pipeline(model, dataset, settings["batch"], device, settings["precision"], settings["workers"])
        print(f"full pipeline: {full['steady']:10.1f} items/s steady, {full['overall']:.1f} overall "
              f"(first batch after {full['first_batch_s']:.1f} s)", flush=True)
    ratio = full["steady"] / alone
    print(f"pipeline / model alone: {ratio:.1%} steady, {full['overall'] / alone:.1%} overall "
          "(goal on GPU, ViT-L-14: >= 80% steady)", flush=True)
    result = {
        "mode": mode, "kind": args.kind, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        **settings, "image_size": list(IMAGE_SIZE), "mean_jpeg_kib": round(mean_kib, 1), "write_images_s": round(write_s, 2),
        "model_alone_items_per_s": round(alone, 1), "pipeline_steady_items_per_s": round(full["steady"], 1),
        "pipeline_overall_items_per_s": round(full["overall"], 1), "first_batch_s": round(full["first_batch_s"], 2),
        "ratio": round(ratio, 4), "ratio_overall": round(full["overall"] / alone, 4),
        "weights": "random (pretrained='')",
    }
    report("embed_pipeline", result, args.json)


if __name__ == "__main__":
    main()
