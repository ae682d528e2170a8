"""LoRA training of the `mllm` family: adapters on language-model linears only, one step lowers
the loss and changes only the adapter, checkpointing changes nothing, and an adapter-only
checkpoint reloads, merges (also as the start of a next stage) and converts to a full model
with the same embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.models.mllm.tiny_models import random_image
from uniir_cli.app import build_app
from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models.base import EncoderBatch
from uniir_cli.registry import build_model, load_model

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def lora_model(folder: Path, **options: Any) -> Any:
    torch.manual_seed(0)
    return build_model("mllm", pretrained=str(folder), prompt=options.pop("prompt", "e5v"), dtype="fp32",
                       lora=options.pop("lora", LORA), **options)


def pairs(model: Any) -> tuple[EncoderBatch, EncoderBatch]:
    """Queries (text, image, image+text) and their positives, one left-padded batch each."""
    process = model.processor.process
    queries = [process("a dog runs across the grass", None), process(None, random_image(40, 40, seed=1)),
               process("a cat on a sofa", random_image(30, 50, seed=2)), process("a red train", None)]
    positives = [process("A dog runs across the green grass in the park.", None), process("A plate of food.", None),
                 process(None, random_image(60, 40, seed=3)), process(None, random_image(50, 50, seed=4))]
    return model.processor.collate(queries), model.processor.collate(positives)


@pytest.mark.parametrize("variant", ["llava_phi3", "llava_next", "qwen2vl"])
def test_lora_adapts_language_model_linears_only(tiny_mllms: dict[str, Path], variant: str) -> None:
    prompt = {"llava_phi3": "llava-phi3", "llava_next": "e5v", "qwen2vl": "gme"}[variant]
    model = lora_model(tiny_mllms[variant], prompt=prompt)
    assert model.adapted and all(".language_model.layers." in name for name in model.adapted)
    kinds = {name.rsplit(".", 1)[1] for name in model.adapted}
    assert kinds == ({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"} if variant == "llava_phi3"
                     else {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable) and {p.dtype for p in trainable.values()} == {torch.float32}
    assert not any(word in n for n in trainable for word in ("vision_tower", "visual", "multi_modal_projector"))


def test_one_lora_step_lowers_the_loss_and_changes_only_the_adapter(tiny_mllms: dict[str, Path]) -> None:
    model = lora_model(tiny_mllms["llava_next"]).train()
    queries, positives = pairs(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    loss = model(queries, positives, gather=False).loss
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = model(queries, positives, gather=False).loss
    assert after < loss.detach()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k in before if "lora_B" in k}  # B starts at 0, so A gets no gradient in step one
    assert float(model(queries, positives, gather=False).logit_scale) == pytest.approx(20.0)  # temperature 0.05


def test_activation_checkpointing_gives_identical_loss_and_gradients(tiny_mllms: dict[str, Path]) -> None:
    results = []
    for checkpointing in (False, True):
        model = lora_model(tiny_mllms["llava_next"], lora={**LORA, "dropout": 0.1}).train()
        with torch.no_grad():  # non-zero B, so every adapter tensor gets a gradient
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
        model.set_grad_checkpointing(checkpointing)
        assert model.backbone.model.language_model.gradient_checkpointing is checkpointing
        queries, positives = pairs(model)
        torch.manual_seed(1)  # the same dropout masks (recomputation replays the RNG state)
        loss = model(queries, positives, gather=False).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (loss_off, grads_off), (loss_on, grads_on) = results
    assert torch.equal(loss_off, loss_on)
    assert grads_off.keys() == grads_on.keys() and all(torch.equal(grads_off[k], grads_on[k]) for k in grads_off)
    assert all(g.abs().sum() > 0 for g in grads_off.values())


@pytest.fixture
def trained_adapter(tiny_mllms: dict[str, Path], tmp_path: Path) -> tuple[Any, Path]:
    """A LoRA model after two steps, saved as a uniir checkpoint."""
    model = lora_model(tiny_mllms["llava_next"]).train()
    queries, positives = pairs(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        model(queries, positives, gather=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(tmp_path / "adapter")
    return model, tmp_path / "adapter"


def test_an_adapter_checkpoint_reloads_merges_and_converts_to_the_same_embeddings(
    trained_adapter: tuple[Any, Path], tiny_mllms: dict[str, Path], tmp_path: Path
) -> None:
    model, folder = trained_adapter
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    saved = load_file(str(folder / "model.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # the adapter only: the base comes from `pretrained`
    queries, _ = pairs(model)
    with torch.no_grad():
        expected = model.encode(queries)
        reloaded = load_model(folder)
        torch.testing.assert_close(reloaded.encode(queries), expected, atol=0, rtol=0)
        merged = build_model("mllm", pretrained=str(tiny_mllms["llava_next"]), prompt="e5v", dtype="fp32", adapter=str(folder))
        torch.testing.assert_close(merged.encode(queries), expected, atol=1e-6, rtol=0)
    assert not any("lora_" in k for k in merged.state_dict())

    result = CliRunner().invoke(build_app(), ["convert", str(folder), "--merge", "--out", str(tmp_path / "full")])
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "model.json", "tokenizer.json"} <= {p.name for p in (tmp_path / "full").iterdir()}
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "full").encode(queries), expected, atol=1e-6, rtol=0)


def test_a_next_stage_starts_from_the_merged_adapter_and_records_the_chain(
    trained_adapter: tuple[Any, Path], tiny_mllms: dict[str, Path], tmp_path: Path
) -> None:
    stage1, folder = trained_adapter
    stage2 = lora_model(tiny_mllms["llava_next"], adapter=str(folder))
    queries, _ = pairs(stage1)
    with torch.no_grad():  # a fresh adapter (B = 0) on the merged stage 1: stage 1's embeddings
        torch.testing.assert_close(stage2.encode(queries), stage1.encode(queries), atol=1e-6, rtol=0)
        for name, param in stage2.named_parameters():
            if "lora_B" in name:
                param.add_(0.05)
        expected = stage2.encode(queries)
    stage2.save_pretrained(tmp_path / "stage2")
    assert load_model(tmp_path / "stage2").config["adapter"] == str(folder.resolve())
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "stage2").encode(queries), expected, atol=0, rtol=0)
    result = CliRunner().invoke(build_app(), ["convert", str(tmp_path / "stage2"), "--merge", "--out", str(tmp_path / "full")])
    assert result.exit_code == 0, result.output
    with torch.no_grad():  # both stages merged
        torch.testing.assert_close(load_model(tmp_path / "full").encode(queries), expected, atol=2e-6, rtol=0)


def test_bad_lora_settings_and_foreign_adapters_are_refused(trained_adapter: tuple[Any, Path], tiny_mllms: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown key.*rank"):
        lora_model(tiny_mllms["llava_next"], lora={"rank": 8})
    with pytest.raises(ConfigError, match="matches no linear layer"):
        lora_model(tiny_mllms["llava_next"], lora={"targets": r".*\.vision\.q_proj"})
    with pytest.raises(ConfigError, match="r >= 1"):
        lora_model(tiny_mllms["llava_next"], lora={"r": 0})
    _, folder = trained_adapter
    with pytest.raises(ModelError, match="does not fit this base model"):
        build_model("mllm", pretrained=str(tiny_mllms["llava_phi3"]), prompt="llava-phi3", dtype="fp32", adapter=str(folder))
    with pytest.raises(ModelError, match="not a LoRA checkpoint"):
        from uniir_cli.models.mllm.model import merge_lora_folder

        merge_lora_folder(tiny_mllms["llava_next"], folder.parent / "out")
