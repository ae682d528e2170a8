"""BLIP's momentum-distilled, queue-based contrastive loss (spec 5.7), as pure functions.

Given online embeddings q, p (normalised, with gradient) and momentum embeddings q_m, p_m
(normalised, no gradient) of a batch, the positives' candidate ids and the queues
(`query_queue`, `cand_queue`: [D, Q], `idx_queue`: [1, Q]):

* sim_q2c = q @ [p_m ; cand_queue] / temp, sim_c2q = p @ [q_m ; query_queue] / temp;
* hard targets: every column whose candidate id equals the row's positive id, normalised;
* soft targets: alpha * softmax(momentum sims) + (1 - alpha) * hard targets;
* loss = (CE(q->c) + CE(c->q)) / 2.

The queues are updated after the loss from a no-gradient all-gather of the momentum
features and ids (single process: the local batch); `queue_size` must be a multiple of
the global batch so the pointer wraps exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from uniir_cli.errors import ModelError
from uniir_cli.models.losses import ContrastiveOutput, distributed_world

TEMP_MIN, TEMP_MAX = 0.001, 0.5


def momentum_update(pairs: list[tuple[torch.nn.Module, torch.nn.Module]], momentum: float) -> None:
    """EMA: p_m <- m * p_m + (1 - m) * p for every (online, momentum) module pair."""
    with torch.no_grad():
        for online, shadow in pairs:
            for p, p_m in zip(online.parameters(), shadow.parameters()):
                p_m.data.mul_(momentum).add_(p.detach().data, alpha=1.0 - momentum)


def copy_params(pairs: list[tuple[torch.nn.Module, torch.nn.Module]]) -> None:
    """Momentum copies start equal to the online weights and never get gradients."""
    for online, shadow in pairs:
        for p, p_m in zip(online.parameters(), shadow.parameters()):
            p_m.data.copy_(p.data)
            p_m.requires_grad = False


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def momentum_contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    q_m: torch.Tensor,
    p_m: torch.Tensor,
    ids: torch.Tensor,
    temp: torch.Tensor,
    query_queue: torch.Tensor,
    cand_queue: torch.Tensor,
    idx_queue: torch.Tensor,
    alpha: float,
) -> ContrastiveOutput:
    """The symmetric soft-target loss; all embeddings already L2-normalised, [B, D]."""
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, p = q.float(), p.float()
        temp = temp.float()
        with torch.no_grad():
            p_all = torch.cat([p_m.float().t(), cand_queue.float().clone()], dim=1)  # [D, B+Q]
            q_all = torch.cat([q_m.float().t(), query_queue.float().clone()], dim=1)
            idx = ids.view(-1, 1)
            idx_all = torch.cat([idx.t(), idx_queue.clone()], dim=1)  # [1, B+Q]
            pos = torch.eq(idx, idx_all).float()
            hard = pos / pos.sum(dim=1, keepdim=True)
            q2c_m = q_m.float() @ p_all / temp
            c2q_m = p_m.float() @ q_all / temp
            q2c_targets = alpha * F.softmax(q2c_m, dim=1) + (1 - alpha) * hard
            c2q_targets = alpha * F.softmax(c2q_m, dim=1) + (1 - alpha) * hard
        sim_q2c = q @ p_all / temp
        sim_c2q = p @ q_all / temp
        loss = (_soft_ce(sim_q2c, q2c_targets) + _soft_ce(sim_c2q, c2q_targets)) / 2
        hit = pos.gather(1, sim_q2c.detach().argmax(dim=1, keepdim=True)).squeeze(1)
    return ContrastiveOutput(loss, hit.mean().detach(), sim_q2c.detach(), (1.0 / temp).detach())


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows in rank order, without gradient (single process: `x`)."""
    _, world = distributed_world()
    if world == 1:
        return x.detach()
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def enqueue(
    query_queue: torch.Tensor,
    cand_queue: torch.Tensor,
    idx_queue: torch.Tensor,
    ptr: torch.Tensor,
    q_m: torch.Tensor,
    p_m: torch.Tensor,
    ids: torch.Tensor,
) -> None:
    """Write every rank's momentum features and ids at the pointer; advance it."""
    q_m, p_m, ids = gather_no_grad(q_m), gather_no_grad(p_m), gather_no_grad(ids)
    batch, size = q_m.shape[0], query_queue.shape[1]
    if size % batch:
        raise ModelError(
            f"model.options.queue_size = {size} is not a multiple of the global batch {batch}; "
            "choose queue_size = k x train.batch_size x processes"
        )
    start = int(ptr[0])
    query_queue[:, start:start + batch] = q_m.t().to(query_queue.dtype)
    cand_queue[:, start:start + batch] = p_m.t().to(cand_queue.dtype)
    idx_queue[:, start:start + batch] = ids.view(1, -1).to(idx_queue.dtype)
    ptr[0] = (start + batch) % size


def init_queues(dim: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query_queue, cand_queue, idx_queue, ptr): random unit columns from a fixed seed, so
    every rank starts with the same queues without a broadcast; ids -100 (match nothing)."""
    generator = torch.Generator().manual_seed(seed)
    query_queue = F.normalize(torch.randn(dim, size, generator=generator), dim=0)
    cand_queue = F.normalize(torch.randn(dim, size, generator=generator), dim=0)
    return query_queue, cand_queue, torch.full((1, size), -100, dtype=torch.long), torch.zeros(1, dtype=torch.long)
