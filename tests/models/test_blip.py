"""BLIP-FF / BLIP-SF: upstream-layout loading, an independent oracle, processor, convert.

The oracle is transformers' BLIP (BlipVisionModel, BlipTextModel with cross-attention)
at tiny size, fed the same random weights through a key conversion; its known traps are
avoided on purpose: vision LayerNorm eps 1e-6, explicit head counts, `last_hidden_state`
(its vision `pooler_output` applies the final norm a second time), `is_decoder=True` in
the config (cross-attention layers exist) but a bidirectional forward.
"""

from __future__ import annotations

import types

import pytest
import torch
from typer.testing import CliRunner

from uniir_cli.errors import ModelError
from uniir_cli.models.blip.model import SIZES, TRAINING_STATE_BUFFERS
from uniir_cli.registry import build_model, load_model

TOL = 1e-5


def _perturbed(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, size="tiny", vocab="tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.temp.fill_(0.05)
    return model.eval()


@pytest.fixture(scope="module")
def upstream_blip(tmp_path_factory: pytest.TempPathFactory, write_upstream) -> types.SimpleNamespace:
    """Tiny BLIP-FF and BLIP-SF with perturbed weights, saved in the released container."""
    out = {}
    for i, name in enumerate(("blip_ff", "blip_sf")):
        model = _perturbed(name, 10 + i)
        with torch.no_grad():  # non-trivial queues, as after training
            model.idx_queue.copy_(torch.arange(model.idx_queue.numel()).view(1, -1))
            model.new_ptr_queue.fill_(16)
        path = write_upstream(tmp_path_factory.mktemp(name) / f"{name}_tiny.pth", model)
        out[name] = types.SimpleNamespace(path=path, state_dict={k: v.clone() for k, v in model.state_dict().items()})
    return types.SimpleNamespace(**out)


@pytest.fixture(scope="module")
def batch_items(make_image) -> list:
    return [
        ("a small red circle on the left", None),
        (None, make_image(1, (40, 30))),
        ("which shape is shown here?", make_image(2, (32, 32))),
        ("find the photo", make_image(3, (50, 64), "L")),
    ]


# -- the oracle ------------------------------------------------------------------------
def _sub(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def oracle_vision(sd: dict) -> torch.nn.Module:
    from transformers import BlipVisionConfig, BlipVisionModel

    spec = SIZES["tiny"]
    vit = _sub(sd, "visual_encoder.")
    cfg = BlipVisionConfig(
        hidden_size=spec.vision_width, intermediate_size=4 * spec.vision_width, num_hidden_layers=spec.depth,
        num_attention_heads=spec.heads, image_size=spec.image_size, patch_size=spec.patch_size, layer_norm_eps=1e-6,
    )
    model = BlipVisionModel(cfg)
    conv = {
        "embeddings.class_embedding": vit["cls_token"], "embeddings.position_embedding": vit["pos_embed"],
        "embeddings.patch_embedding.weight": vit["patch_embed.proj.weight"],
        "embeddings.patch_embedding.bias": vit["patch_embed.proj.bias"],
        "post_layernorm.weight": vit["norm.weight"], "post_layernorm.bias": vit["norm.bias"],
    }
    names = {"attn.qkv": "self_attn.qkv", "attn.proj": "self_attn.projection", "norm1": "layer_norm1",
             "norm2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(spec.depth):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                conv[f"encoder.layers.{i}.{theirs}.{kind}"] = vit[f"blocks.{i}.{ours}.{kind}"]
    model.load_state_dict(conv, strict=True)
    return model.eval()


def oracle_text(sd: dict, pooler: bool) -> torch.nn.Module:
    from transformers import BlipTextConfig, BlipTextModel

    spec = SIZES["tiny"]
    t = spec.text
    cfg = BlipTextConfig(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, encoder_hidden_size=spec.vision_width,
        intermediate_size=t.intermediate_size, num_attention_heads=t.heads, num_hidden_layers=t.layers,
        max_position_embeddings=t.max_positions, layer_norm_eps=1e-12, is_decoder=True,
    )
    model = BlipTextModel(cfg, add_pooling_layer=pooler)
    text = {k: v for k, v in _sub(sd, "text_encoder.").items() if k != "embeddings.position_ids"}
    model.load_state_dict(text, strict=True)
    return model.eval()


def _inputs(model, items):
    batch = model.processor(items)
    return batch, batch.tensors


def test_blip_ff_embedding_equals_the_transformers_oracle(upstream_blip, batch_items):
    sd = upstream_blip.blip_ff.state_dict
    ours = load_model(upstream_blip.blip_ff.path)
    batch, t = _inputs(ours, batch_items)
    with torch.no_grad():
        got = ours.encode(batch)
        image = oracle_vision(sd)(pixel_values=t["pixel_values"]).last_hidden_state
        want = oracle_text(sd, pooler=True)(
            input_ids=t["input_ids"], attention_mask=t["attention_mask"], encoder_hidden_states=image,
            encoder_attention_mask=torch.ones(image.shape[:2], dtype=torch.long), is_decoder=False,
        ).pooler_output
    diff = (got - want).abs().max().item()
    assert got.shape == (4, 64) and diff <= TOL, diff


def test_blip_sf_projections_and_sum_equal_the_oracle(upstream_blip, batch_items):
    sd = upstream_blip.blip_sf.state_dict
    ours = load_model(upstream_blip.blip_sf.path)
    batch, t = _inputs(ours, batch_items)
    with torch.no_grad():
        got = ours.encode(batch)
        image_cls = oracle_vision(sd)(pixel_values=t["pixel_values"]).last_hidden_state[:, 0]
        image = image_cls @ sd["vision_proj.weight"].t() + sd["vision_proj.bias"]
        hidden = oracle_text(sd, pooler=False)(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
        text = hidden[:, 0] @ sd["text_proj.weight"].t() + sd["text_proj.bias"]
        ours_image = ours.vision_proj(ours.visual_encoder(t["pixel_values"])[:, 0])
        ours_text = ours.text_proj(ours.text_encoder(t["input_ids"], t["attention_mask"], mode="text")[0][:, 0])
    assert (ours_image - image).abs().max().item() <= TOL
    assert (ours_text - text).abs().max().item() <= TOL
    want = text * batch.has_text[:, None] + image * batch.has_image[:, None]
    assert (got - want).abs().max().item() <= TOL
    assert torch.equal(got[0], ours_text[0]) and torch.equal(got[1], ours_image[1])  # masked: exact


def test_sdpa_matches_eager(upstream_blip, batch_items):
    model = load_model(upstream_blip.blip_ff.path)
    batch = model.processor(batch_items)
    with torch.no_grad():
        eager = model.encode(batch)
        model.set_sdpa(True)
        sdpa = model.encode(batch)
    assert (eager - sdpa).abs().max().item() <= 2e-6


# -- loading ---------------------------------------------------------------------------
def test_released_container_loads_without_training_state_by_default(upstream_blip):
    from uniir_cli.models.checkpoint_io import _refused_globals

    assert _refused_globals(upstream_blip.blip_ff.path) == []  # LongStorage (int64 queues) is fine
    model = load_model(upstream_blip.blip_ff.path)
    keys = set(model.state_dict())
    assert model.registry_name == "blip_ff" and model.config["size"] == "tiny" and not model.training_state
    assert not any("_m." in k for k in keys) and not keys & set(TRAINING_STATE_BUFFERS)
    expected = {k for k in upstream_blip.blip_ff.state_dict if "_m." not in k and k not in TRAINING_STATE_BUFFERS}
    assert keys == expected
    for key in expected:
        assert torch.equal(model.state_dict()[key], upstream_blip.blip_ff.state_dict[key]), key


def test_keep_training_state_keeps_momentum_encoders_and_queues(upstream_blip):
    model = load_model(upstream_blip.blip_sf.path, keep_training_state=True)
    sd = model.state_dict()
    assert set(sd) == set(upstream_blip.blip_sf.state_dict)
    assert model.config["embed_dim"] == 768 and model.config["queue_size"] == 64
    assert torch.equal(sd["idx_queue"], upstream_blip.blip_sf.state_dict["idx_queue"]) and int(sd["new_ptr_queue"]) == 16
    assert torch.equal(sd["text_encoder_m.pooler.dense.weight"] if "text_encoder_m.pooler.dense.weight" in sd
                       else sd["vision_proj_m.weight"], upstream_blip.blip_sf.state_dict["vision_proj_m.weight"])


def test_strict_loading_names_missing_and_mismatched_keys(upstream_blip):
    model = build_model("blip_ff", size="tiny", vocab="tiny", training_state=False)
    sd = {k: v for k, v in upstream_blip.blip_ff.state_dict.items() if k != "text_encoder.pooler.dense.bias"}
    with pytest.raises(ModelError, match="missing keys: text_encoder.pooler.dense.bias"):
        model.load_upstream_state_dict(sd, "x.pth")
    sd = dict(upstream_blip.blip_ff.state_dict)
    sd["visual_encoder.pos_embed"] = torch.zeros(1, 5, 96)
    with pytest.raises(ModelError, match=r"visual_encoder.pos_embed \(1, 5, 96\) vs \(1, 17, 96\)"):
        model.load_upstream_state_dict(sd, "x.pth")


def test_identify_rejects_unknown_sizes():
    from uniir_cli.registry import identify_upstream

    with pytest.raises(ModelError, match="matches none of the sizes"):
        identify_upstream({"visual_encoder.patch_embed.proj.weight": torch.zeros(7, 3, 16, 16)}, "b.pth")


def test_convert_cli_writes_a_folder_that_encodes_the_same(upstream_blip, batch_items, tmp_path):
    from uniir_cli.app import build_app

    out = tmp_path / "converted"
    result = CliRunner().invoke(build_app(), ["convert", str(upstream_blip.blip_ff.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folder, pth = load_model(out), load_model(upstream_blip.blip_ff.path)
    with torch.no_grad():
        assert torch.equal(folder.encode(folder.processor(batch_items)), pth.encode(pth.processor(batch_items)))
    full = tmp_path / "full"
    result = CliRunner().invoke(build_app(), ["convert", str(upstream_blip.blip_ff.path), "--out", str(full), "--keep-training-state"])
    assert result.exit_code == 0, result.output
    assert "cand_queue" in load_model(full).state_dict()


def test_training_without_training_state_is_a_clear_error(upstream_blip, batch_items):
    model = load_model(upstream_blip.blip_ff.path).train()
    batch = model.processor(batch_items)
    batch.tensors["did"] = torch.arange(4)
    with pytest.raises(ModelError, match="--keep-training-state"):
        model(batch, batch)


# -- processor -------------------------------------------------------------------------
def test_processor_pads_to_100_and_fills_missing_modalities(make_image):
    model = build_model("blip_ff", size="tiny", vocab="tiny").eval()
    batch = model.processor([("Red circle", None), (None, make_image(0, (20, 10)))])
    t = batch.tensors
    tok = model.processor.tokenizer
    assert t["input_ids"].shape == (2, 100) and t["attention_mask"].shape == (2, 100)
    assert tok.convert_ids_to_tokens(t["input_ids"][0, :4].tolist()) == ["[CLS]", "red", "circle", "[SEP]"]
    assert t["input_ids"][1, :2].tolist() == [tok.cls_token_id, tok.sep_token_id] and int(t["attention_mask"][1].sum()) == 2
    assert t["pixel_values"].shape == (2, 3, 32, 32) and not t["pixel_values"][0].any()
    assert batch.has_text.tolist() == [True, False] and batch.has_image.tolist() == [False, True]


def test_bert_vocabulary_gives_dec_enc_30522_30523(tmp_path):
    from uniir_cli.models.blip.processor import build_tokenizer

    words = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [f"w{i}" for i in range(30522 - len(words))]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    tok = build_tokenizer(str(vocab))
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [30522, 30523] and tok.bos_token == "[DEC]"
    short = tmp_path / "short.txt"
    short.write_text("\n".join(words[:500]) + "\n")
    with pytest.raises(ModelError, match="expected 30522/30523"):
        build_tokenizer(str(short))


def test_missing_vocabulary_is_a_clear_error():
    from uniir_cli.models.blip.processor import find_vocab

    with pytest.raises(ModelError, match="vocab.txt"):
        find_vocab("/nonexistent/vocab.txt")


def test_train_transform_augments_and_eval_does_not(make_image):
    import random

    from uniir_cli.models.blip.augment import OPS, RandomAugment, apply_op

    model = build_model("blip_ff", size="tiny", vocab="tiny")
    image = make_image(5, (48, 40))
    model.eval()
    assert torch.equal(model.processor.process(None, image)["pixel_values"], model.processor.process(None, image)["pixel_values"])
    model.train()
    random.seed(0)
    torch.manual_seed(0)
    a, b = (model.processor.process(None, image)["pixel_values"] for _ in range(2))
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)
    for op in OPS:  # every op keeps size and mode
        out = apply_op(image, op, 5.0, random.Random(0))
        assert out.size == image.size and out.mode == image.mode
    assert RandomAugment(2, 5)(image).size == image.size


def test_blip_pretrained_init_loads_matching_keys_and_skips_other_shapes(tmp_path):
    """BLIP's model_*.pth as upstream loads it: non-strict, shape mismatches (256-d
    projections) dropped, then the momentum copies start equal to the online weights."""
    source = build_model("blip_sf", size="tiny", training_state=False).state_dict()
    source = {k: v + 0.5 for k, v in source.items() if k.startswith(("visual_encoder.", "text_encoder."))}
    source["vision_proj.weight"] = torch.zeros(256, 96)
    source["itm_head.weight"] = torch.zeros(2, 64)
    path = tmp_path / "model_tiny.pth"
    torch.save({"model": source}, path)
    model = build_model("blip_sf", size="tiny", pretrained=str(path))
    sd = model.state_dict()
    assert torch.equal(sd["visual_encoder.pos_embed"], source["visual_encoder.pos_embed"])
    assert torch.equal(sd["text_encoder_m.encoder.layer.0.attention.self.query.weight"],
                       source["text_encoder.encoder.layer.0.attention.self.query.weight"])
    assert sd["vision_proj.weight"].shape == (768, 96)
    with pytest.raises(Exception, match="no such file"):
        build_model("blip_sf", size="tiny", pretrained=str(tmp_path / "missing.pth"))


def test_blip_pretrained_keeps_its_momentum_copies_and_resizes_position_embeddings(tmp_path):
    """A file with `*_m` keys keeps them (upstream loads them after copy_params); a 6x6
    patch grid (another resolution) is resized bicubically to the model's 4x4."""
    from uniir_cli.models.blip.vit import resize_pos_embed

    source = build_model("blip_ff", size="tiny").state_dict()
    source = {k: v - 0.25 if "_m." in k else v for k, v in source.items() if k.startswith(("visual_encoder", "text_encoder"))}
    wide = torch.randn(1, 37, 96)
    source["visual_encoder.pos_embed"] = source["visual_encoder_m.pos_embed"] = wide
    path = tmp_path / "model_tiny.pth"
    torch.save({"model": source}, path)
    sd = build_model("blip_ff", size="tiny", pretrained=str(path)).state_dict()
    key = "text_encoder_m.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(sd[key], source[key]) and not torch.equal(sd[key], sd[key.replace("_m.", ".")])
    expected = torch.nn.functional.interpolate(
        wide[:, 1:].reshape(1, 6, 6, 96).permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False,
    ).permute(0, 2, 3, 1).reshape(1, 16, 96)
    assert torch.equal(sd["visual_encoder.pos_embed"][:, 0], wide[:, 0])
    assert torch.allclose(sd["visual_encoder.pos_embed"][:, 1:], expected) and torch.equal(sd["visual_encoder_m.pos_embed"], sd["visual_encoder.pos_embed"])
    assert resize_pos_embed(wide, 36) is wide
    with pytest.raises(ValueError, match="square grid"):
        resize_pos_embed(torch.zeros(1, 20, 8), 16)


def test_optimizer_uses_upstream_blip_single_group():
    from uniir_cli.config import Config
    from uniir_cli.training.loop import make_optimizer

    model = build_model("blip_sf", size="tiny")
    config = Config()
    config.train.weight_decay, config.train.lr = 0.05, 1e-5
    groups = make_optimizer(model, config).param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.05
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(groups[0]["params"]) == len(trainable)
    assert not any(p is q for p in groups[0]["params"] for q in model.visual_encoder_m.parameters())


def test_large_layout_matches_the_released_keys_and_shapes():
    """Spec 6.4, built on the meta device (no memory): names and shapes of blip_ff_large.pth."""
    with torch.device("meta"):
        sd = build_model("blip_ff", size="large").state_dict()
    shapes = {
        "visual_encoder.cls_token": (1, 1, 1024), "visual_encoder.pos_embed": (1, 197, 1024),
        "visual_encoder.patch_embed.proj.weight": (1024, 3, 16, 16), "visual_encoder.blocks.23.attn.qkv.weight": (3072, 1024),
        "visual_encoder.norm.weight": (1024,), "text_encoder.embeddings.word_embeddings.weight": (30524, 768),
        "text_encoder.embeddings.position_embeddings.weight": (512, 768), "text_encoder.embeddings.position_ids": (1, 512),
        "text_encoder.encoder.layer.11.crossattention.self.query.weight": (768, 768),
        "text_encoder.encoder.layer.11.crossattention.self.key.weight": (768, 1024),
        "text_encoder.encoder.layer.11.crossattention.self.value.weight": (768, 1024),
        "text_encoder.encoder.layer.0.intermediate.dense.weight": (3072, 768), "text_encoder.pooler.dense.weight": (768, 768),
        "visual_encoder_m.blocks.23.mlp.fc2.weight": (1024, 4096), "text_encoder_m.pooler.dense.bias": (768,),
        "query_queue": (768, 57960), "cand_queue": (768, 57960), "idx_queue": (1, 57960), "new_ptr_queue": (1,), "temp": (),
    }
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert sd["idx_queue"].dtype == torch.int64 and sd["text_encoder.embeddings.position_ids"].dtype == torch.int64
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == {"visual_encoder", "text_encoder", "visual_encoder_m", "text_encoder_m", *TRAINING_STATE_BUFFERS, "temp"}
    assert not any(".head." in k or "token_type" in k for k in sd)
    assert sum(1 for k in sd if k.startswith("visual_encoder.blocks.") and k.endswith("norm1.weight")) == 24
    assert sum(1 for k in sd if k.startswith("text_encoder.encoder.layer.") and k.endswith("crossattention.output.dense.weight")) == 12


def test_download_checkpoint_blip_from_the_hub_cache_converts(upstream_blip, tmp_path, monkeypatch):
    """`uniir download checkpoint blip-ff-large` converts too (a tiny file in its place here)."""
    from huggingface_hub import constants

    from uniir_cli.download import checkpoint as ckpt

    commit = "0" * 40
    base = tmp_path / "hub" / "models--TIGER-Lab--UniIR"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    target = base / "snapshots" / commit / "checkpoint/BLIP_FF/blip_ff_large.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(upstream_blip.blip_ff.path.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    report = ckpt.download_checkpoint("blip-ff-large", out_dir=tmp_path / "out", check_disk=False)
    assert report.converted_now and load_model(report.checkpoint_dir).registry_name == "blip_ff"
