"""Tiny random multimodal-LLM checkpoints built offline, for the `mllm` model tests.

Every builder writes a folder with `save_pretrained`, so a test reloads it through the real
`AutoProcessor` / `AutoConfig` / model-class `from_pretrained` path, exactly as a Hub checkpoint
would be. Weights are seeded (identical on every call), the models have ~200k parameters (< 1 MB)
and the tokenizers are byte-level BPEs trained here on prompt-like sentences, so nothing is
downloaded.

Variants: Llava + Phi-3 (xtuner/llava-phi-3-mini-hf), Llava + Llama-layout longrope Phi-3.5 (the
UniIR fork), LlavaNext + Llama-3 (E5-V), Qwen2-VL (GME), and the 2024-era quirks that real
checkpoints have: a processor without `patch_size`, old weight key names, the fork's model_type.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    LlavaProcessor,
    Phi3Config,
    Phi3Model,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from uniir_cli.models.mllm.tiny import train_tokenizer

# Prompt-like sentences (captions, E5-V / UniIR instructions, chat fragments), so the BPE merges
# are the words the tests actually tokenize.
_CORPUS = [
    "A dog runs across the green grass in the park.",
    "Two people ride bicycles down a busy city street.",
    "A plate of food with rice, vegetables and a piece of chicken.",
    "A small cat sleeping on a red sofa next to a window.",
    "A man holding an umbrella while walking in the rain.",
    "A group of children playing soccer on a sunny field.",
    "An airplane flying over the mountains at sunset.",
    "A kitchen with a white refrigerator and a wooden table.",
    "A woman is reading a book on a bench by the lake.",
    "A red train stopped at the station platform.",
    "A bowl of fresh fruit: apples, bananas and oranges.",
    "A surfer riding a large wave in the ocean.",
    "Summary above image in one word:",
    "Summary above sentence in one word:",
    "Summary above image in one word: ",
    "Summary above sentence in one word: ",
    "Retrieve an image that matches the caption.",
    "Retrieve a caption that describes the image.",
    "Retrieve a news image that matches the headline.",
    "Find an image that answers the question.",
    "Find a Wikipedia paragraph that answers the question about the image.",
    "Identify the product in the image and find a similar one.",
    "Retrieve a fashion image that matches the modification.",
    "Given the image, find the passage that describes it best.",
    "What is the color of the car in the picture?",
    "How many people are standing near the bus?",
    "What kind of animal is shown in this photo?",
    "Is there a clock on the wall of the room?",
    "Describe the image in detail.",
    "Represent the given image with the following question.",
    "Represent the given sentence for retrieving relevant images.",
    "You are a helpful assistant.",
    "The answer is a brown horse eating hay in a barn.",
    "Answer the question using a single word or phrase.",
    "user assistant system image text query candidate",
    "A photo of a bird sitting on a tree branch in winter.",
    "Three zebras standing together in a dry savanna.",
    "A laptop and a cup of coffee on a desk near the window.",
    "The quick brown fox jumps over the lazy dog.",
    "An old stone bridge over a quiet river in the village.",
]
_VOCAB_SIZE = 480  # BPE vocabulary before the special tokens (256 byte symbols + merges)

_PHI3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# Llama-3's own template, `| trim` included: it drops E5-V's trailing space, so E5-V prompts must be literal strings.
_LLAMA3_TEMPLATE = (
    "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_QWEN2VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class _TokenizerStyle:
    bos: str | None  # prepended by the post-processor when set
    eos: str
    pad: str
    extra: tuple[str, ...]
    chat_template: str


_STYLES = {
    "phi3": _TokenizerStyle(
        "<s>", "<|endoftext|>", "<pad>", ("<image>", "<|user|>", "<|end|>", "<|assistant|>", "<|system|>"), _PHI3_TEMPLATE
    ),
    "llama3": _TokenizerStyle(
        "<|begin_of_text|>", "<|eot_id|>", "<pad>", ("<|start_header_id|>", "<|end_header_id|>", "<image>"), _LLAMA3_TEMPLATE
    ),
    "qwen2vl": _TokenizerStyle(
        None,
        "<|endoftext|>",
        "<|endoftext|>",
        ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
        _QWEN2VL_TEMPLATE,
    ),
}

_TEXT_HIDDEN = 64
_TEXT_SIZES = {"hidden_size": _TEXT_HIDDEN, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
_HEAD_DIM = _TEXT_HIDDEN // _TEXT_SIZES["num_attention_heads"]
_VISION_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


@dataclass(frozen=True)
class MllmDims:
    """Model sizes: the tests' tiny default, and larger ones for `benchmarks/mllm_embedding.py`."""

    text: dict[str, int]
    vision: dict[str, int]
    tile: int  # CLIP input size; LlavaNext's anyres pinpoints are multiples of it

    @property
    def vision_tokens(self) -> int:
        return (self.tile // 14) ** 2


TINY = MllmDims(_TEXT_SIZES, _VISION_SIZES, 28)
# A small model for CPU speed measurements, and the real E5-V (Llama-3-8B + CLIP ViT-L/14-336)
# and LLaVA-Phi-3-mini (Phi-3-mini + CLIP ViT-L/14-336) sizes for the GPU checks (random weights).
SMALL = MllmDims({"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4, "num_attention_heads": 8},
                 {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}, 112)
_CLIP_L = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16}
E5V_DIMS = MllmDims({"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "vocab_size": 128_256}, _CLIP_L, 336)
PHI3_MINI_DIMS = MllmDims({"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
                           "vocab_size": 32_064},
                          _CLIP_L, 336)


def build_tokenizer(style: str) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE with the special tokens and chat template of `style`.

    "phi3", "llama3" or "qwen2vl": the special tokens are real special tokens (never split), BOS is
    prepended by a TemplateProcessing post-processor (not for Qwen2-VL) and padding is on the left.
    """
    spec = _STYLES[style]
    return train_tokenizer(_CORPUS, bos=spec.bos, eos=spec.eos, pad=spec.pad, extra=spec.extra,
                           chat_template=spec.chat_template, vocab_size=_VOCAB_SIZE)


def _spread_final_norm(norm: torch.nn.Module) -> None:
    """Scale the final RMSNorm weight by U[0.5, 2], so pooling before the norm gives a visibly different vector."""
    with torch.no_grad():
        norm.weight.mul_(torch.empty_like(norm.weight).uniform_(0.5, 2.0))


def _random_model(model_class: Any, config: Any) -> Any:
    """Seeded random weights; a model of billions of parameters is made in bf16 on the GPU
    (when there is one: `benchmarks/mllm_embedding.py --gpu`), a small one in fp32 on the CPU."""
    torch.manual_seed(0)
    big = config.get_text_config().hidden_size >= 1024
    device = "cuda" if big and torch.cuda.is_available() else "cpu"
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if big else torch.float32)
    try:
        with torch.device(device):
            model = model_class(config).eval()
    finally:
        torch.set_default_dtype(before)
    _spread_final_norm(model.model.language_model.norm)
    return model


def _text_config(kind: str, tokenizer: PreTrainedTokenizerFast, sizes: dict[str, int] = _TEXT_SIZES) -> Phi3Config | LlamaConfig:
    """Text model of xtuner's Phi-3-mini ("phi3"), the fork's Llama-layout Phi-3.5 ("llama_longrope") or E5-V's Llama-3."""
    sizes = dict(sizes)
    ids = {
        "vocab_size": sizes.pop("vocab_size", len(tokenizer)),  # a larger real vocabulary: rows no token uses
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if kind == "phi3":
        return Phi3Config(**sizes, **ids, max_position_embeddings=max(128, 4 * sizes["hidden_size"]))
    if kind == "llama_longrope":  # short factors up to 32 tokens, long factors above
        rope = {
            "rope_type": "longrope",
            "short_factor": [1.0 + 0.1 * i for i in range(_HEAD_DIM // 2)],
            "long_factor": [2.0 + 0.5 * i for i in range(_HEAD_DIM // 2)],
        }
        return LlamaConfig(
            **_TEXT_SIZES, **ids, rope_scaling=rope, original_max_position_embeddings=32, max_position_embeddings=128
        )
    if kind == "llama3":
        return LlamaConfig(**{"num_key_value_heads": 2, **sizes}, **ids, max_position_embeddings=max(128, 4 * sizes["hidden_size"]))
    raise ValueError(f"unknown text model kind {kind!r}")


def _clip_vision(image_size: int, sizes: dict[str, int] = _VISION_SIZES) -> CLIPVisionConfig:
    return CLIPVisionConfig(**sizes, image_size=image_size, patch_size=14)


def build_llava_phi3(out_dir: str | Path, *, text: str = "phi3", legacy_processor: bool = False, dims: MllmDims = TINY) -> Path:
    """Llava (CLIP 56 px -> 16 image tokens) over a Phi3 (`text="phi3"`) or longrope Llama (`"llama_longrope"`) text model.

    `legacy_processor=True` strips `patch_size`, `vision_feature_select_strategy` and
    `num_additional_image_tokens` from the saved processor, like a processor saved before ~v4.47.
    """
    out = Path(out_dir)
    tokenizer = build_tokenizer("phi3")
    tile = 2 * dims.tile if dims is TINY else dims.tile  # the tests' Llava sees 56 px (16 tokens)
    config = LlavaConfig(
        vision_config=_clip_vision(tile, dims.vision),
        text_config=_text_config(text, tokenizer, dims.text),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(tile // 14) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = _random_model(LlavaForConditionalGeneration, config)
    model.save_pretrained(out)
    del model
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out)
    if legacy_processor:
        # transformers 5.25 writes the processor fields and the nested image processor into this one file.
        path = out / "processor_config.json"
        saved = json.loads(path.read_text())
        for field in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
            del saved[field]
        path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return out


def build_llava_next(out_dir: str | Path, dims: MllmDims = TINY) -> Path:
    """LlavaNext (E5-V layout: anyres pinpoints 1x2, 2x1, 2x2, 3x1, 1x3 tiles; tiny: 28 px tiles,
    E5-V at 1/12 scale) over a Llama-3 style text model."""
    out = Path(out_dir)
    tokenizer = build_tokenizer("llama3")
    tile = dims.tile
    pinpoints = [[tile * h, tile * w] for h, w in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]
    config = LlavaNextConfig(
        vision_config=_clip_vision(tile, dims.vision),
        text_config=_text_config("llama3", tokenizer, dims.text),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        image_seq_length=dims.vision_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = _random_model(LlavaNextForConditionalGeneration, config)
    model.save_pretrained(out)
    del model
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints
    )
    LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    ).save_pretrained(out)
    return out


_QWEN2VL_IDS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


def build_qwen2vl(out_dir: str | Path) -> Path:
    """Qwen2-VL (GME layout) with M-RoPE `mrope_section=[2, 3, 3]` and 4 to 16 merged image tokens per image."""
    out = Path(out_dir)
    tokenizer = build_tokenizer("qwen2vl")
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _QWEN2VL_IDS.items()}
    text_config = {
        **_TEXT_SIZES,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 128,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision_config = {
        "depth": 2,
        "embed_dim": 32,
        "num_heads": 2,
        "mlp_ratio": 2,
        "hidden_size": _TEXT_HIDDEN,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config, **ids)
    model = _random_model(Qwen2VLForConditionalGeneration, config)
    model.save_pretrained(out)
    size = {"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 16}
    Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    ).save_pretrained(out)
    return out


# The top-level prefixes of a 2024 Llava / LlavaNext checkpoint (e.g. xtuner/llava-phi-3-mini-hf, royokong/e5-v).
_LEGACY_PREFIXES = (
    "language_model.model.",
    "language_model.lm_head.",
    "vision_tower.vision_model.",
    "multi_modal_projector.",
    "image_newline",
)


def save_legacy_key_layout(src_dir: str | Path, out_dir: str | Path) -> Path:
    """Re-save a Llava / LlavaNext folder with 2024-era weight names, to test that transformers 5 renames them on load.

    transformers 5.25 already writes `language_model.model.*`, `language_model.lm_head.*`,
    `multi_modal_projector.*` and `image_newline`, but drops CLIP's `vision_model.` level
    (`vision_tower.encoder.*`); the 2024 layout has `vision_tower.vision_model.encoder.*`.
    """
    src, out = Path(src_dir), Path(out_dir)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors"))
    legacy = {}
    for key, tensor in load_file(src / "model.safetensors").items():
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = "vision_tower.vision_model." + key.removeprefix("vision_tower.")
        assert key.startswith(_LEGACY_PREFIXES), f"unexpected key layout in {src}: {key}"
        legacy[key] = tensor
    save_file(legacy, out / "model.safetensors", metadata={"format": "pt"})
    return out


def save_fork_config(src_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy a `build_llava_phi3(text="llama_longrope")` folder under the UniIR fork's model_type and class name."""
    out = Path(out_dir)
    shutil.copytree(src_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["model_type"] = "fromage_llava_phi35"
    config["architectures"] = ["FromageLlavaPhi35ForConditionalGeneration"]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def build_all(root: str | Path) -> dict[str, Path]:
    """Build every variant in a subfolder of `root`; returns {name: folder}."""
    root = Path(root)
    folders = {
        "llava_phi3": build_llava_phi3(root / "llava_phi3"),
        "llava_longrope": build_llava_phi3(root / "llava_longrope", text="llama_longrope"),
        "llava_next": build_llava_next(root / "llava_next"),
        "qwen2vl": build_qwen2vl(root / "qwen2vl"),
        "llava_phi3_legacy_processor": build_llava_phi3(root / "llava_phi3_legacy_processor", legacy_processor=True),
    }
    folders["llava_next_legacy_keys"] = save_legacy_key_layout(folders["llava_next"], root / "llava_next_legacy_keys")
    folders["fork_phi35"] = save_fork_config(folders["llava_longrope"], root / "fork_phi35")
    return folders


def phi3_from_llama_longrope(llama_text_model: LlamaModel) -> Phi3Model:
    """The stock Phi3 text model with the weights of a Llama-layout longrope model (q/k/v and gate/up fused back).

    The UniIR fork's Phi-3.5 is such a Llama-layout conversion; a test checks that stock Llama with
    `rope_type="longrope"` equals Phi3 on it, below and above `original_max_position_embeddings`,
    so the fork's checkpoints need no custom class.
    """
    llama = llama_text_model.config
    rope = llama.rope_parameters
    config = Phi3Config(
        vocab_size=llama.vocab_size,
        hidden_size=llama.hidden_size,
        intermediate_size=llama.intermediate_size,
        num_hidden_layers=llama.num_hidden_layers,
        num_attention_heads=llama.num_attention_heads,
        num_key_value_heads=llama.num_key_value_heads,
        rms_norm_eps=llama.rms_norm_eps,
        max_position_embeddings=llama.max_position_embeddings,
        original_max_position_embeddings=rope["original_max_position_embeddings"],
        rope_parameters={k: rope[k] for k in ("rope_type", "rope_theta", "short_factor", "long_factor")},
        pad_token_id=llama.pad_token_id,
        bos_token_id=llama.bos_token_id,
        eos_token_id=llama.eos_token_id,
    )
    src = llama_text_model.state_dict()
    state = {}
    for key, tensor in src.items():
        if key.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.up_proj.weight")):
            continue
        if key.endswith("self_attn.q_proj.weight"):
            prefix = key.removesuffix("q_proj.weight")
            key, tensor = prefix + "qkv_proj.weight", torch.cat([src[prefix + p + "_proj.weight"] for p in "qkv"])
        elif key.endswith("mlp.gate_proj.weight"):
            prefix = key.removesuffix("gate_proj.weight")
            key, tensor = prefix + "gate_up_proj.weight", torch.cat([tensor, src[prefix + "up_proj.weight"]])
        state[key] = tensor
    phi3 = Phi3Model(config).to(llama_text_model.dtype)
    phi3.load_state_dict(state, strict=True)
    return phi3.eval()


def random_image(width: int, height: int, seed: int = 0) -> Any:
    """A deterministic RGB noise image (a PIL image) of the given size."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
