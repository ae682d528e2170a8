"""BLIP-FF/SF on a GPU: fp32 and fp16/bf16 autocast (eager and SDPA attention) agree with
the CPU fp32 embeddings; the momentum-queue loss trains under autocast."""

from __future__ import annotations

import pytest
import torch

from uniir_cli.models.base import EncoderBatch

pytestmark = pytest.mark.gpu

# (autocast dtype or None for fp32, minimum cosine to the CPU fp32 embedding)
PRECISIONS = [(None, 0.9999), (torch.float16, 0.999), (torch.bfloat16, 0.99)]


def _batch(size: int, image_size: int, seed: int = 0) -> EncoderBatch:
    """Token ids and pixels as the processor makes them (no bert-base-uncased vocabulary offline)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(size, 100, dtype=torch.long)
    ids[:, 0], ids[:, 19] = 101, 102
    ids[:, 1:19] = torch.randint(1000, 30000, (size, 18), generator=gen)
    mask = (torch.arange(100) < 20).long().expand(size, -1).clone()
    pixels = torch.randn(size, 3, image_size, image_size, generator=gen)
    has_text = torch.tensor([i % 3 != 1 for i in range(size)])
    has_image = torch.tensor([i % 3 != 0 for i in range(size)])
    pixels[~has_image] = 0
    tensors = {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "did": torch.arange(size)}
    return EncoderBatch(has_text, has_image, tensors)


@pytest.mark.parametrize("name", ["blip_ff", "blip_sf"])
@pytest.mark.parametrize("sdpa", [False, True])
@pytest.mark.parametrize("dtype, min_cos", PRECISIONS)
def test_gpu_autocast_agrees_with_cpu_fp32(name, sdpa, dtype, min_cos, assert_cuda_matches_cpu):
    from uniir_cli.registry import build_model

    torch.manual_seed(0)
    model = build_model(name, size="base", vocab="tiny", training_state=False).eval()
    model.set_sdpa(sdpa)  # the CPU reference takes the same path; SDPA equals eager within 2e-6 (test_blip.py)
    assert_cuda_matches_cpu(model, _batch(6, 224), dtype, min_cos)


def test_gpu_momentum_queue_loss_trains_under_autocast():
    from uniir_cli.registry import build_model

    torch.manual_seed(0)
    model = build_model("blip_ff", size="tiny", queue_size=16, augment=False).cuda().train()
    queries, positives = _batch(8, 32, seed=1).to("cuda"), _batch(8, 32, seed=2).to("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(queries, positives, progress=1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.temp.grad is not None
    assert int(model.new_ptr_queue) == 8 and model.idx_queue[0, :8].tolist() == list(range(8))
