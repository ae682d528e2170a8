"""CLIP score fusion (CLIP-SF) and feature fusion (CLIP-FF) on open_clip (spec 5.1-5.3, 6.3).

Both wrap an open_clip `CLIP` with OpenAI's architecture and QuickGELU under the attribute
`clip_model`, so the released UniIR state dicts (keys `clip_model.*`, plus `t5_layers.*` for
CLIP-FF) load 1:1 and strictly.

* CLIP-SF: embedding = encode_text(text) + encode_image(image), projected and NOT
  normalised; a missing modality contributes exactly zero and its tower is not run.
* CLIP-FF: the 77 text token states after ln_final (no text projection; the model has none)
  and all image tokens after ln_post and `proj`, concatenated, pass a 2-layer T5 encoder
  stack; the embedding is the mean over all positions. No masks: a missing text is the
  tokens of "", a missing image the zero tensor (after normalisation), as upstream.

Sizes: `base` = ViT-B-32 (512-d), `large` = ViT-L-14 (768-d), `tiny` = a random-init toy
(64-d, 32 px) for tests and the demo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models.base import EncoderBatch, Processor, Retriever, has_content
from uniir_cli.registry import register_model, register_upstream

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSize:
    name: str
    arch: Optional[str]  # open_clip architecture whose pretrained tags apply (None: no weights)
    embed_dim: int
    vision: dict[str, Any] = field(default_factory=dict)  # open_clip CLIPVisionCfg fields
    text: dict[str, Any] = field(default_factory=dict)  # open_clip CLIPTextCfg fields
    # CLIP-FF's T5 stack: upstream uses 12 heads of 64 for both sizes (so base's attention
    # width, 768, differs from its d_model, 512) and T5Config's default d_ff.
    t5_heads: int = 12
    t5_d_kv: int = 64
    t5_d_ff: int = 2048

    @property
    def image_size(self) -> int:
        return int(self.vision["image_size"])

    @property
    def image_tokens(self) -> int:
        return (self.image_size // int(self.vision["patch_size"])) ** 2 + 1


_TEXT = {"context_length": 77, "vocab_size": 49408}
SIZES: dict[str, ClipSize] = {
    "tiny": ClipSize(
        "tiny", None, 64,
        vision={"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        text={**_TEXT, "width": 64, "heads": 2, "layers": 2},
        t5_heads=2, t5_d_kv=32, t5_d_ff=128,
    ),
    "base": ClipSize(
        "base", "ViT-B-32", 512,
        vision={"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        text={**_TEXT, "width": 512, "heads": 8, "layers": 12},
    ),
    "large": ClipSize(
        "large", "ViT-L-14", 768,
        vision={"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
        text={**_TEXT, "width": 768, "heads": 12, "layers": 12},
    ),
}


def clip_size(size: str) -> ClipSize:
    if size not in SIZES:
        raise ConfigError(f"model.size = {size!r} is not a CLIP size; use one of {', '.join(SIZES)}")
    return SIZES[size]


class ClipProcessor(Processor):
    """OpenAI CLIP preprocessing: BPE tokens (context 77, overlong text cut with EOT last)
    and Resize(shorter side, bicubic) + CenterCrop + RGB + ToTensor + OpenAI mean/std.

    `fill_missing=False` (CLIP-SF) keeps only present texts/images plus their row indices;
    `fill_missing=True` (CLIP-FF) encodes a missing text as "" and a missing image as zeros.
    """

    def __init__(self, image_size: int, context_length: int = 77, fill_missing: bool = False) -> None:
        self.image_size = image_size
        self.context_length = context_length
        self.fill_missing = fill_missing
        self._tokenizer: Any = None
        self._transform: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild the tokenizer/transform: smaller pickles, no shared BPE cache.
        return {**self.__dict__, "_tokenizer": None, "_transform": None}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._tokenizer = SimpleTokenizer(context_length=self.context_length)
        return self._tokenizer

    @property
    def transform(self) -> Any:
        if self._transform is None:
            from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
            from open_clip.transform import image_transform

            self._transform = image_transform(
                self.image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD,
                interpolation="bicubic", resize_mode="shortest",
            )
        return self._transform

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, context] int64; as OpenAI `clip.tokenize(truncate=True)`."""
        return self.tokenizer(list(texts), context_length=self.context_length)

    def process(self, text: Optional[str], image: Optional[Image.Image], query: Any = None) -> dict[str, Any]:
        has_text, has_image = has_content(text, image)
        item: dict[str, Any] = {"has_text": has_text, "has_image": has_image}
        if has_text or self.fill_missing:
            item["input_ids"] = self.tokenize([text if has_text else ""])[0]
        if has_image:
            item["pixel_values"] = self.transform(image)
        elif self.fill_missing:
            item["pixel_values"] = torch.zeros(3, self.image_size, self.image_size)
        return item

    def collate(self, items: Sequence[dict[str, Any]]) -> EncoderBatch:
        has_text = torch.tensor([bool(it["has_text"]) for it in items], dtype=torch.bool)
        has_image = torch.tensor([bool(it["has_image"]) for it in items], dtype=torch.bool)
        if self.fill_missing:
            tensors = {
                "input_ids": torch.stack([it["input_ids"] for it in items]),
                "pixel_values": torch.stack([it["pixel_values"] for it in items]),
            }
            return EncoderBatch(has_text, has_image, tensors)
        text_rows = [i for i, it in enumerate(items) if it["has_text"]]
        image_rows = [i for i, it in enumerate(items) if it["has_image"]]
        size = self.image_size
        tensors = {
            "input_ids": torch.stack([items[i]["input_ids"] for i in text_rows])
            if text_rows else torch.zeros(0, self.context_length, dtype=torch.long),
            "text_index": torch.tensor(text_rows, dtype=torch.long),
            "pixel_values": torch.stack([items[i]["pixel_values"] for i in image_rows])
            if image_rows else torch.zeros(0, 3, size, size),
            "image_index": torch.tensor(image_rows, dtype=torch.long),
        }
        return EncoderBatch(has_text, has_image, tensors)


def resolve_pretrained(spec: ClipSize, pretrained: str) -> Optional[str]:
    """Local path of the initial CLIP weights (None: random init). Resolved before the model
    is built, so a missing download fails fast with what to fetch."""
    if not pretrained:
        return None
    if Path(pretrained).is_file():
        return pretrained
    if spec.arch is None:
        raise ConfigError(
            f"model.size = {spec.name!r} has no pretrained weights (random init only); "
            "use --set model.pretrained=\"\""
        )
    import open_clip

    arch = f"{spec.arch}-quickgelu"
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch))
        raise ConfigError(
            f"model.pretrained = {pretrained!r} is neither a file nor an open_clip QuickGELU tag for "
            f"{spec.arch} (known: {tags}); use \"\" for random init"
        )
    hub = str(cfg.get("hf_hub", "")).rstrip("/")
    try:
        return str(open_clip.download_pretrained(cfg))
    except Exception as exc:
        raise ModelError(
            f"initial weights pretrained={pretrained!r} for {spec.arch} are not in the Hugging Face cache "
            f"and could not be downloaded ({type(exc).__name__}); to start from them, on a machine with internet "
            f"run `hf download {hub} open_clip_model.safetensors` and use that Hugging Face cache here, or start "
            "from random weights with --set model.pretrained=\"\"; to evaluate the released UniIR model instead: "
            "`uniir download checkpoint clip-sf-large` and pass --checkpoint checkpoints/clip-sf-large"
        ) from None


def build_open_clip(spec: ClipSize, *, text_projection: bool, image_tokens: bool) -> nn.Module:
    """An open_clip `CLIP` with OpenAI's layout and QuickGELU (random init)."""
    from open_clip.model import CLIP

    text = {**spec.text, "proj_type": "linear" if text_projection else "none"}
    vision = {**spec.vision, "output_tokens": image_tokens}
    return CLIP(embed_dim=spec.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)


def load_open_clip_weights(clip_model: nn.Module, path: str, *, allow_unexpected: frozenset[str]) -> None:
    """Strictly load open_clip-format weights (`allow_unexpected`: keys the fusion drops)."""
    import open_clip

    try:
        result = open_clip.load_checkpoint(clip_model, path, strict=False)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load as open_clip weights ({exc})") from None
    missing = sorted(result.missing_keys)
    unexpected = sorted(set(result.unexpected_keys) - allow_unexpected)
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not fit the CLIP model (missing {missing[:8]}, unexpected {unexpected[:8]})")


class _ClipRetriever(Retriever):
    """Shared by CLIP-SF and CLIP-FF: open_clip model, processor, upstream key mapping.

    The input image size is 224 for base and large, as upstream; changing it would need
    interpolated positional embeddings, so it is not a setting (`tiny` uses 32).
    """

    fill_missing = False
    text_projection = True
    image_tokens = False

    def __init__(self, size: str = "large", pretrained: str = "openai") -> None:
        super().__init__(size=size, pretrained=pretrained)
        self.spec = clip_size(size)
        weights = resolve_pretrained(self.spec, pretrained)
        self.clip_model = build_open_clip(self.spec, text_projection=self.text_projection, image_tokens=self.image_tokens)
        self._processor = ClipProcessor(self.spec.image_size, self.spec.text["context_length"], self.fill_missing)
        if weights is not None:
            allow = frozenset() if self.text_projection else frozenset({"text_projection"})
            load_open_clip_weights(self.clip_model, weights, allow_unexpected=allow)
            log.info("loaded initial CLIP weights %s (%s)", pretrained, weights)

    @property
    def embedding_dim(self) -> int:
        return self.spec.embed_dim

    @property
    def processor(self) -> ClipProcessor:
        return self._processor

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip_model.logit_scale

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip_model.set_grad_checkpointing(enable)

    def load_upstream_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        super().load_upstream_state_dict(map_upstream_state_dict(state_dict), source)


def map_upstream_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released UniIR CLIP keys -> this module's keys (spec 6.3): identical names; drop a
    DDP `module.` prefix and the OpenAI metadata entries if present; scalar logit_scale."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key in ("clip_model.input_resolution", "clip_model.context_length", "clip_model.vocab_size"):
            continue
        if key == "clip_model.logit_scale" and value.ndim == 1 and value.numel() == 1:
            value = value.reshape(())
        out[key] = value
    return out


@register_upstream("clip_model.", "module.clip_model.")
def identify_upstream_clip(
    state_dict: Mapping[str, torch.Tensor], source: str, keep_training_state: bool = False
) -> tuple[str, dict[str, Any]]:
    """(registry name, kwargs) of a released CLIP-SF/FF state dict, from tensor shapes
    (CLIP has no training state besides its weights)."""
    sd = map_upstream_state_dict(state_dict)
    name = "clip_ff" if any(k.startswith("t5_layers.") for k in sd) else "clip_sf"
    conv, pos = sd.get("clip_model.visual.conv1.weight"), sd.get("clip_model.positional_embedding")
    if conv is None or pos is None:
        raise ModelError(f"{source}: CLIP state dict without visual.conv1/positional_embedding; not a UniIR CLIP model")
    for size, spec in SIZES.items():
        patch = spec.vision["patch_size"]
        if tuple(conv.shape) == (spec.vision["width"], 3, patch, patch) and tuple(pos.shape) == (
            spec.text["context_length"], spec.text["width"]
        ):
            return name, {"size": size}
    raise ModelError(
        f"{source}: CLIP with conv1 {tuple(conv.shape)} and text positions {tuple(pos.shape)} matches none of "
        f"the sizes {', '.join(SIZES)}"
    )


@register_model("clip_sf")
class ClipScoreFusion(_ClipRetriever):
    """CLIP-SF: masked, un-normalised sum of projected text and image features."""

    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        t = batch.tensors
        clip = self.clip_model
        out = torch.zeros(len(batch), self.spec.embed_dim, device=batch.has_text.device, dtype=torch.float32)
        if t["input_ids"].shape[0]:
            out = out.index_add(0, t["text_index"], clip.encode_text(t["input_ids"]).float())
        elif self.training and torch.is_grad_enabled():
            out = out + _zero_touch(_text_tower_parameters(clip))
        if t["pixel_values"].shape[0]:
            out = out.index_add(0, t["image_index"], clip.encode_image(t["pixel_values"]).float())
        elif self.training and torch.is_grad_enabled():
            out = out + _zero_touch(clip.visual.parameters())
        return out


def _text_tower_parameters(clip: nn.Module) -> list[torch.Tensor]:
    params = [clip.token_embedding.weight, clip.positional_embedding, *clip.transformer.parameters(), *clip.ln_final.parameters()]
    projection = clip.text_projection
    if isinstance(projection, nn.Linear):
        params.extend(projection.parameters())
    elif projection is not None:
        params.append(projection)
    return params


def _zero_touch(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """0.0 that depends on every parameter of a tower the batch did not need, so DDP sees
    the tower used (zero gradients) instead of failing on unused parameters."""
    return torch.stack([p.reshape(-1)[0].float() for p in params]).sum() * 0.0


@register_model("clip_ff")
class ClipFeatureFusion(_ClipRetriever):
    """CLIP-FF: T5 encoder over [77 text token states ; all projected image tokens], mean pooled."""

    fill_missing = True
    text_projection = False
    image_tokens = True

    def __init__(self, size: str = "large", pretrained: str = "openai") -> None:
        super().__init__(size=size, pretrained=pretrained)
        self.t5_layers = build_t5_stack(self.spec)

    def text_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, 77, W] text transformer states after ln_final (open_clip's encode_text
        without pooling and projection)."""
        clip = self.clip_model
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(input_ids).to(cast_dtype) + clip.positional_embedding.to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        return clip.ln_final(x)

    def image_token_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 1 + patches, D]: ln_post and proj applied to every token, class token first."""
        pooled, tokens = self.clip_model.visual(pixel_values)
        return torch.cat([pooled.unsqueeze(1), tokens @ self.clip_model.visual.proj], dim=1)

    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        t = batch.tensors
        x = torch.cat([self.text_tokens(t["input_ids"]), self.image_token_states(t["pixel_values"])], dim=1)
        hidden = self.t5_layers(inputs_embeds=x, attention_mask=None).last_hidden_state
        return hidden.mean(dim=1).float()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        if enable:
            self.t5_layers.gradient_checkpointing_enable()
        else:
            self.t5_layers.gradient_checkpointing_disable()


def build_t5_stack(spec: ClipSize) -> nn.Module:
    """HF T5 encoder stack as upstream: T5Config() defaults (relu FFN, dropout 0.1, 32 buckets
    / distance 128, eps 1e-6) with 2 layers, d_model = CLIP dim; no token embedding."""
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Stack

    config = T5Config(
        vocab_size=2,  # the token embedding is removed below; upstream has none
        d_model=spec.embed_dim, d_kv=spec.t5_d_kv, num_heads=spec.t5_heads, d_ff=spec.t5_d_ff,
        num_layers=2, num_decoder_layers=2, is_decoder=False, use_cache=False,
    )
    stack = T5Stack(config)
    stack.embed_tokens = None
    return stack
