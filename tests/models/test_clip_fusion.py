"""CLIP-SF / CLIP-FF: embeddings equal an independent reference computation.

The reference is written here from the math of OpenAI's CLIP (`clip/model.py`), in plain
torch and float64, without open_clip or uniir: conv1 patchify, class and positional
embeddings, ln_pre, residual attention blocks (in_proj -> scaled dot-product attention ->
out_proj, QuickGELU MLP), ln_post on the class token @ proj; text: token + positional
embeddings, causal mask, blocks, ln_final, the state at the EOT token (argmax id) @
text_projection. It reads its weights straight from the upstream-format state dict (keys
`clip_model.*` with OpenAI's names, spec 6.2) and must use every one of them. Texts are
tokenised by the BPE of the `tokenizers` library (built from the merges file) plus
OpenAI's `truncate=True` rule written out here; images by a torchvision transform written
out by hand. CLIP-SF is fused as upstream does it: text and image features of *every* item
("" / zero image for missing parts) multiplied by 0/1 masks and summed. uniir loads the
same weights from the upstream .pth container.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
LONG_TEXT = " ".join(f"token{i} and, some! more words" for i in range(60))  # far beyond 77 tokens
SOT, EOT, CONTEXT = 49406, 49407, 77


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


# -- independent tokenizer: `tokenizers` BPE over OpenAI's merges + OpenAI's truncation ----
def _byte_symbols() -> list[str]:
    """OpenAI's 256 byte symbols in vocabulary order: the printable bytes as themselves,
    then the others as chr(256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = 256 - len(printable)
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(others)]


@functools.lru_cache(maxsize=1)
def _hf_bpe():
    """transformers' (Rust `tokenizers`) CLIP BPE with OpenAI's vocabulary: bytes, bytes +
    '</w>', one token per merge, then <|startoftext|> and <|endoftext|> (ids 49406, 49407)."""
    import gzip
    import importlib.resources

    from transformers import CLIPTokenizer

    merges_file = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"  # data, not code
    lines = gzip.decompress(merges_file.read_bytes()).decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)


def _reference_tokens(texts) -> torch.Tensor:
    """OpenAI `clip.tokenize(texts, truncate=True)`: SOT + BPE + EOT, cut to 77 with EOT
    forced last, zero padded."""
    rows = []
    for text in texts:
        ids = _hf_bpe()(text)["input_ids"]
        assert ids[0] == SOT and ids[-1] == EOT
        if len(ids) > CONTEXT:
            ids = ids[:CONTEXT]
            ids[-1] = EOT
        rows.append(ids + [0] * (CONTEXT - len(ids)))
    return torch.tensor(rows, dtype=torch.long)


# -- independent model: OpenAI CLIP's forward in plain torch, float64 ---------------------
class _OpenAIWeights:
    """The `clip_model.*` entries of an upstream state dict, in float64, recording which
    keys the reference reads (it must read all of them but logit_scale)."""

    def __init__(self, state_dict) -> None:
        prefix = "clip_model."
        self.tensors = {k[len(prefix):]: v.double() for k, v in state_dict.items() if k.startswith(prefix)}
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return self.tensors[key]

    def layers(self, prefix: str) -> int:
        return 1 + max(int(k[len(prefix):].split(".")[0]) for k in self.tensors if k.startswith(prefix))

    def unread(self) -> set[str]:
        return set(self.tensors) - self.read - {"logit_scale"}


def _layer_norm(w: _OpenAIWeights, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-5)


def _linear(w: _OpenAIWeights, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _attention(w: _OpenAIWeights, name: str, x: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    """Multi-head self-attention as nn.MultiheadAttention computes it (packed in_proj)."""
    n, length, width = x.shape
    qkv = x @ w[f"{name}.in_proj_weight"].T + w[f"{name}.in_proj_bias"]
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in qkv.split(width, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, width)
    return _linear(w, f"{name}.out_proj", out)


def _transformer(w: _OpenAIWeights, prefix: str, x: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    for i in range(w.layers(f"{prefix}.resblocks.")):
        block = f"{prefix}.resblocks.{i}"
        x = x + _attention(w, f"{block}.attn", _layer_norm(w, f"{block}.ln_1", x), heads, causal)
        h = _linear(w, f"{block}.mlp.c_fc", _layer_norm(w, f"{block}.ln_2", x))
        x = x + _linear(w, f"{block}.mlp.c_proj", h * torch.sigmoid(1.702 * h))  # QuickGELU
    return x


def _text_states(w: _OpenAIWeights, ids: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, 77, width] after ln_final."""
    x = w["token_embedding.weight"][ids] + w["positional_embedding"]
    return _layer_norm(w, "ln_final", _transformer(w, "transformer", x, heads, causal=True))


def _image_states(w: _OpenAIWeights, pixels: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, 1 + patches, width] after the vision transformer (before ln_post)."""
    conv = w["visual.conv1.weight"]
    patches = F.conv2d(pixels.double(), conv, stride=conv.shape[-1]).flatten(2).transpose(1, 2)
    cls = w["visual.class_embedding"].expand(len(pixels), 1, -1)
    x = torch.cat([cls, patches], dim=1) + w["visual.positional_embedding"]
    return _transformer(w, "visual.transformer", _layer_norm(w, "visual.ln_pre", x), heads, causal=False)


def _encode_text(w: _OpenAIWeights, ids: torch.Tensor, heads: int) -> torch.Tensor:
    states = _text_states(w, ids, heads)
    return states[torch.arange(len(ids)), ids.argmax(dim=-1)] @ w["text_projection"]


def _encode_image(w: _OpenAIWeights, pixels: torch.Tensor, heads: int) -> torch.Tensor:
    return _layer_norm(w, "visual.ln_post", _image_states(w, pixels, heads)[:, 0]) @ w["visual.proj"]


def _reference_inputs(items, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and pixels of every item, "" and the zero image for missing parts."""
    transform = _reference_transform(image_size)
    tokens = _reference_tokens([t if t is not None else "" for t, _ in items])
    zeros = torch.zeros(3, image_size, image_size)
    return tokens, torch.stack([transform(i) if i is not None else zeros for _, i in items])


def _reference_sf(state_dict, items, image_size: int, text_heads: int, vision_heads: int) -> torch.Tensor:
    """Upstream CLIP-SF: (encode_text * text mask + encode_image * image mask), float64."""
    w = _OpenAIWeights(state_dict)
    tokens, images = _reference_inputs(items, image_size)
    mask_t = torch.tensor([t is not None for t, _ in items], dtype=torch.float64)[:, None]
    mask_i = torch.tensor([i is not None for _, i in items], dtype=torch.float64)[:, None]
    with torch.no_grad():
        fused = _encode_text(w, tokens, text_heads) * mask_t + _encode_image(w, images, vision_heads) * mask_i
    assert w.unread() == set(), w.unread()  # every upstream weight took part
    return fused


TINY_VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def test_clip_sf_matches_plain_openai_clip_from_upstream_pth(upstream_sf, make_image):
    """Text-only, image-only, image+text and over-long texts, 1e-5 in fp32."""
    from uniir_cli.registry import load_model

    model = load_model(upstream_sf.path)
    assert model.registry_name == "clip_sf" and model.config["size"] == "tiny"
    items = _items(make_image)
    with torch.no_grad():
        ours = model.encode(model.processor(items))
    ref = _reference_sf(upstream_sf.state_dict, items, 32, text_heads=2, vision_heads=2)
    assert ours.dtype == torch.float32 and ours.shape == (len(items), 64)
    assert (ours.double() - ref).abs().max().item() <= 1e-5
    assert ref.abs().max().item() > 0.1  # a real signal, not near-zero vectors
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
    texts = [LONG_TEXT, "a short one", "Retrieve a Wikipedia paragraph that answers this question. Who built it?", ""]
    ids = tiny_sf.processor.tokenize(texts)
    assert len(_hf_bpe()(LONG_TEXT)["input_ids"]) > 200
    assert torch.equal(ids, _reference_tokens(texts))
    assert ids[0, -1].item() == EOT and ids[0, 1:-1].ne(EOT).all()  # cut, then EOT forced last
    short = _hf_bpe()("a short one")["input_ids"]
    assert ids[1].tolist() == short + [0] * (CONTEXT - len(short))
    assert ids[0].argmax().item() == 76 and ids[1].argmax().item() == len(short) - 1  # EOT pooled
    assert ids[3].tolist()[:3] == [SOT, EOT, 0]


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

    t5 = T5Stack(T5Config(vocab_size=2, d_model=64, d_kv=32, num_heads=2, d_ff=128, num_layers=2, use_cache=False))
    t5.load_state_dict(
        {k[len("t5_layers."):]: v for k, v in upstream_ff.state_dict.items() if k.startswith("t5_layers.")}
        | {"embed_tokens.weight": t5.embed_tokens.weight}, strict=True,
    )
    t5.eval()
    w = _OpenAIWeights(upstream_ff.state_dict)
    tokens, images = _reference_inputs(items, 32)
    with torch.no_grad():
        text_states = _text_states(w, tokens, heads=2)
        image_states = _layer_norm(w, "visual.ln_post", _image_states(w, images, heads=2)) @ w["visual.proj"]
        fused = torch.cat([text_states, image_states], dim=1)
        assert fused.shape == (len(items), 77 + 17, 64) and w.unread() == set()
        ref = t5(inputs_embeds=fused.float()).last_hidden_state.mean(dim=1)
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
def test_real_sizes_match_open_clip_and_plain_reference(size, arch, tmp_path, write_upstream, make_image):
    """Random-weight ViT-B-32 / ViT-L-14 built by open_clip's own factory, saved in the
    upstream container with `clip_model.` keys, loaded by uniir: the same embeddings as that
    model and as the plain OpenAI reference (heads = width / 64, as OpenAI's build_model)."""
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
    state_dict = {f"clip_model.{k}": v for k, v in reference.state_dict().items()}
    text_width, vision_width = state_dict["clip_model.ln_final.weight"].numel(), state_dict["clip_model.visual.ln_pre.weight"].numel()
    plain = _reference_sf(state_dict, items, 224, text_heads=text_width // 64, vision_heads=vision_width // 64)
    assert (ours.double() - plain).abs().max().item() <= 1e-5
