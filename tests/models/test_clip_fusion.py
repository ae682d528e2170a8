"""CLIP-SF / CLIP-FF: embeddings equal an independent reference computation.

The reference is built here without uniir: an open_clip `CLIP` from explicit configs with
the saved weights, `open_clip.tokenize`, and a torchvision transform written out by hand
(Resize bicubic shorter side, CenterCrop, RGB, ToTensor, OpenAI mean/std), fused as
upstream does it: text and image features of *every* item ("" / zero image for missing
parts) multiplied by 0/1 masks and summed. uniir loads the same weights from the upstream
.pth container.
"""

from __future__ import annotations

import pytest
import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
LONG_TEXT = " ".join(f"token{i} and, some! more words" for i in range(60))  # far beyond 77 tokens


def _items(make_image):
    return [
        ("a photo of a red bicycle", None),
        (None, make_image(1, (50, 40))),
        ("find the same shoe in white", make_image(2, (64, 31))),
        (LONG_TEXT, None),
        (LONG_TEXT, make_image(3, (33, 90), "RGBA")),
        (None, make_image(4, (40, 40), "L")),
        ("Retrieve a Wikipedia paragraph that answers this question. Who built it?", None),
    ]


def _reference_transform(size: int):
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        lambda image: image.convert("RGB"),
        T.ToTensor(),
        T.Normalize(OPENAI_MEAN, OPENAI_STD),
    ])


def _reference_clip(state_dict, vision, text, embed_dim, text_projection=True):
    import open_clip

    text = {**text, "proj_type": "linear" if text_projection else "none"}
    model = open_clip.model.CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)
    clip_sd = {k[len("clip_model."):]: v for k, v in state_dict.items() if k.startswith("clip_model.")}
    model.load_state_dict(clip_sd, strict=True)
    return model.eval()


def _reference_sf(state_dict, items, image_size, vision, text, embed_dim):
    import open_clip

    model = _reference_clip(state_dict, vision, text, embed_dim)
    transform = _reference_transform(image_size)
    tokens = open_clip.tokenize([t if t is not None else "" for t, _ in items])
    images = torch.stack([transform(i) if i is not None else torch.zeros(3, image_size, image_size) for _, i in items])
    mask_t = torch.tensor([t is not None for t, _ in items], dtype=torch.float32)[:, None]
    mask_i = torch.tensor([i is not None for _, i in items], dtype=torch.float32)[:, None]
    with torch.no_grad():
        return model.encode_text(tokens) * mask_t + model.encode_image(images) * mask_i


TINY_VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def test_clip_sf_matches_reference_from_upstream_pth(upstream_sf, make_image):
    from uniir_cli.registry import load_model

    model = load_model(upstream_sf.path)
    assert model.registry_name == "clip_sf" and model.config["size"] == "tiny"
    items = _items(make_image)
    with torch.no_grad():
        ours = model.encode(model.processor(items))
    ref = _reference_sf(upstream_sf.state_dict, items, 32, TINY_VISION, TINY_TEXT, 64)
    assert ours.dtype == torch.float32 and ours.shape == (len(items), 64)
    assert (ours - ref).abs().max().item() <= 1e-5
    # the parts really differ: text-only rows have no image term and vice versa
    assert not torch.allclose(ours[0], ours[1])


def test_clip_sf_absent_tower_is_not_run(tiny_sf, make_image, monkeypatch):
    calls = []
    real_text, real_image = tiny_sf.clip_model.encode_text, tiny_sf.clip_model.encode_image
    monkeypatch.setattr(tiny_sf.clip_model, "encode_text", lambda x: calls.append(("text", len(x))) or real_text(x))
    monkeypatch.setattr(tiny_sf.clip_model, "encode_image", lambda x: calls.append(("image", len(x))) or real_image(x))
    with torch.no_grad():
        tiny_sf.encode(tiny_sf.processor([("only text", None), ("more text", None)]))
        assert calls == [("text", 2)]
        calls.clear()
        tiny_sf.encode(tiny_sf.processor([(None, make_image(5, (20, 30))), ("", make_image(6, (30, 20)))]))
        assert calls == [("image", 2)]  # "" counts as no text, as upstream
        calls.clear()
        tiny_sf.encode(tiny_sf.processor([("t", None), (None, make_image(7, (9, 9))), ("t2", make_image(8, (9, 9)))]))
        assert calls == [("text", 2), ("image", 2)]


def test_training_batch_without_images_still_touches_every_parameter(make_image):
    """DDP needs every parameter in the graph: a text-only batch gives the image tower zero
    gradients instead of none (and the embedding is unchanged)."""
    from uniir_cli.registry import build_model

    torch.manual_seed(0)
    model = build_model("clip_sf", size="tiny", pretrained="").train()
    for items in ([("just text", None), ("more", None)], [(None, make_image(1, (40, 40)))]):
        model.zero_grad(set_to_none=True)
        batch = model.processor(items)
        emb = model.encode(batch)
        with torch.no_grad():
            assert torch.allclose(emb, model.eval().encode(batch), atol=1e-5)  # eval may use MHA fast path
        model.train()
        (emb.sum() + model.logit_scale).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_tokenizer_truncates_with_eot_like_openai(tiny_sf):
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    sot, eot = bpe.sot_token_id, bpe.eot_token_id
    assert (sot, eot) == (49406, 49407)
    ids = tiny_sf.processor.tokenize([LONG_TEXT, "a short one"])
    expected_long = ([sot] + bpe.encode(LONG_TEXT) + [eot])[:77]
    expected_long[-1] = eot  # OpenAI clip.tokenize(truncate=True): cut, then force EOT last
    assert len(bpe.encode(LONG_TEXT)) > 200
    assert ids[0].tolist() == expected_long
    short = [sot] + bpe.encode("a short one") + [eot]
    assert ids[1].tolist() == short + [0] * (77 - len(short))
    assert ids[0].argmax().item() == 76 and ids[1].argmax().item() == len(short) - 1  # EOT pooled


def test_preprocessing_is_the_openai_transform(tiny_sf, make_image):
    image = make_image(9, (77, 41), "RGBA")
    ours = tiny_sf.processor.transform(image)
    assert torch.equal(ours, _reference_transform(32)(image))


def test_processor_pickles_without_tokenizer_and_rebuilds(tiny_sf):
    import pickle

    proc = tiny_sf.processor
    proc.tokenize(["warm the cache"])
    clone = pickle.loads(pickle.dumps(proc))
    assert clone._tokenizer is None and clone._transform is None
    assert torch.equal(clone.tokenize(["x y"]), proc.tokenize(["x y"]))


class _RawItems(torch.utils.data.Dataset):
    """What the data layer does: load (text, image) and run the processor in the worker."""

    def __init__(self, items, processor):
        self.items, self.processor = items, processor

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.processor.process(*self.items[index])


@pytest.mark.parametrize("fixture", ["tiny_sf", "tiny_ff"])
def test_processor_runs_in_dataloader_workers(fixture, request, make_image):
    model = request.getfixturevalue(fixture)
    items = _items(make_image)
    loader = torch.utils.data.DataLoader(
        _RawItems(items, model.processor), batch_size=4, num_workers=2, collate_fn=model.processor.collate
    )
    with torch.no_grad():
        from_workers = torch.cat([model.encode(batch) for batch in loader])
        direct = model.encode(model.processor(items))
    assert torch.allclose(from_workers, direct, atol=1e-6)


def test_item_without_text_or_image_is_a_data_error(tiny_sf):
    from uniir_cli.errors import DataError

    with pytest.raises(DataError, match="neither text nor image"):
        tiny_sf.processor([(None, None)])


def test_fp16_stored_embeddings_keep_cosine(upstream_sf, make_image):
    from uniir_cli.registry import load_model

    model = load_model(upstream_sf.path)
    with torch.no_grad():
        emb = model.encode(model.processor(_items(make_image)))
    stored = torch.from_numpy(emb.numpy().astype("float16")).float()
    assert torch.nn.functional.cosine_similarity(emb, stored, dim=-1).min().item() >= 0.9999
    # and at the released dimension with un-normalised, CLIP-like magnitudes
    big = torch.randn(256, 768, generator=torch.Generator().manual_seed(0)) * 3.0
    cos = torch.nn.functional.cosine_similarity(big, big.half().float(), dim=-1)
    assert cos.min().item() >= 0.9999


def test_clip_ff_matches_reference(upstream_ff, make_image):
    """FF: [77 text states ; ln_post+proj on all 17 image tokens] -> T5 -> mean over 94
    positions; "" and the zero image stand in for missing parts, no masks."""
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Stack

    from uniir_cli.registry import load_model

    model = load_model(upstream_ff.path)
    assert model.registry_name == "clip_ff"
    assert not any("text_projection" in k for k in model.state_dict())
    items = _items(make_image)
    with torch.no_grad():
        ours = model.encode(model.processor(items))

    import open_clip

    clip = _reference_clip(upstream_ff.state_dict, TINY_VISION, TINY_TEXT, 64, text_projection=False)
    t5 = T5Stack(T5Config(vocab_size=2, d_model=64, d_kv=32, num_heads=2, d_ff=128, num_layers=2, use_cache=False))
    t5.load_state_dict(
        {k[len("t5_layers."):]: v for k, v in upstream_ff.state_dict.items() if k.startswith("t5_layers.")}
        | {"embed_tokens.weight": t5.embed_tokens.weight}, strict=True,
    )
    t5.eval()
    transform = _reference_transform(32)
    tokens = open_clip.tokenize([t if t is not None else "" for t, _ in items])
    images = torch.stack([transform(i) if i is not None else torch.zeros(3, 32, 32) for _, i in items])
    with torch.no_grad():
        x = clip.token_embedding(tokens) + clip.positional_embedding
        text_states = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        v = clip.visual
        patches = v.conv1(images).flatten(2).transpose(1, 2)
        cls = v.class_embedding.expand(len(items), 1, -1)
        h = v.ln_pre(torch.cat([cls, patches], dim=1) + v.positional_embedding)
        image_states = v.ln_post(v.transformer(h)) @ v.proj
        fused = torch.cat([text_states, image_states], dim=1)
        assert fused.shape == (len(items), 77 + 17, 64)
        ref = t5(inputs_embeds=fused).last_hidden_state.mean(dim=1)
    assert (ours - ref).abs().max().item() <= 1e-5


def test_sizes_match_open_clip_builtin_configs():
    import open_clip

    from uniir_cli.models.clip_fusion import SIZES

    for size, arch in (("base", "ViT-B-32-quickgelu"), ("large", "ViT-L-14-quickgelu")):
        cfg = open_clip.get_model_config(arch)
        spec = SIZES[size]
        assert cfg["quick_gelu"] is True and cfg["embed_dim"] == spec.embed_dim
        assert cfg["vision_cfg"] == spec.vision and cfg["text_cfg"] == spec.text
    assert SIZES["large"].image_tokens == 257 and SIZES["base"].image_tokens == 50


@pytest.mark.parametrize("size, d_model", [("base", 512), ("large", 768)])
def test_ff_t5_stack_is_upstreams(size, d_model):
    """2 layers, 12 heads x 64 (also for base: attention width 768 != d_model 512), relu FFN
    2048, no token embedding; parameter names as upstream's `t5_layers.*`."""
    from uniir_cli.models.clip_fusion import SIZES, build_t5_stack

    stack = build_t5_stack(SIZES[size])
    shapes = {k: tuple(v.shape) for k, v in stack.state_dict().items()}
    assert shapes["block.0.layer.0.SelfAttention.q.weight"] == (768, d_model)
    assert shapes["block.0.layer.0.SelfAttention.relative_attention_bias.weight"] == (32, 12)
    assert shapes["block.1.layer.1.DenseReluDense.wi.weight"] == (2048, d_model)
    assert "final_layer_norm.weight" in shapes and not any(k.startswith("embed_tokens") for k in shapes)
    assert len([k for k in shapes if k.startswith("block.")]) == 2 * 8 + 1  # q k v o ln, wi wo ln; 1 rel. bias
    assert stack.config.feed_forward_proj == "relu" and stack.config.dropout_rate == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("size, arch", [("base", "ViT-B-32-quickgelu"), ("large", "ViT-L-14-quickgelu")])
def test_real_sizes_match_open_clip_reference(size, arch, tmp_path, write_upstream, make_image):
    """Random-weight ViT-B-32 / ViT-L-14 built by open_clip's own factory, saved in the
    upstream container with `clip_model.` keys, loaded by uniir: same embeddings."""
    import open_clip

    from uniir_cli.registry import load_model

    torch.manual_seed(0)
    reference = open_clip.create_model(arch, pretrained=None).eval()
    holder = torch.nn.Module()
    holder.clip_model = reference
    path = write_upstream(tmp_path / f"clip_sf_{size}.pth", holder)
    model = load_model(path)
    assert model.config["size"] == size
    items = [("a dog", None), (None, make_image(1, (300, 200))), (LONG_TEXT, make_image(2, (224, 500)))]
    transform = open_clip.image_transform(224, is_train=False)
    with torch.no_grad():
        ours = model.encode(model.processor(items))
        ref = torch.stack([
            reference.encode_text(open_clip.tokenize(["a dog"]))[0],
            reference.encode_image(transform(items[1][1])[None])[0],
            reference.encode_text(open_clip.tokenize([LONG_TEXT]))[0] + reference.encode_image(transform(items[2][1])[None])[0],
        ])
    assert (ours - ref).abs().max().item() <= 1e-5
