"""BLIP-FF and BLIP-SF retrievers (spec 5.4-5.7, 6.4) on the own BLIP port.

Module names equal upstream's (`visual_encoder`, `text_encoder`, BLIP-SF's `vision_proj` /
`text_proj`, the momentum copies `*_m`, `query_queue` / `cand_queue` / `idx_queue` /
`new_ptr_queue`, `temp`), so `blip_ff_large.pth` loads strictly without renaming and
uniir checkpoints stay loadable by upstream. `training_state=False` builds the model
without momentum encoders and queues (inference; what `uniir convert` writes by default).

Sizes: `base` = ViT-B/16 (768), `large` = ViT-L/16 (1024, drop_path 0.1), `tiny` = a
random-init toy (ViT 96-d, text 64-d, 32 px, 2+2 layers, generated vocabulary by default;
init std 0.1 and no text dropout, since upstream's 0.02 barely mixes tokens at such widths)
for tests and the demo. `vocab` = "" takes bert-base-uncased's vocab.txt from the HF cache.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models.base import EncoderBatch, Retriever
from uniir_cli.models.blip.med import BertModel, MedConfig
from uniir_cli.models.blip.momentum import (
    TEMP_MAX,
    TEMP_MIN,
    copy_params,
    enqueue,
    init_queues,
    momentum_contrastive_loss,
    momentum_update,
)
from uniir_cli.models.blip.processor import TINY_VOCAB, BlipProcessor
from uniir_cli.models.blip.vit import VisionTransformer, resize_pos_embed
from uniir_cli.models.losses import ContrastiveOutput
from uniir_cli.registry import register_model, register_upstream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlipSize:
    name: str
    image_size: int
    patch_size: int
    vision_width: int
    depth: int
    heads: int
    drop_path_rate: float
    queue_size: int  # upstream's default for this size
    text: MedConfig  # encoder_width is set to vision_width at build time
    init_std: float = 0.02  # random init (upstream's 0.02 suits 768+ widths, not toy ones)


SIZES: dict[str, BlipSize] = {
    "tiny": BlipSize("tiny", 32, 8, 96, 2, 3, 0.0, 64,  # vision width != text width, as large
                     MedConfig(hidden_size=64, layers=2, heads=2, intermediate_size=128, max_positions=128,
                               initializer_range=0.1, dropout=0.0), init_std=0.1),
    "base": BlipSize("base", 224, 16, 768, 12, 12, 0.0, 57600, MedConfig()),
    "large": BlipSize("large", 224, 16, 1024, 24, 16, 0.1, 57960, MedConfig()),
}
TRAINING_STATE_PREFIXES = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.")
TRAINING_STATE_BUFFERS = ("query_queue", "cand_queue", "idx_queue", "new_ptr_queue")


def blip_size(size: str) -> BlipSize:
    if size not in SIZES:
        raise ConfigError(f"model.size = {size!r} is not a BLIP size; use one of {', '.join(SIZES)}")
    return SIZES[size]


class _BlipRetriever(Retriever):
    """Shared by BLIP-FF/SF: encoders, momentum copies, queues, the momentum-queue loss."""

    pooler = True  # BLIP-FF embeds the BERT pooler output
    projections = False  # BLIP-SF's text_proj / vision_proj

    def __init__(
        self,
        size: str = "large",
        pretrained: str = "",
        vocab: str = "",
        embed_dim: int = 768,
        queue_size: int = 0,
        alpha: float = 0.4,
        momentum: float = 0.995,
        temp: float = 0.07,
        drop_path_rate: float | None = None,
        vit_ckpt_layer: int = 0,
        training_state: bool = True,
        sdpa: bool = False,
        augment: bool = True,
    ) -> None:
        super().__init__(
            size=size, pretrained=pretrained, vocab=vocab, embed_dim=embed_dim, queue_size=queue_size, alpha=alpha,
            momentum=momentum, temp=temp, drop_path_rate=drop_path_rate, vit_ckpt_layer=vit_ckpt_layer,
            training_state=training_state, sdpa=sdpa, augment=augment,
        )
        spec = self.spec = blip_size(size)
        self.alpha, self.momentum = alpha, momentum
        self.queue_size = queue_size or spec.queue_size
        self.visual_encoder = VisionTransformer(
            spec.image_size, spec.patch_size, spec.vision_width, spec.depth, spec.heads,
            drop_path_rate=spec.drop_path_rate if drop_path_rate is None else drop_path_rate,
            grad_ckpt_layers=vit_ckpt_layer or spec.depth, sdpa=sdpa, init_std=spec.init_std,
        )
        text_cfg = MedConfig(**{**spec.text.__dict__, "encoder_width": spec.vision_width})
        self.text_encoder = BertModel(text_cfg, add_pooling_layer=self.pooler)
        self.text_encoder.set_sdpa(sdpa)
        self._embed_dim = embed_dim if self.projections else text_cfg.hidden_size
        if self.projections:
            self.vision_proj = nn.Linear(spec.vision_width, embed_dim)
            self.text_proj = nn.Linear(text_cfg.hidden_size, embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(temp)))
        self.training_state = training_state
        if training_state:
            for name in self._online_names():
                setattr(self, f"{name}_m", copy.deepcopy(getattr(self, name)))
            for name, tensor in zip(TRAINING_STATE_BUFFERS, init_queues(self._embed_dim, self.queue_size)):
                self.register_buffer(name, tensor)
        if training_state:
            copy_params(self._pairs())
        if pretrained:  # after copy_params, as upstream: the file's momentum copies win
            self._load_blip_pretrained(pretrained)
        vocab = vocab or (TINY_VOCAB if size == "tiny" else "")
        self._processors = {  # [False]: eval transform, [True]: training (augmenting unless augment=false)
            train: BlipProcessor(spec.image_size, 100, vocab, expect_ids=size != "tiny", train=train and augment)
            for train in (False, True)
        }

    def _online_names(self) -> list[str]:
        return ["visual_encoder", "text_encoder", *(["vision_proj", "text_proj"] if self.projections else [])]

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(getattr(self, n), getattr(self, f"{n}_m")) for n in self._online_names()]

    # -- interface ----------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        return self._embed_dim

    @property
    def processor(self) -> BlipProcessor:
        """The augmenting transform while the model is in training mode (as upstream)."""
        return self._processors[self.training]

    @property
    def logit_scale(self) -> torch.Tensor:
        return -torch.log(self.temp)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint the last `vit_ckpt_layer` ViT blocks (all when 0), as upstream."""
        self.visual_encoder.grad_checkpointing = enable

    def set_sdpa(self, enable: bool = True) -> None:
        for module in self.modules():
            if isinstance(module, (VisionTransformer, BertModel)):
                module.set_sdpa(enable)

    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        return self._embed(batch, "").float()

    def _embed(self, batch: EncoderBatch, suffix: str) -> torch.Tensor:
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------
    def loss_targets(
        self,
        queries: Sequence[EncoderBatch],
        positives: Sequence[EncoderBatch],
        negatives: Sequence[EncoderBatch],
        *,
        hard_neg_num: int = 0,
        loss_average: str = "all",
        **_: Any,
    ) -> dict[str, Any]:
        """The momentum side of the loss, after the online embeddings: temperature clamped, one
        EMA update of the momentum encoders, their normalised embeddings, the positives' ids."""
        if hard_neg_num > 0:
            raise ConfigError("train.hard_neg_num > 0 is not supported for BLIP models (upstream's branch is broken); set it to 0")
        if loss_average != "all":
            raise ConfigError(f"train.loss_average = {loss_average!r} is not supported for BLIP's momentum-queue loss; "
                              "set it to \"all\"")
        if not self.training_state:
            raise ModelError(
                f"model {self.registry_name!r} was built without momentum encoders and queues (training_state=false); "
                "train from a checkpoint converted with --keep-training-state, or build with training_state=true"
            )
        if any(b.tensors.get("did") is None for b in positives):
            raise ModelError("BLIP training needs the positives' candidate ids (EncoderBatch.tensors['did']); use collate_triples")
        self.temp.clamp_(TEMP_MIN, TEMP_MAX)
        momentum_update(self._pairs(), self.momentum)
        return {
            "q_m": torch.cat([F.normalize(self._embed(b, "_m").float(), dim=-1) for b in queries]),
            "p_m": torch.cat([F.normalize(self._embed(b, "_m").float(), dim=-1) for b in positives]),
            "ids": torch.cat([b.tensors["did"] for b in positives]),
        }

    def embedding_loss(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        n: torch.Tensor | None = None,
        *,
        q_m: torch.Tensor,
        p_m: torch.Tensor,
        ids: torch.Tensor,
        progress: float = 1.0,
        **_: Any,
    ) -> ContrastiveOutput:
        """Momentum-queue loss, then the batch's momentum features enqueued; `progress` (epochs
        done, fractional) ramps alpha over epoch 0."""
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
        alpha = self.alpha * min(1.0, max(0.0, progress))
        out = momentum_contrastive_loss(q, p, q_m, p_m, ids, self.temp, self.query_queue, self.cand_queue, self.idx_queue, alpha)
        enqueue(self.query_queue, self.cand_queue, self.idx_queue, self.new_ptr_queue, q_m, p_m, ids)
        return out

    def optimizer_param_groups(self, *, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Upstream's BLIP recipe: one AdamW group, weight decay on every trainable tensor
        (biases and norms included); frozen momentum copies are left out."""
        return [{"name": "all", "params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "weight_decay": weight_decay}]

    # -- weights ------------------------------------------------------------------------
    @classmethod
    def loading_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "pretrained": ""}

    def load_upstream_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
        if not self.training_state:
            sd = {k: v for k, v in sd.items() if not k.startswith(TRAINING_STATE_PREFIXES) and k not in TRAINING_STATE_BUFFERS}
        super().load_upstream_state_dict(sd, source)

    def _load_blip_pretrained(self, path: str) -> None:
        """BLIP pretraining weights (model_base/large.pth), non-strict as upstream: position
        embeddings of another resolution are resized; keys of other shapes (projections,
        queues of another dim) and unknown keys are skipped."""
        from pathlib import Path

        from uniir_cli.models.checkpoint_io import load_upstream_pth

        if not Path(path).is_file():
            raise ConfigError(
                f"model.pretrained = {path!r}: no such file; pass BLIP's model_{self.spec.name}.pth "
                "(sfr-vision-language-research/BLIP) or \"\" for random init"
            )
        source = load_upstream_pth(path).state_dict
        own = self.state_dict()
        for key in ("visual_encoder.pos_embed", "visual_encoder_m.pos_embed"):
            if key in source and key in own and source[key].shape != own[key].shape:
                try:
                    source[key] = resize_pos_embed(source[key], own[key].shape[1] - 1)
                except ValueError as exc:
                    raise ModelError(f"{path}: {key}: {exc}") from None
        usable = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        skipped = sorted(k for k in source if k in own and k not in usable)
        self.load_state_dict(usable, strict=False)
        if self.training_state and not any(k.startswith(TRAINING_STATE_PREFIXES) for k in usable):
            copy_params(self._pairs())  # a file without momentum copies: start them from its weights
        log.info("loaded %d BLIP pretrained tensors from %s; %d shape mismatches skipped (%s); %d left at init",
                 len(usable), path, len(skipped), ", ".join(skipped[:6]), len(own) - len(usable))


@register_model("blip_ff")
class BlipFeatureFusion(_BlipRetriever):
    """BLIP-FF: the text encoder's pooler output, cross-attending to all image tokens.
    Always both modalities: "" for a missing text, the zero image for a missing image."""

    def _embed(self, batch: EncoderBatch, suffix: str) -> torch.Tensor:
        t = batch.tensors
        image = getattr(self, f"visual_encoder{suffix}")(t["pixel_values"])
        _, pooled = getattr(self, f"text_encoder{suffix}")(t["input_ids"], t["attention_mask"], image, mode="multimodal")
        return pooled


@register_model("blip_sf")
class BlipScoreFusion(_BlipRetriever):
    """BLIP-SF: text_proj(text [CLS]) * has_text + vision_proj(image [CLS]) * has_image,
    un-normalised (the CLIP-SF rule). Cross-attention is unused, hence frozen."""

    pooler = False
    projections = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, param in self.named_parameters():
            if ".crossattention." in name:
                param.requires_grad = False

    def _embed(self, batch: EncoderBatch, suffix: str) -> torch.Tensor:
        t = batch.tensors
        image = getattr(self, f"visual_encoder{suffix}")(t["pixel_values"])[:, 0]
        image = getattr(self, f"vision_proj{suffix}")(image)
        hidden, _ = getattr(self, f"text_encoder{suffix}")(t["input_ids"], t["attention_mask"], mode="text")
        text = getattr(self, f"text_proj{suffix}")(hidden[:, 0])
        mask_t = batch.has_text.to(text.dtype).unsqueeze(1)
        mask_i = batch.has_image.to(image.dtype).unsqueeze(1)
        return text * mask_t + image * mask_i


@register_upstream("visual_encoder.", "text_encoder.", "module.visual_encoder.")
def identify_upstream_blip(state_dict: Mapping[str, torch.Tensor], source: str, keep_training_state: bool = False) -> tuple[str, dict[str, Any]]:
    """(registry name, kwargs) of a released BLIP-FF/SF state dict, from names and shapes."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    patch = sd.get("visual_encoder.patch_embed.proj.weight")
    if patch is None:
        raise ModelError(f"{source}: BLIP state dict without visual_encoder.patch_embed.proj.weight; not a UniIR BLIP model")
    name = "blip_sf" if "text_proj.weight" in sd else "blip_ff"
    size = next((s.name for s in SIZES.values() if tuple(patch.shape) == (s.vision_width, 3, s.patch_size, s.patch_size)), None)
    if size is None:
        raise ModelError(f"{source}: BLIP patch embedding {tuple(patch.shape)} matches none of the sizes {', '.join(SIZES)}")
    kwargs: dict[str, Any] = {"size": size, "training_state": bool(keep_training_state)}
    if name == "blip_sf":
        kwargs["embed_dim"] = int(sd["text_proj.weight"].shape[0])
    if "query_queue" in sd:
        kwargs["queue_size"] = int(sd["query_queue"].shape[1])
    elif keep_training_state:
        raise ModelError(f"{source}: holds no momentum encoders/queues; convert without --keep-training-state")
    return name, kwargs
