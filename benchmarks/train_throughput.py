"""Training throughput (samples/s) of CLIP-SF on this machine, 1 vs 2 processes (issue #5).

    python benchmarks/train_throughput.py                          # tiny and base, CPU
    python benchmarks/train_throughput.py --sizes base --steps 5
    python benchmarks/train_throughput.py --gpu                    # large, bf16, batch 105, with/without checkpointing
    python benchmarks/train_throughput.py --gpu --dry-run          # the GPU code path on the CPU, tiny model, batch 8

CPU: `uniir train` on the synthetic M-BEIR with random-init weights, in 1 process (torch's
threads) and in 2 gloo processes (`accelerate launch --multi_gpu`, 1 thread each), same
per-process batch. Throughput is taken from the run's loss log after the first step (which
includes start-up work). GPU mode times CLIP-SF large at batch 105 in bf16 with and without
gradient checkpointing and reports peak GPU memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.training.metrics_log import read_metrics_log  # noqa: E402


def _train(data: Path, run: Path, size: str, batch: int, steps: int, processes: int, extra: list[str]) -> float:
    args = ["-m", "uniir_cli", "train", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run),
            "--set", f"model.size={size}", "--set", f"train.batch_size={batch}", "--set", f"train.max_steps={steps}",
            "--set", "train.save_every_steps=0", "--set", "train.num_workers=0", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
        env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run(command, check=True, env=env, capture_output=True)
    records = read_metrics_log(run / "metrics/train.jsonl")
    # samples/s after the first step: (samples of steps 2..n) / (time of steps 2..n)
    first, last = records[0], records[-1]
    samples = lambda r: r["step"] * batch * processes  # noqa: E731
    elapsed = lambda r: samples(r) / r["samples_per_s"]  # noqa: E731
    return (samples(last) - samples(first)) / (elapsed(last) - elapsed(first))


def gpu(args: argparse.Namespace) -> list[dict]:
    """CLIP-SF large training steps on CUDA; `--dry-run`: the same code on the CPU with the
    tiny model at batch 8 and 2 timed steps, so the script is known to run before a GPU session."""
    import time

    import torch

    from uniir_cli.models.base import EncoderBatch
    from uniir_cli.registry import build_model

    if args.dry_run:
        device, size, b, steps = torch.device("cpu"), "tiny", 8, 2
    else:
        device, size, b, steps = torch.device("cuda"), "large", args.gpu_batch, args.steps
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    for checkpointing in (False, True):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = build_model("clip_sf", size=size, pretrained="").to(device).train()
        if checkpointing:
            model.set_grad_checkpointing(True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        image_size = model.processor.image_size
        rows_index = torch.arange(b, device=device)
        tokens = torch.randint(1, 49000, (b, 77), device=device)
        tokens[:, -1] = 49407  # EOT, where CLIP reads the text feature
        ones = torch.ones(b, dtype=torch.bool, device=device)
        tensors = {"input_ids": tokens, "text_index": rows_index,
                   "pixel_values": torch.randn(b, 3, image_size, image_size, device=device), "image_index": rows_index}
        batch = EncoderBatch(ones, ones, tensors)  # the layout ClipProcessor.collate produces
        times = []
        for step in range(steps + 2):
            sync()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(batch, batch)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if step >= 2:
                times.append(time.perf_counter() - start)
        row = {"device": torch.cuda.get_device_name() if cuda else "cpu (dry run)", "size": size, "batch": b,
               "bf16": True, "grad_checkpointing": checkpointing, "samples_per_s": b / (sum(times) / len(times)),
               "loss": out.loss.detach().item()}
        if cuda:
            row["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        rows.append(row)
        del model, optimizer, out
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,base")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--gpu-batch", type=int, default=105)
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: run its code on the CPU, tiny model, batch 8")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.gpu:
        report("train_throughput_gpu", gpu(args), args.json)
        return
    from uniir_cli.data.synthetic import generate_synthetic_mbeir

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_synthetic_mbeir(Path(tmp) / "data", size="demo").root
        for size in args.sizes.split(","):
            batch = 32 if size == "tiny" else 8
            steps = args.steps if size == "tiny" else max(3, args.steps // 2)
            for processes in (1, 2):
                run = Path(tmp) / f"{size}-{processes}"
                rate = _train(data, run, size, batch, steps, processes, [])
                rows.append({"size": size, "processes": processes, "batch_per_process": batch, "samples_per_s": rate})
    report("train_throughput", rows, args.json)


if __name__ == "__main__":
    main()
