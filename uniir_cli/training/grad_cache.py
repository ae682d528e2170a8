"""GradCache (Gao et al., 2021): a contrastive step over a large batch in the memory of a chunk.

A contrastive loss wants large batches (every other positive is a negative), but an MLLM's
activations for a batch of 64 do not fit where those of 8 do. `train.grad_cache_chunk = N`
splits each role (queries, positives, hard negatives) into chunks of N items, collated
separately (`chunked_collate`), and takes the step in three passes:

1. embed every chunk without a graph, remembering the random state before each;
2. compute the loss on those embeddings (leaf tensors) and its gradient w.r.t. them;
3. embed each chunk again, with a graph and the same random state, and back-propagate the
   cached embedding gradient into the weights.

What the loss needs besides the embeddings comes from the model's `loss_targets` between
passes 1 and 2 (BLIP: one momentum update, the momentum encoders' embeddings of every chunk;
the queues are updated by the loss as without chunks).

The weights' gradients equal the full batch's (dropout aside: chunks draw their own masks),
at one extra forward pass per step. Under DDP every pass runs without its gradient hooks and
the gradients are averaged over ranks once, when the step synchronises: the loss's own
parameters (CLIP's logit scale, BLIP's temperature) get theirs outside any DDP forward, and
a chunk need not use every parameter (text-only chunks leave a vision tower out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from uniir_cli.errors import ConfigError
from uniir_cli.models.base import EncoderBatch, Retriever


@dataclass
class Chunks:
    """One role's batch as separately collated chunks (each an EncoderBatch)."""

    parts: list[EncoderBatch]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def to(self, device: Any, non_blocking: bool = False) -> Chunks:
        return Chunks([p.to(device, non_blocking=non_blocking) for p in self.parts])

    def pin_memory(self) -> Chunks:
        return Chunks([p.pin_memory() for p in self.parts])


def chunked_collate(collate: Any, chunk: int) -> Any:
    """A `collate_triples` function whose batches come as Chunks of `chunk` samples per role
    (query i's hard negatives stay in query i's chunk)."""

    def collate_chunks(samples: list[dict[str, Any]]) -> tuple[Chunks, Chunks, Chunks | None]:
        parts = [collate(samples[i : i + chunk]) for i in range(0, len(samples), chunk)]
        negatives = [n for _, _, n in parts if n is not None]
        return Chunks([q for q, _, _ in parts]), Chunks([p for _, p, _ in parts]), Chunks(negatives) if negatives else None

    return collate_chunks


def check_supported(model: Retriever) -> None:
    """A ConfigError for a model that computes its loss in `loss` itself, not from embeddings."""
    if type(model).loss is not Retriever.loss:
        raise ConfigError(f"train.grad_cache_chunk: model {model.registry_name!r} overrides loss() instead of "
                          "embedding_loss()/loss_targets(), so GradCache cannot split it; set train.grad_cache_chunk = 0 "
                          "and use train.gradient_accumulation_steps")


def average_gradients(parameters: Sequence[torch.nn.Parameter], world: int, bucket_elements: int = 1 << 24) -> None:
    """Each gradient replaced by its mean over the ranks, as DDP's reduction would; a parameter
    without a gradient on some rank counts zero there, and stays without one if none has it."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    present = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    dist.all_reduce(present)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    buckets: dict[tuple[torch.dtype, torch.device], list[list[torch.Tensor]]] = {}
    for grad in grads:
        runs = buckets.setdefault((grad.dtype, grad.device), [[]])
        if runs[-1] and sum(g.numel() for g in runs[-1]) + grad.numel() > bucket_elements:
            runs.append([])
        runs[-1].append(grad)
    for runs in buckets.values():
        for run in runs:
            flat = torch.cat([g.reshape(-1) for g in run])
            dist.all_reduce(flat)
            flat /= world
            for grad, synced in zip(run, flat.split([g.numel() for g in run]), strict=True):
                grad.copy_(synced.view_as(grad))
    for param, grad, count in zip(params, grads, present.tolist(), strict=True):
        param.grad = grad if count > 0 else None


def _rng_state(devices: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor]], devices: Sequence[int]) -> None:
    torch.set_rng_state(state[0])
    for device, cuda_state in zip(devices, state[1], strict=True):
        torch.cuda.set_rng_state(cuda_state, device)


def grad_cache_step(model: Any, accelerator: Any, queries: Chunks, positives: Chunks, negatives: Chunks | None,
                    **loss_kwargs: Any) -> Any:
    """The loss output of one step, with the weights' gradients accumulated as
    `accelerator.backward(loss)` of the whole batch would."""
    inner = accelerator.unwrap_model(model)
    roles = [queries, positives] + ([negatives] if negatives is not None and loss_kwargs.get("hard_neg_num", 0) > 0 else [])
    parts = [role.parts for role in roles]
    devices = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
    states: list[list[Any]] = []
    leaves: list[torch.Tensor] = []
    with torch.no_grad():
        for role in roles:
            states.append([])
            vectors = []
            for part in role.parts:
                states[-1].append(_rng_state(devices))
                vectors.append(model(part))
            leaves.append(torch.cat(vectors).detach().requires_grad_())
        targets = inner.loss_targets(parts[0], parts[1], parts[2] if len(parts) > 2 else [], **loss_kwargs)
    out = inner.embedding_loss(*leaves, **targets, **loss_kwargs)
    with accelerator.no_sync(model):
        accelerator.backward(out.loss)
        for r, (role, leaf) in enumerate(zip(roles, leaves, strict=True)):
            start = 0
            for c, part in enumerate(role.parts):
                rows = slice(start, start + len(part))
                start += len(part)
                with torch.random.fork_rng(devices=devices):
                    _set_rng_state(states[r][c], devices)
                    vectors = model(part)
                    vectors.backward(gradient=leaf.grad[rows].to(vectors.dtype))
    if accelerator.num_processes > 1 and accelerator.sync_gradients:
        average_gradients(list(model.parameters()), accelerator.num_processes)
    return out
