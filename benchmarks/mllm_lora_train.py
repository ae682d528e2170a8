"""Benchmark: LoRA training steps of an MLLM embedder, plain vs activation checkpointing vs GradCache.

One training step as `uniir train` takes it (`model(queries, positives)` + backward, or
`training.grad_cache.grad_cache_step` with `train.grad_cache_chunk`), then AdamW over the
adapter, on in-memory batches of image+question queries and caption positives (341x256
images, M-BEIR's stored size). On the CPU each setting runs in a fresh process, so its peak
RSS is its own; on a GPU one process loads the model once and takes each setting's
`torch.cuda.max_memory_allocated` from a reset (a 4B model loads in tens of seconds). Weights are random
(speed and memory do not depend on them), built with `tests.models.mllm.tiny_models`.

    python benchmarks/mllm_lora_train.py            # CPU: small LlavaNext (15M), batch 16, chunks of 4
    python benchmarks/mllm_lora_train.py --gpu      # LLaVA-Phi-3-mini size, bf16, batch 32 (the fork's per-GPU batch), chunks of 8
    python benchmarks/mllm_lora_train.py --dry-run  # the GPU code path on the CPU with a tiny model
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]
from common import machine, peak_rss_mib, report

MODES: dict[str, dict[str, Any]] = {
    "cpu": {"builder": "llava_next", "dims": "SMALL", "prompt": "e5v", "batch": 16, "chunk": 4, "steps": 3, "dtype": "fp32"},
    "gpu": {"builder": "llava_phi3", "dims": "PHI3_MINI_DIMS", "prompt": "llava-phi3", "batch": 32, "chunk": 8, "steps": 5,
            "dtype": "bf16"},
    "dry-run": {"builder": "llava_next", "dims": "TINY", "prompt": "e5v", "batch": 8, "chunk": 2, "steps": 2, "dtype": "fp32"},
}
SETTINGS = {"plain": {}, "checkpointing": {"checkpointing": True}, "grad_cache": {"checkpointing": True, "grad_cache": True}}
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


@functools.lru_cache(maxsize=1)
def _model(mode: str, folder: str, device: str) -> Any:
    import torch

    from uniir_cli.registry import build_model

    spec = MODES[mode]
    torch.manual_seed(0)
    return build_model("mllm", pretrained=folder, prompt=spec["prompt"], dtype=spec["dtype"], lora=LORA).to(device)


def one_setting(mode: str, setting: str, folder: str) -> dict[str, Any]:
    """Run `steps` training steps (after one warm-up) in this process; samples/s and peak memory."""
    import torch
    from accelerate import Accelerator

    from tests.models.mllm.tiny_models import random_image
    from uniir_cli.training.grad_cache import Chunks, grad_cache_step

    spec, options = MODES[mode], SETTINGS[setting]
    cuda = mode == "gpu"
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")
    model = _model(mode, folder, str(accelerator.device)).train()
    model.set_grad_checkpointing(bool(options.get("checkpointing")))
    process, collate = model.processor.process, model.processor.collate
    queries = [process("What is in the picture, next to the red bicycle near the bakery?", random_image(341, 256, seed=i))
               for i in range(spec["batch"])]
    positives = [process(f"A red bicycle leaning on a wall next to a bakery in the old town, item {i}.", None)
                 for i in range(spec["batch"])]
    chunk = spec["chunk"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)

    def step() -> None:
        if options.get("grad_cache"):
            split = [Chunks([collate(items[i : i + chunk]).to(accelerator.device) for i in range(0, len(items), chunk)])
                     for items in (queries, positives)]
            grad_cache_step(model, accelerator, split[0], split[1], None, gather=False)
        else:
            out = model(collate(queries).to(accelerator.device), collate(positives).to(accelerator.device), gather=False)
            accelerator.backward(out.loss)
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {"setting": setting, "samples_per_s": round(spec["batch"] * spec["steps"] / elapsed, 2),
              "trainable_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2)}
    result["peak_gib" if cuda else "peak_rss_mib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda
                                                     else round(peak_rss_mib(), 0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="LLaVA-Phi-3-mini size on CUDA, bf16, batch 32")
    parser.add_argument("--dry-run", action="store_true", help="the GPU code path on the CPU with a tiny model")
    parser.add_argument("--json", default="", help="also write the results to this JSON file (after every setting)")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "SETTING", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setting(*args.one)))
        return
    mode = "dry-run" if args.dry_run else "gpu" if args.gpu else "cpu"
    import torch

    if mode == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (or --dry-run to try its code on the CPU)")
    from tests.models.mllm import tiny_models

    spec = MODES[mode]
    print(json.dumps(machine()), flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mllm-lora-bench-") as tmp:
        builder = {"llava_next": tiny_models.build_llava_next, "llava_phi3": tiny_models.build_llava_phi3}[spec["builder"]]
        folder = builder(Path(tmp) / "model", dims=getattr(tiny_models, spec["dims"]))
        for setting in SETTINGS:
            if mode != "cpu":  # the GPU's way (the dry run checks it): one process
                results.append(one_setting(mode, setting, str(folder)))
            else:
                done = subprocess.run([sys.executable, __file__, "--one", mode, setting, str(folder)],
                                      check=True, capture_output=True, text=True)
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
            summary = {"mode": mode, **spec, "lora": LORA, "models": f"{spec['builder']} {spec['dims']}", "settings": results}
            if args.json:
                Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    report("mllm_lora_train", summary, args.json)


if __name__ == "__main__":
    main()
