"""Two gloo processes vs one process on the same global batch (run by test_losses.py).

Usage: python dist_loss_worker.py OUT_DIR [PARTS]   (PARTS: "a", "b" or "ab", default "ab")

Part A: a linear "encoder" + `contrastive_loss` with positives gathered across ranks;
gradients averaged over ranks as DDP does. Part B: a tiny CLIP-SF wrapped in
DistributedDataParallel, one `model(queries, positives)` forward per step. Rank 0 writes
`result.json` with the largest differences from the single-process run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
BATCH = 3  # per rank


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _averaged_grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = []
    for p in params:
        g = p.grad.detach().clone()
        dist.all_reduce(g)
        grads.append(g / WORLD)
    return grads


def part_a(rank: int) -> dict[str, float]:
    from uniir_cli.models.losses import contrastive_loss

    gen = torch.Generator().manual_seed(0)
    xq, xp = torch.randn(WORLD * BATCH, 8, generator=gen), torch.randn(WORLD * BATCH, 8, generator=gen)

    def fresh() -> tuple[torch.nn.Linear, torch.nn.Parameter]:
        torch.manual_seed(1)
        return torch.nn.Linear(8, 5), torch.nn.Parameter(torch.tensor(2.0))

    enc, scale = fresh()
    rows = slice(rank * BATCH, (rank + 1) * BATCH)
    out = contrastive_loss(enc(xq[rows]), enc(xp[rows]), scale)
    out.loss.backward()
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)
    grads = _averaged_grads([*enc.parameters(), scale])

    ref_enc, ref_scale = fresh()
    ref = contrastive_loss(ref_enc(xq), ref_enc(xp), ref_scale, gather=False)
    ref.loss.backward()
    ref_grads = [p.grad for p in [*ref_enc.parameters(), ref_scale]]
    return {
        "a_loss": abs(loss.item() / WORLD - ref.loss.item()),
        "a_grad": max(_max_diff(g, r) for g, r in zip(grads, ref_grads)),
        "a_logits_cols": float(out.logits.shape[1]),
        "a_grad_norm": float(sum(r.norm() for r in ref_grads)),
    }


def part_b(rank: int) -> dict[str, float]:
    from torch.nn.parallel import DistributedDataParallel

    from uniir_cli.registry import build_model

    def fresh():
        torch.manual_seed(5)
        return build_model("clip_sf", size="tiny", pretrained="")

    gen = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 32, 32, generator=gen) for _ in range(WORLD * BATCH)]
    queries = [(f"query number {i}", None) for i in range(WORLD * BATCH)]

    def batches(model, rows: range):
        from torchvision.transforms.functional import to_pil_image

        proc = model.processor
        q = proc([queries[i] for i in rows])
        p = proc([(f"caption {i}" if i % 2 else None, to_pil_image(images[i])) for i in rows])
        return q, p

    model = fresh()
    ddp = DistributedDataParallel(model)
    q, p = batches(model, range(rank * BATCH, (rank + 1) * BATCH))
    out = ddp(q, p)
    out.loss.backward()  # DDP averages gradients over ranks
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)

    ref_model = fresh()
    rq, rp = batches(ref_model, range(WORLD * BATCH))
    ref = ref_model.loss(rq, rp, gather=False)
    ref.loss.backward()
    diffs = [
        _max_diff(a.grad, b.grad)
        for a, b in zip(model.parameters(), ref_model.parameters())
        if b.grad is not None
    ]
    return {"b_loss": abs(loss.item() / WORLD - ref.loss.item()), "b_grad": max(diffs), "b_params": float(len(diffs))}


def worker(rank: int, out_dir: str, parts: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD)
    try:
        result = {}
        if "a" in parts:
            result.update(part_a(rank))
        if "b" in parts:
            result.update(part_b(rank))
        if rank == 0:
            (Path(out_dir) / "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    mp.spawn(worker, args=(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ab"), nprocs=WORLD, join=True)
