"""Shared check of the GPU tests: a model's CUDA embedding against its CPU fp32 one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


def _assert_cuda_matches_cpu(model: torch.nn.Module, batch, dtype: torch.dtype | None, min_cos: float) -> None:
    """Encode `batch` on the CPU in fp32, then on CUDA under `dtype` autocast (None: fp32);
    every item's cosine to its CPU embedding must reach `min_cos`."""
    with torch.inference_mode():
        reference = model.encode(batch)
    model.cuda()
    context = torch.autocast("cuda", dtype=dtype) if dtype is not None else torch.autocast("cuda", enabled=False)
    with torch.inference_mode(), context:
        out = model.encode(batch.to("cuda"))
    assert out.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(out.cpu(), reference, dim=-1)
    assert cos.min().item() >= min_cos, cos


@pytest.fixture
def assert_cuda_matches_cpu() -> Callable[..., None]:
    return _assert_cuda_matches_cpu
