"""Contrastive losses of UniIR's CLIP models (spec 5.7).

Default: one-directional InfoNCE query -> candidate. Query and positive embeddings are
L2-normalised; the positives of *all* ranks are all-gathered with gradient, so every query
sees `world_size * batch - 1` negatives; logits = exp(logit_scale) * q . P_all^T with the
learnable, unclamped `logit_scale`; the target of local row i is `rank * batch + i`.
No candidate -> query term.

Hard negatives (`hard_neg_num > 0`) come in two layouts (`train.hard_negatives`):

* "shared" (E5-V, SimCSE, the UniIR fork's MLLM loss): every rank's hard negatives are
  gathered like the positives and appended as further columns of the one InfoNCE matrix;
* "own" (UniIR's CLIP/BLIP code): each query gets its own logit row
[q.p, q.n_1..q.n_H, q.(first `in_batch_neg_num` other local positives)], the positive at
column 0, and nothing is gathered across ranks (as upstream). Upstream's code meant the
same in-batch columns but, through an indexing slip, repeats the query's own positive
there; uniir uses the other positives (the released models used neither: both counts 0).

`sample_mask` ([B] bool) averages the per-query losses over the marked queries only (the
fork's "only samples whose every side has an image"; a plain mean when none is marked).

The loss is computed in fp32 with autocast off, whatever precision produced the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from uniir_cli.errors import ModelError


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor  # scalar, differentiable
    accuracy: torch.Tensor  # scalar, detached: fraction of rows whose argmax is the target
    logits: torch.Tensor  # [B, columns], detached, for logging/debugging
    logit_scale: torch.Tensor  # exp(logit_scale) used, detached, for logging (no host sync)


def distributed_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own rows.

    Rank r's loss depends on every rank's rows, so the gradient of row block s is summed
    over ranks (all_reduce, which every backend supports, then the own slice). With DDP
    then averaging parameter gradients, the result equals the gradient of the mean loss
    over the global batch in one process.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        rank, world = dist.get_rank(), dist.get_world_size()
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        # torch >= 2.14 renames all_gather_into_tensor (deprecated there) to all_gather_single
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start, end = ctx.rows
        return grad[start:end]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank in rank order; gradients flow back to each owner.

    Every rank must pass the same shape (train with `drop_last=True`). Single process:
    returns `x` unchanged.
    """
    _, world = distributed_world()
    if world == 1:
        return x
    return _AllGatherWithGrad.apply(x)


def _autocast_off(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, sample_mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy averaged over the rows `sample_mask` marks; over all rows when it marks
    none or is None (then exactly `F.cross_entropy`'s mean)."""
    if sample_mask is None:
        return F.cross_entropy(logits, target)
    per_sample = F.cross_entropy(logits, target, reduction="none")
    weights = sample_mask.to(per_sample.dtype)
    count = weights.sum()
    return torch.where(count > 0, (per_sample * weights).sum() / count.clamp(min=1), per_sample.mean())


def contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    gather: bool = True,
    negatives: torch.Tensor | None = None,
    sample_mask: torch.Tensor | None = None,
) -> ContrastiveOutput:
    """InfoNCE of local queries `q` [B, D] against the (gathered) positives `p` [B, D] and,
    as further columns, the (gathered) hard negatives `negatives` [N, D] of every query."""
    if q.shape != p.shape:
        raise ModelError(f"queries {tuple(q.shape)} and positives {tuple(p.shape)} differ in shape")
    with _autocast_off(q.device):
        q = F.normalize(q.float(), dim=-1)
        p = F.normalize(p.float(), dim=-1)
        rank, world = distributed_world() if gather else (0, 1)
        columns = all_gather_with_grad(p) if world > 1 else p
        if negatives is not None:
            n = F.normalize(negatives.float(), dim=-1)
            columns = torch.cat([columns, all_gather_with_grad(n) if world > 1 else n])
        scale = logit_scale.float().exp()
        logits = scale * q @ columns.t()
        target = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
        loss = _cross_entropy(logits, target, sample_mask)
        accuracy = (logits.argmax(dim=-1) == target).float().mean()
    return ContrastiveOutput(loss, accuracy.detach(), logits.detach(), scale.detach())


def _first_other_columns(batch: int, count: int, device: torch.device) -> torch.Tensor:
    """[B, count] column indices: for row i, the first `count` of 0..B-1 other than i."""
    base = torch.arange(batch - 1, device=device).unsqueeze(0)  # [1, B-1]
    rows = torch.arange(batch, device=device).unsqueeze(1)  # [B, 1]
    return (base + (base >= rows).long())[:, :count]


def hard_negative_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    in_batch_neg_num: int = 0,
    sample_mask: torch.Tensor | None = None,
) -> ContrastiveOutput:
    """Per-query softmax over [positive, its H hard negatives, K in-batch negatives].

    `negatives` is [B, H, D] (query i's hard negatives in row i). Not gathered across ranks.
    """
    batch, dim = q.shape
    if negatives.ndim != 3 or negatives.shape[0] != batch or negatives.shape[2] != dim:
        raise ModelError(f"hard negatives must be [B={batch}, H, D={dim}], got {tuple(negatives.shape)}")
    in_batch_neg_num = max(0, min(in_batch_neg_num, batch - 1))  # capped at B-1, as upstream
    with _autocast_off(q.device):
        q = F.normalize(q.float(), dim=-1)
        p = F.normalize(p.float(), dim=-1)
        n = F.normalize(negatives.float(), dim=-1)
        columns = [(q * p).sum(dim=-1, keepdim=True), torch.einsum("bd,bhd->bh", q, n)]
        if in_batch_neg_num > 0:
            sims = q @ p.t()
            columns.append(sims.gather(1, _first_other_columns(batch, in_batch_neg_num, q.device)))
        scale = logit_scale.float().exp()
        logits = scale * torch.cat(columns, dim=1)
        target = torch.zeros(batch, dtype=torch.long, device=q.device)
        loss = _cross_entropy(logits, target, sample_mask)
        accuracy = (logits.argmax(dim=-1) == 0).float().mean()
    return ContrastiveOutput(loss, accuracy.detach(), logits.detach(), scale.detach())
