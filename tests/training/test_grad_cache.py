"""GradCache (`train.grad_cache_chunk`): the chunked step gives the full batch's loss and
gradients (fp32, relative to each gradient tensor's largest value: CLIP-SF with and without
hard negatives within 2e-6, as sums run in another order; an MLLM with LoRA within 1e-5, as
each chunk is padded to its own longest item; BLIP's momentum-queue loss, its momentum
encoders and queues too), and `uniir train` with chunks follows the same losses as without."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator

from tests.models.mllm.tiny_models import random_image
from uniir_cli.errors import ConfigError
from uniir_cli.registry import build_model
from uniir_cli.training.grad_cache import Chunks, check_supported, grad_cache_step

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
TEXTS = ["a dog on grass", "two bicycles", "a plate of rice", "a cat asleep", "an umbrella in rain", "children playing",
         "a plane at sunset", "a white kitchen"]


def _items(model: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """Text, image and image+text items in turn."""
    process = model.processor.process
    out = []
    for i in range(count):
        text, image = TEXTS[(i + seed) % len(TEXTS)], random_image(48 + 8 * (i % 3), 40, seed=seed * 100 + i)
        out.append(process(text, None) if i % 3 == 0 else process(None, image) if i % 3 == 1 else process(text, image))
    return out


def _chunks(model: Any, items: list[dict[str, Any]], size: int) -> Chunks:
    return Chunks([model.processor.collate(items[i : i + size]) for i in range(0, len(items), size)])


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _compare(model: Any, hard_neg_num: int = 0, chunk: int = 3, batch: int = 8, tolerance: float = 2e-6) -> None:
    queries, positives = _items(model, batch, 1), _items(model, batch, 2)
    negatives = _items(model, batch * hard_neg_num, 3) if hard_neg_num else []
    kwargs = {"hard_neg_num": hard_neg_num, "in_batch_neg_num": 2 if hard_neg_num else 0, "gather": False}
    collate = model.processor.collate
    full = model(collate(queries), collate(positives), collate(negatives) if negatives else None, **kwargs)
    full.loss.backward()
    expected = _grads(model)
    negative_chunks = None
    if negatives:  # query i's negatives stay in query i's chunk
        negative_chunks = Chunks([collate(negatives[i * hard_neg_num : (i + chunk) * hard_neg_num]) for i in range(0, batch, chunk)])
    out = grad_cache_step(model, Accelerator(cpu=True), _chunks(model, queries, chunk), _chunks(model, positives, chunk),
                          negative_chunks, **kwargs)
    got = _grads(model)
    assert abs(out.loss.item() - full.loss.item()) < 1e-6
    assert expected.keys() == got.keys() and expected
    for name, grad in expected.items():  # fp32 sums in another order: relative to each tensor's scale
        assert (got[name] - grad).abs().max() <= tolerance * grad.abs().max() + 1e-8, name
    assert any(g.abs().sum() > 0 for g in expected.values())


@pytest.mark.parametrize("hard_neg_num", [0, 2])
def test_clip_grad_cache_equals_the_full_batch(hard_neg_num: int) -> None:
    torch.manual_seed(0)
    _compare(build_model("clip_sf", size="tiny", pretrained="").train(), hard_neg_num=hard_neg_num)


def test_mllm_lora_grad_cache_equals_the_full_batch(tiny_mllms: dict[str, Path]) -> None:
    torch.manual_seed(0)
    model = build_model("mllm", pretrained=str(tiny_mllms["llava_next"]), prompt="e5v", dtype="fp32",
                        lora={"r": 4, "alpha": 8, "dropout": 0.0}).train()
    with torch.no_grad():  # non-zero B, so every adapter tensor gets a gradient
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    _compare(model, chunk=3, batch=6, tolerance=1e-5)  # each chunk is left-padded to its own longest item


@pytest.mark.parametrize("name", ["blip_ff", "blip_sf"])
def test_blip_grad_cache_equals_the_full_batch(name: str) -> None:
    """The momentum-queue loss: the same loss, gradients, momentum encoders and queues after
    the step (dropout off: eval mode; the queue holds two batches, so it wraps)."""
    torch.manual_seed(0)
    full_model = build_model(name, size="tiny", pretrained="", training_state=True, queue_size=12).eval()
    chunked_model = copy.deepcopy(full_model)
    queries, positives = _items(full_model, 6, 1), _items(full_model, 6, 2)
    collate = full_model.processor.collate

    def with_ids(batch: Any, first: int) -> Any:
        batch.tensors["did"] = torch.arange(first, first + len(batch)) % 4  # repeated ids: several positives per row
        return batch

    kwargs = {"gather": False, "progress": 0.5}
    full = full_model(collate(queries), with_ids(collate(positives), 0), None, **kwargs)
    full.loss.backward()
    parts = [with_ids(collate(positives[i : i + 4]), i) for i in range(0, 6, 4)]
    out = grad_cache_step(chunked_model, Accelerator(cpu=True), _chunks(chunked_model, queries, 4), Chunks(parts), None, **kwargs)
    assert abs(out.loss.item() - full.loss.item()) < 1e-6
    expected, got = _grads(full_model), _grads(chunked_model)
    assert expected.keys() == got.keys() and "temp" in expected
    for key, grad in expected.items():
        assert (got[key] - grad).abs().max() <= 2e-6 * grad.abs().max() + 1e-8, key
    for (key, a), b in zip(full_model.state_dict().items(), chunked_model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), key  # momentum encoders, queues, pointer


def test_a_model_that_overrides_loss_is_refused() -> None:
    class OwnLoss(type(build_model("clip_sf", size="tiny", pretrained=""))):
        def loss(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("not called")

    model = OwnLoss(size="tiny", pretrained="")
    with pytest.raises(ConfigError, match="grad_cache_chunk.*overrides loss"):
        check_supported(model)


def test_training_with_grad_cache_follows_the_same_losses(synthetic_tiny: Path, tmp_path: Path) -> None:
    def losses(run: Path, *extra: str) -> list[float]:
        subprocess.run([sys.executable, "-m", "uniir_cli", "train", "--preset", "demo", "--data-dir", str(synthetic_tiny),
                        "--run-dir", str(run), "--set", "train.batch_size=16", "--set", "train.max_steps=4", *extra],
                       check=True, env=ENV, capture_output=True)
        return [json.loads(line)["loss"] for line in (run / "metrics/train.jsonl").read_text().splitlines()]

    plain, chunked = losses(tmp_path / "plain"), losses(tmp_path / "chunked", "--set", "train.grad_cache_chunk=5")
    assert len(plain) == len(chunked) == 4
    assert max(abs(a - b) for a, b in zip(plain, chunked, strict=True)) < 1e-5
