"""Two gloo ranks train one step of a tiny BLIP-FF under DDP (run by test_blip_momentum.py).

Usage: python blip_dist_worker.py OUT_DIR. Rank 0 writes `result.json`: whether the queues
started identical without a broadcast, whether they are identical after the step, and what
was enqueued (every rank's momentum features and ids, in rank order).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD, BATCH = 2, 2


def _same_everywhere(x: torch.Tensor) -> bool:
    out = [torch.empty_like(x) for _ in range(WORLD)]
    dist.all_gather(out, x.contiguous())
    return all(torch.equal(out[0], o) for o in out)


def run(rank: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    from uniir_cli.registry import build_model

    torch.manual_seed(1234 + rank)  # different global RNG per rank: queues must not depend on it
    model = build_model("blip_ff", size="tiny", queue_size=8, momentum=0.0).eval()
    started_same = _same_everywhere(model.query_queue) and _same_everywhere(model.cand_queue)
    texts = [f"query {rank} {i}" for i in range(BATCH)]
    queries = model.processor([(t, None) for t in texts])
    positives = model.processor([(f"cand {rank} {i}", None) for i in range(BATCH)])
    positives.tensors["did"] = torch.tensor([100 * rank + i for i in range(BATCH)])
    ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    ddp(queries, positives, progress=1.0).loss.backward()
    del ddp  # DDP's reducer holds the process group: free it before destroying the group
    result = {
        "started_same": started_same,
        "ended_same": all(_same_everywhere(getattr(model, n)) for n in ("query_queue", "cand_queue", "idx_queue", "new_ptr_queue")),
        "idx_queue": model.idx_queue.tolist(),
        "ptr": int(model.new_ptr_queue),
    }
    if rank == 0:
        Path(out_dir, "result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1],), nprocs=WORLD, join=True)
