"""CLIP-SF/FF on a GPU: fp32 and bf16/fp16 autocast agree with the CPU fp32 embeddings."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu

# (autocast dtype or None for fp32, minimum cosine to the CPU fp32 embedding)
PRECISIONS = [(None, 0.9999), (torch.float16, 0.9995), (torch.bfloat16, 0.995)]


def _items():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)) for _ in range(4)]
    return [("a red bicycle", None), (None, images[0]), ("the same shoe in white", images[1]),
            ("word " * 100, images[2]), (None, images[3]), ("what is this building?", None)]


@pytest.mark.parametrize("name, size", [("clip_sf", "base"), ("clip_sf", "large"), ("clip_ff", "base"), ("clip_ff", "large")])
@pytest.mark.parametrize("dtype, min_cos", PRECISIONS)
def test_gpu_autocast_agrees_with_cpu_fp32(name, size, dtype, min_cos, assert_cuda_matches_cpu):
    from uniir_cli.registry import build_model

    torch.manual_seed(0)
    model = build_model(name, size=size, pretrained="").eval()
    assert_cuda_matches_cpu(model, model.processor(_items()), dtype, min_cos)


def test_gpu_loss_backward_under_autocast():
    from uniir_cli.registry import build_model

    model = build_model("clip_sf", size="base", pretrained="").cuda().train()
    items = _items()
    queries = model.processor([(t or "query", None) for t, _ in items]).to("cuda")
    positives = model.processor(items).to("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(queries, positives)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.clip_model.logit_scale.grad is not None


def test_encoder_batches_pin_and_move_to_the_gpu():
    from uniir_cli.registry import build_model

    model = build_model("clip_sf", size="tiny", pretrained="").cuda().eval()
    items = _items()
    loader = torch.utils.data.DataLoader(items, batch_size=3, pin_memory=True, collate_fn=model.processor)
    with torch.inference_mode():
        for batch in loader:
            assert batch.has_text.is_pinned() and all(t.is_pinned() for t in batch.tensors.values())
            assert model.encode(batch.to("cuda", non_blocking=True)).shape == (3, 64)
