"""Loading MLLM checkpoints: legacy processors, key layouts and the fork's config repaired, LoRA
adapters (safetensors and pickled v4 layout) merged, image-token budgets, round trips, and a
one-line error for each bad checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.models.mllm.tiny_models import phi3_from_llama_longrope, random_image
from uniir_cli.errors import ConfigError, DataError, ModelError
from uniir_cli.registry import build_model, load_model


def embed(model: Any, items: list[tuple[str | None, Any]]) -> torch.Tensor:
    processor = model.processor
    with torch.no_grad():
        return model.encode(processor.collate([processor.process(text, image) for text, image in items]))


ITEMS = [("A dog runs across the green grass.", None), (None, random_image(64, 48, seed=4)),
         ("A red train.", random_image(50, 70, seed=5))]


def mllm(folder: Path, prompt: str, **options: Any) -> Any:
    return build_model("mllm", pretrained=str(folder), prompt=prompt, dtype="fp32", **options).eval()


def test_a_legacy_processor_is_filled_from_the_model_config(tiny_mllms: dict[str, Path]) -> None:
    from transformers import AutoProcessor

    legacy = tiny_mllms["llava_phi3_legacy_processor"]
    raw = AutoProcessor.from_pretrained(legacy)
    with pytest.raises(TypeError):  # what a 2024-era processor does on the first image
        raw(text=["<image>\nA cat."], images=[random_image(60, 60)], return_tensors="pt")
    repaired = mllm(legacy, "llava-phi3")
    assert "legacy processor" in repaired.provenance["repairs"][0]
    torch.testing.assert_close(embed(repaired, ITEMS), embed(mllm(tiny_mllms["llava_phi3"], "llava-phi3"), ITEMS), atol=1e-6, rtol=0)


def test_the_2024_weight_key_layout_loads_to_the_same_embeddings(tiny_mllms: dict[str, Path]) -> None:
    keys = load_file(tiny_mllms["llava_next_legacy_keys"] / "model.safetensors")
    assert any(k.startswith("vision_tower.vision_model.") for k in keys)
    legacy, current = mllm(tiny_mllms["llava_next_legacy_keys"], "e5v"), mllm(tiny_mllms["llava_next"], "e5v")
    torch.testing.assert_close(embed(legacy, ITEMS), embed(current, ITEMS), atol=1e-6, rtol=0)


def test_the_fork_config_loads_as_plain_llava_with_a_longrope_llama(tiny_mllms: dict[str, Path]) -> None:
    fork = mllm(tiny_mllms["fork_phi35"], "fork-phi35")
    assert fork.provenance["repairs"] == ["config model_type fromage_llava_phi35 read as llava"]
    assert type(fork.backbone).__name__ == "LlavaForConditionalGeneration"
    assert fork.backbone.config.text_config.rope_parameters["rope_type"] == "longrope"
    short = [("A cat.", None), (None, random_image(40, 40))]  # under the longrope switch (see test_embedding)
    torch.testing.assert_close(embed(fork, short), embed(mllm(tiny_mllms["llava_longrope"], "fork-phi35"), short), atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", [20, 60])  # below and above original_max_position_embeddings = 32
def test_the_longrope_llama_text_model_equals_phi3(tiny_mllms: dict[str, Path], length: int) -> None:
    llama = mllm(tiny_mllms["llava_longrope"], "fork-phi35").backbone.model.language_model
    phi3 = phi3_from_llama_longrope(llama)
    ids = torch.randint(5, llama.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        torch.testing.assert_close(llama(input_ids=ids).last_hidden_state, phi3(input_ids=ids).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def qwen2vl_lora(tiny_mllms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A VLM2Vec-style LoRA adapter folder on the tiny Qwen2-VL, and the model peft merged in process."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    base = Qwen2VLForConditionalGeneration.from_pretrained(tiny_mllms["qwen2vl"], dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    peft_model.save_pretrained(folder)
    return folder, peft_model.merge_and_unload().eval()


def test_a_lora_adapter_folder_is_merged_like_peft_does(tiny_mllms: dict[str, Path], qwen2vl_lora: tuple[Path, Any]) -> None:
    folder, merged = qwen2vl_lora
    adapted = mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl", adapter=str(folder))
    assert adapted.provenance["repairs"] == [f"LoRA adapter {folder} merged"]
    reference = mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl")
    base = embed(reference, ITEMS)
    reference.backbone = merged
    vectors = embed(adapted, ITEMS)
    torch.testing.assert_close(vectors, embed(reference, ITEMS), atol=1e-5, rtol=0)
    assert (vectors * base).sum(-1).max() < 0.999  # the adapter changes the model


def test_a_pickled_adapter_in_the_transformers_4_key_layout_applies(
    tiny_mllms: dict[str, Path], qwen2vl_lora: tuple[Path, Any], tmp_path: Path
) -> None:
    """VLM2Vec's adapter_model.bin: a pickle (read as data only) with text-model keys at `model.layers.`."""
    folder, _ = qwen2vl_lora
    old = tmp_path / "vlm2vec"
    shutil.copytree(folder, old, ignore=shutil.ignore_patterns("*.safetensors"))
    weights = load_file(folder / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.model.language_model.layers.") for k in weights)
    torch.save({k.replace(".language_model.", ".", 1): v for k, v in weights.items()}, old / "adapter_model.bin")
    pickled = embed(mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl", adapter=str(old)), ITEMS)
    current = embed(mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl", adapter=str(folder)), ITEMS)
    torch.testing.assert_close(pickled, current, atol=0, rtol=0)


def test_an_adapter_for_another_model_is_refused(tiny_mllms: dict[str, Path], qwen2vl_lora: tuple[Path, Any], tmp_path: Path) -> None:
    folder, _ = qwen2vl_lora
    other = tmp_path / "other"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("*.safetensors"))
    weights = load_file(folder / "adapter_model.safetensors")
    torch.save({k.replace("layers.", "blocks.", 1): v for k, v in weights.items()}, other / "adapter_model.bin")
    with pytest.raises(ModelError, match=r"adapter weight\(s\) match no module of the base model"):
        mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl", adapter=str(other))
    with pytest.raises(ModelError, match="no adapter_config.json"):
        mllm(tiny_mllms["qwen2vl"], "vlm2vec-qwen2vl", adapter=str(tmp_path))


def edited_copy(src: Path, dst: Path, **changes: Any) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_a_model_that_needs_remote_code_is_refused(tiny_mllms: dict[str, Path], tmp_path: Path) -> None:
    folder = edited_copy(tiny_mllms["qwen2vl"], tmp_path / "gme-custom", model_type="gme_qwen2vl",
                         auto_map={"AutoModel": "modeling_gme.GmeQwen2VL"})
    with pytest.raises(ModelError, match=r"config.json: model_type 'gme_qwen2vl' needs the checkpoint's own Python code .*trust_remote_code stays off"):
        mllm(folder, "gme")


def test_an_unsupported_architecture_is_named(tiny_mllms: dict[str, Path], tmp_path: Path) -> None:
    folder = edited_copy(tiny_mllms["qwen2vl"], tmp_path / "idefics", model_type="idefics3")
    with pytest.raises(ModelError, match=r"model_type 'idefics3' is not a supported MLLM .*supported: llava, llava_next, qwen2_vl"):
        mllm(folder, "gme")
    with pytest.raises(ModelError, match="no such folder, and not a Hub repo id"):
        mllm(tmp_path / "missing", "gme")


def test_a_processor_of_other_weights_is_refused(tiny_mllms: dict[str, Path], tmp_path: Path) -> None:
    config = json.loads((tiny_mllms["llava_phi3"] / "config.json").read_text())
    folder = edited_copy(tiny_mllms["llava_phi3"], tmp_path / "mismatch", image_token_index=config["image_token_index"] - 1)
    with pytest.raises(ModelError, match=r"mismatch: processor and model disagree on the image token"):
        mllm(folder, "llava-phi3")


def test_an_image_token_count_the_model_does_not_expect_is_a_model_error(tiny_mllms: dict[str, Path]) -> None:
    model = mllm(tiny_mllms["llava_phi3"], "llava-phi3")
    model.processor.hf.patch_size = 28  # as if the processor belonged to a coarser vision tower
    batch = model.processor.collate([model.processor.process("A cat.", random_image(60, 60))])
    with pytest.raises(ModelError, match="processor and model disagree on image tokens"):
        model.encode(batch)


def test_image_token_budgets(tiny_mllms: dict[str, Path]) -> None:
    image = random_image(200, 120)
    with pytest.raises(DataError, match="an image takes 16 tokens, over model.options.max_image_tokens = 4"):
        mllm(tiny_mllms["llava_phi3"], "llava-phi3", max_image_tokens=4).processor.process(None, image)
    for budget in (2, 4, 16):
        qwen = mllm(tiny_mllms["qwen2vl"], "gme", max_image_tokens=budget)
        ids = qwen.processor.process(None, image)["input_ids"]
        assert 1 <= int((ids == qwen.processor.image_token_id).sum()) <= budget
    # LlavaNext keeps the anyres grids that fit: 14 tokens is the 28x56 grid only
    e5v = mllm(tiny_mllms["llava_next"], "e5v", max_image_tokens=14)
    assert e5v.backbone.config.image_grid_pinpoints == [[28, 56]]
    for size in ((200, 120), (60, 200), (30, 30)):
        ids = e5v.processor.process(None, random_image(*size))["input_ids"]
        assert int((ids == e5v.processor.image_token_id).sum()) <= 14
    embed(e5v, ITEMS)  # the model reads the same grids
    with pytest.raises(ConfigError, match="max_image_tokens = 10: even the smallest anyres grid"):
        mllm(tiny_mllms["llava_next"], "e5v", max_image_tokens=10)


def test_save_pretrained_round_trips_and_a_plain_hf_folder_is_a_checkpoint(tiny_mllms: dict[str, Path], tmp_path: Path) -> None:
    model = mllm(tiny_mllms["qwen2vl"], "gme", max_image_tokens=8)
    expected = embed(model, ITEMS)
    model.save_pretrained(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "model.json").read_text())
    assert meta["kwargs"]["prompt"] == "gme" and meta["kwargs"]["max_image_tokens"] == 8
    reloaded = load_model(tmp_path / "saved")
    assert reloaded.config["dtype"] == "fp32"
    torch.testing.assert_close(embed(reloaded, ITEMS), expected, atol=0, rtol=0)
    plain = load_model(tiny_mllms["llava_next"])  # no model.json: the defaults (e5v prompt, bf16)
    assert plain.config["prompt"] == "e5v" and plain.config["dtype"] == "bf16"
