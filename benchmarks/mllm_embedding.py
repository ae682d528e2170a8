"""Benchmark: MLLM embedding through the real data pipeline vs the model alone, and padding waste.

The pipeline is the loop `uniir embed` runs (`models.encode.encode_batches`): JPEG files on
disk, written by this script, decoded, prompted, tokenized and image-processed in DataLoader
workers, left-padded into mixed batches, copied to the device and encoded. The model alone
encodes the same batches, collated beforehand and already on the device. Both in one run,
with the same random weights, saved with `save_pretrained` and loaded through the real
`mllm` loading path (speed does not depend on the values).

The CPU mode also measures what length grouping (`length_grouped_batches`, what the embed step
uses for processors that pad to the longest item) saves over consecutive batches on a mixed
workload: padding waste (pad tokens / all tokens) and the pipeline's items/s with each.

    python benchmarks/mllm_embedding.py            # CPU: tiny and small LlavaNext (E5-V layout), 192 mixed items
    python benchmarks/mllm_embedding.py --gpu      # LLaVA-Phi-3-mini and E5-V (Llama-3-8B) sizes, bf16, 128 image items at batch 32
    python benchmarks/mllm_embedding.py --dry-run  # the GPU code path on the CPU with tiny models

Workload: 50% text candidates of 4-60 words, 30% images, 20% image+text queries with a UniIR
instruction, in a fixed shuffled order (as a task's pool and query file mix them). Images are
341x256 JPEGs (M-BEIR's shorter side 256). Goal (issue #14): pipeline >= 80% of the model alone.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]
from common import machine, report
from embed_pipeline import write_images

from tests.models.mllm import tiny_models
from uniir_cli.data.instructions import QueryText
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import RawItem, RawItems
from uniir_cli.models.encode import consecutive_batches, encode_batches, length_grouped_batches
from uniir_cli.registry import build_model

# Per mode: the models (builder, dims, prompt preset), items, workload, batch size, workers.
MODES: dict[str, dict[str, Any]] = {
    "cpu": {"models": [("llava_next", "TINY", "e5v"), ("llava_next", "SMALL", "e5v")],
            "items": 192, "images": 32, "workload": "mixed", "batch": 16, "workers": 2},
    "gpu": {"models": [("llava_phi3", "PHI3_MINI_DIMS", "llava-phi3"), ("llava_next", "E5V_DIMS", "e5v")],
            "items": 128, "images": 64, "workload": "image", "batch": 32, "workers": 8},
    "dry-run": {"models": [("llava_next", "TINY", "e5v"), ("llava_phi3", "TINY", "llava-phi3")],
                "items": 64, "images": 8, "workload": "image", "batch": 8, "workers": 2},
}
BUILDERS = {"llava_next": tiny_models.build_llava_next, "llava_phi3": tiny_models.build_llava_phi3}
WORDS = ("a dog runs across the green grass in the park near two people riding bicycles down a busy "
         "city street while a red train stops at the station platform under a cloudy sky").split()
INSTRUCTION = "Retrieve a Wikipedia image-description pair that answers the question."


def make_items(images: list[str], count: int, workload: str, seed: int = 0) -> list[RawItem]:
    """`count` items of the workload, in a fixed shuffled order."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        image = images[i % len(images)]
        kind = "image" if workload == "image" else rng.choices(("text", "image", "image+text"), (5, 3, 2))[0]
        if kind == "image":
            items.append(RawItem(f"9:{i}", None, image))
            continue
        text = " ".join(rng.choices(WORDS, k=rng.randint(4, 60)))
        if kind == "text":
            items.append(RawItem(f"9:{i}", text, None))
        else:
            query = QueryText(text, INSTRUCTION)
            items.append(RawItem(f"9:{i}", query.joined, image, query))
    return items


def padding_waste(dataset: RawItems, batches: list[Any]) -> float:
    """Pad tokens / all tokens over the batches (each padded to its longest item)."""
    lengths = [len(dataset[i][0]["input_ids"]) for i in range(len(dataset))]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def model_alone(model: Any, dataset: RawItems, batches: list[Any], device: torch.device) -> float:
    """Items/s of `model.encode` over the batches, collated beforehand and already on the device."""
    collated = [dataset.processor.collate([dataset[i][0] for i in b]).to(device) for b in batches]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        model.encode(collated[0])  # warm-up
        sync()
        start = time.perf_counter()
        for batch in collated:
            model.encode(batch)
        sync()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def pipeline(model: Any, dataset: RawItems, batches: list[Any], device: torch.device, workers: int) -> float:
    """Items/s of the embed loop over the batches, from the first batch's arrival (the
    DataLoader start-up is a one-off per set, not part of the rate)."""
    arrivals = [(time.perf_counter(), len(v)) for v, _ in encode_batches(model, dataset, batches, device, num_workers=workers)]
    return sum(n for _, n in arrivals[1:]) / (arrivals[-1][0] - arrivals[0][0])


def measure(builder: str, dims_name: str, prompt: str, settings: dict[str, Any], root: Path,
            images: list[str], device: torch.device, grouping: bool) -> dict[str, Any]:
    """Build, save and reload one model, then time it alone and through the pipeline."""
    dims = getattr(tiny_models, dims_name)
    started = time.perf_counter()
    folder = BUILDERS[builder](root / f"{builder}-{dims_name}", dims=dims)
    build_s = time.perf_counter() - started
    torch.cuda.empty_cache() if device.type == "cuda" else None
    started = time.perf_counter()
    model = build_model("mllm", pretrained=str(folder), prompt=prompt, dtype="bf16" if device.type == "cuda" else "fp32")
    model = model.to(device).eval()
    load_s = time.perf_counter() - started
    dataset = RawItems(MBeirLayout(root, check=False), model.processor, make_items(images, settings["items"], settings["workload"]))
    rows = range(len(dataset))
    grouped = length_grouped_batches(dataset, rows, settings["batch"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    alone = model_alone(model, dataset, grouped, device)
    full = pipeline(model, dataset, grouped, device, settings["workers"])
    result: dict[str, Any] = {
        "model": f"{builder} {dims_name}", "prompt": prompt,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "tokens_per_image": len(dataset[next(i for i, it in enumerate(dataset.items) if it.image_path and not it.text)][0]["input_ids"]),
        "build_save_s": round(build_s, 1), "load_s": round(load_s, 1),
        "model_alone_items_per_s": round(alone, 2), "pipeline_items_per_s": round(full, 2), "ratio": round(full / alone, 3),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if grouping:
        consecutive = consecutive_batches(rows, settings["batch"])
        result |= {
            "padding_waste_consecutive": round(padding_waste(dataset, consecutive), 3),
            "padding_waste_grouped": round(padding_waste(dataset, grouped), 3),
            "pipeline_consecutive_items_per_s": round(pipeline(model, dataset, consecutive, device, settings["workers"]), 2),
        }
        result["grouped_speedup"] = round(full / result["pipeline_consecutive_items_per_s"], 3)
    print(json.dumps(result), flush=True)
    del model
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="E5-V and LLaVA-Phi-3-mini sizes on CUDA, bf16, batch 32")
    parser.add_argument("--dry-run", action="store_true", help="the GPU code path on the CPU with tiny models")
    parser.add_argument("--items", type=int, default=0, help="override the mode's item count")
    parser.add_argument("--json", default="", help="also write the results to this JSON file (after every model)")
    args = parser.parse_args()
    mode = "dry-run" if args.dry_run else "gpu" if args.gpu else "cpu"
    settings = dict(MODES[mode])
    settings["items"] = args.items or settings["items"]
    if mode == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (or --dry-run to try its code on the CPU)")
    device = torch.device("cuda" if mode == "gpu" else "cpu")
    print(json.dumps(machine()), flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mllm-bench-") as tmp:
        root = Path(tmp)
        images, mean_kib = write_images(root, settings["images"])  # before CUDA starts in this process
        for builder, dims_name, prompt in settings["models"]:
            results.append(measure(builder, dims_name, prompt, settings, root, images, device, grouping=mode == "cpu"))
            summary = {"mode": mode, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                       **{k: v for k, v in settings.items() if k != "models"}, "mean_jpeg_kib": round(mean_kib, 1),
                       "weights": "random, saved and reloaded", "models": results}
            if args.json:  # a model that runs out of time loses nothing of the ones before it
                Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    report("mllm_embedding", summary, args.json)


if __name__ == "__main__":
    main()
