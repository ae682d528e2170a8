"""Warmup + cosine learning rates at given optimizer steps, and steps per epoch with
gradient accumulation (Accelerate also steps on an epoch's incomplete last window)."""

from __future__ import annotations

import math

import pytest
import torch

from uniir_cli.training.loop import cosine_schedule, steps_per_epoch


def _lrs(total: int, warmup: int, base: float = 0.1) -> list[float]:
    """lr used by optimizer step k (k = 0..total-1), then the lr after the last step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = cosine_schedule(optimizer, total, warmup)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_linear_warmup_then_cosine_to_zero() -> None:
    lrs = _lrs(total=10, warmup=4)
    # warmup: (k + 1) / warmup of the base lr
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    # cosine over the 6 remaining steps: 0.5 * (1 + cos(pi * (k - 4) / 6))
    assert lrs[4] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 6)))  # 0.0933013
    assert lrs[7] == pytest.approx(0.05)  # half-way through the cosine
    assert lrs[9] == pytest.approx(0.1 * 0.5 * (1 + math.cos(5 * math.pi / 6)))  # 0.0066987
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)


def test_no_warmup_is_the_upstream_cosine() -> None:
    lrs = _lrs(total=4, warmup=0, base=1.0)
    assert lrs == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0], abs=1e-7)


@pytest.mark.parametrize(("batches", "accumulation", "steps"), [(13, 1, 13), (13, 3, 5), (12, 3, 4), (2, 4, 1)])
def test_steps_per_epoch(batches: int, accumulation: int, steps: int) -> None:
    assert steps_per_epoch(batches, accumulation) == steps
