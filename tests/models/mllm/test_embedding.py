"""MLLM embeddings: mixed left-padded batches equal items alone, the pooled vector is the
post-final-norm hidden state, and right padding is handled (`last_nonpad`) or refused (`last`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.models.mllm.tiny_models import random_image
from uniir_cli.data.instructions import QueryText
from uniir_cli.errors import ModelError
from uniir_cli.models.base import EncoderBatch
from uniir_cli.models.mllm.model import pool
from uniir_cli.registry import build_model

# (variant, prompt preset): every architecture with the presets that ship for it.
ARCHITECTURES = [("llava_phi3", "llava-phi3"), ("llava_next", "e5v"), ("qwen2vl", "gme"), ("qwen2vl", "vlm2vec-qwen2vl")]
QUERY = QueryText("a dog runs across the grass", "Retrieve an image that matches the caption.")


def mixed_items(processor: Any) -> list[dict[str, Any]]:
    """Text, image and image+text items of different lengths and image sizes, candidates and a query."""
    return [
        processor.process("A red train stopped at the station platform.", None),
        processor.process(None, random_image(60, 40, seed=1)),
        processor.process("A cat.", random_image(40, 90, seed=2)),
        processor.process(QUERY.joined, None, QUERY),
        processor.process(QUERY.joined, random_image(100, 100, seed=3), QUERY),
    ]


def fp32_model(tiny_mllms: dict[str, Path], variant: str, prompt: str) -> Any:
    return build_model("mllm", pretrained=str(tiny_mllms[variant]), prompt=prompt, dtype="fp32").eval()


@pytest.mark.parametrize(("variant", "prompt"), ARCHITECTURES)
def test_a_mixed_batch_equals_its_items_alone(tiny_mllms: dict[str, Path], variant: str, prompt: str) -> None:
    model = fp32_model(tiny_mllms, variant, prompt)
    items = mixed_items(model.processor)
    assert len({len(it["input_ids"]) for it in items}) > 2  # the batch really pads
    with torch.no_grad():
        batched = model.encode(model.processor.collate(items))
        alone = torch.cat([model.encode(model.processor.collate([it])) for it in items])
    assert batched.shape == (5, model.embedding_dim)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    assert torch.allclose(batched.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert (batched @ batched.T).fill_diagonal_(0).max() < 0.999  # items differ


def test_the_fork_longrope_model_is_batch_invariant_below_its_original_context(tiny_mllms: dict[str, Path]) -> None:
    """Longrope switches factors when a batch grows past `original_max_position_embeddings`
    (32 here, 4096 in Phi-3.5), so the check keeps every padded batch under it."""
    model = fp32_model(tiny_mllms, "llava_longrope", "fork-phi35")
    processor = model.processor
    items = [processor.process("A cat.", None), processor.process("A dog runs in the park.", None),
             processor.process(None, random_image(40, 40))]
    assert max(len(it["input_ids"]) for it in items) <= 32
    with torch.no_grad():
        batched = model.encode(processor.collate(items))
        alone = torch.cat([model.encode(processor.collate([it])) for it in items])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("variant", "prompt"), ARCHITECTURES[:3])
def test_the_pooled_vector_is_the_post_final_norm_state_at_the_last_position(
    tiny_mllms: dict[str, Path], variant: str, prompt: str
) -> None:
    model = fp32_model(tiny_mllms, variant, prompt)
    seen: dict[str, torch.Tensor] = {}

    def keep(_module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["before"], seen["after"] = inputs[0], output

    norm = model.backbone.model.language_model.norm
    handle = norm.register_forward_hook(keep)
    try:
        with torch.no_grad():
            pooled = model.encode(model.processor.collate(mixed_items(model.processor)))
    finally:
        handle.remove()
    torch.testing.assert_close(pooled, F.normalize(seen["after"][:, -1].float(), dim=-1), atol=1e-6, rtol=0)
    pre_norm = F.normalize(seen["before"][:, -1].float(), dim=-1)
    assert (pooled * pre_norm).sum(-1).max() < 0.99  # the final norm visibly changes the vector


def right_padded(batch: EncoderBatch, pad_id: int) -> EncoderBatch:
    """The same rows with their padding moved to the right."""
    ids, mask = batch.tensors["input_ids"], batch.tensors["attention_mask"]
    tensors = dict(batch.tensors)
    new_ids, new_mask = torch.full_like(ids, pad_id), torch.zeros_like(mask)
    extra = {k: torch.zeros_like(v) for k, v in batch.tensors.items() if k in ("mm_token_type_ids", "token_type_ids")}
    for row in range(len(ids)):
        keep = mask[row].bool()
        n = int(keep.sum())
        new_ids[row, :n], new_mask[row, :n] = ids[row, keep], 1
        for key, value in extra.items():
            value[row, :n] = batch.tensors[key][row, keep]
    tensors.update(input_ids=new_ids, attention_mask=new_mask, **extra)
    return EncoderBatch(batch.has_text, batch.has_image, tensors)


@pytest.mark.parametrize(("variant", "prompt"), ARCHITECTURES[:3])
def test_right_padding_is_pooled_at_the_last_real_token_or_refused(tiny_mllms: dict[str, Path], variant: str, prompt: str) -> None:
    model = fp32_model(tiny_mllms, variant, prompt)
    items = mixed_items(model.processor)
    batch = right_padded(model.processor.collate(items), model.processor.pad_id)
    with torch.no_grad():
        alone = torch.cat([model.encode(model.processor.collate([it])) for it in items])
        states = model.hidden_states(batch)
    mask, ids = batch.tensors["attention_mask"], batch.tensors["input_ids"]
    with pytest.raises(ModelError, match="needs left-padded batches"):
        pool(states, mask, ids, "last", None)
    torch.testing.assert_close(F.normalize(pool(states, mask, ids, "last_nonpad", None), dim=-1), alone, atol=1e-5, rtol=0)


def test_before_token_pooling_takes_the_state_before_the_marker() -> None:
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    ids = torch.tensor([[5, 7, 9, 2], [9, 5, 5, 5]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(pool(states, mask, ids, "before_token", 9), torch.stack([states[0, 1], states[1, -1]]))
    with pytest.raises(ModelError, match="lacks the pool token"):
        pool(states, mask, ids, "before_token", 8)


def test_bf16_is_the_default_and_close_to_fp32(tiny_mllms: dict[str, Path]) -> None:
    fp32 = fp32_model(tiny_mllms, "llava_next", "e5v")
    bf16 = build_model("mllm", pretrained=str(tiny_mllms["llava_next"]), prompt="e5v").eval()
    assert next(bf16.backbone.parameters()).dtype == torch.bfloat16 and bf16.config["dtype"] == "bf16"
    items = mixed_items(bf16.processor)
    with torch.no_grad():
        low = bf16.encode(bf16.processor.collate(items))
        high = fp32.encode(fp32.processor.collate(items))
    assert low.dtype == torch.float32  # pooled and normalised in fp32
    assert (low * high).sum(-1).min() > 0.98
