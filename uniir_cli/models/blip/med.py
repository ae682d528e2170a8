"""BLIP's "MED" BERT text encoder (spec 5.4), parameter names as upstream.

A BERT-base encoder without token-type embeddings whose every layer also has a
cross-attention block (`crossattention.*`, keys/values projected from `encoder_width`,
the ViT width). `mode="text"` skips cross-attention (BLIP-SF), `mode="multimodal"` attends
to all image tokens (BLIP-FF). Masks are additive with -10000 as upstream's BERT. Names
(`embeddings.*`, `encoder.layer.N.*`, `pooler.dense`) equal the released `text_encoder.*`
keys, including the persistent `embeddings.position_ids` buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MedConfig:
    vocab_size: int = 30524
    hidden_size: int = 768
    layers: int = 12
    heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    encoder_width: int = 768
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    initializer_range: float = 0.02


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: MedConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        # persistent: upstream's checkpoint carries it
        self.register_buffer("position_ids", torch.arange(cfg.max_positions).unsqueeze(0))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: MedConfig, is_cross: bool) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.hidden_size // cfg.heads
        kv_width = cfg.encoder_width if is_cross else cfg.hidden_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(kv_width, cfg.hidden_size)
        self.value = nn.Linear(kv_width, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.sdpa = False

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None = None) -> torch.Tensor:
        source = hidden if context is None else context
        q, k, v = self._split(self.query(hidden)), self._split(self.key(source)), self._split(self.value(source))
        if self.sdpa:
            p = self.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype), dropout_p=p)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            out = self.dropout(scores.softmax(dim=-1)) @ v
        return out.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)


class BertSelfOutput(nn.Module):
    """dense -> dropout -> LayerNorm(+ residual); also the FFN output (`output`)."""

    def __init__(self, cfg: MedConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: MedConfig, is_cross: bool = False) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg, is_cross)
        self.output = BertSelfOutput(cfg)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.self(hidden, mask, context), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: MedConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: MedConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.crossattention = BertAttention(cfg, is_cross=True)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, image: torch.Tensor | None, image_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = self.attention(hidden, mask)
        if image is not None:
            hidden = self.crossattention(hidden, image_mask, image)
        return self.output(self.intermediate(hidden), hidden)


class BertEncoder(nn.Module):
    def __init__(self, cfg: MedConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.layers))


class BertPooler(nn.Module):
    def __init__(self, cfg: MedConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def extended_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 1/0 -> [B, 1, 1, L] additive (0 keep, -10000 drop), as upstream BERT."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0


class BertModel(nn.Module):
    """Token ids (+ optional image tokens) -> [B, L, hidden] states (+ pooled [CLS])."""

    def __init__(self, cfg: MedConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None
        self.grad_checkpointing = False
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.cfg.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    def set_sdpa(self, enable: bool) -> None:
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.sdpa = enable

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        mode: str = "multimodal",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`mode="text"` ignores `image_embeds`; the image mask is all ones (every image token)."""
        hidden = self.embeddings(input_ids)
        mask = extended_mask(attention_mask, hidden.dtype)
        image = image_embeds if mode == "multimodal" else None
        for layer in self.encoder.layer:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                hidden = checkpoint(layer, hidden, mask, image, None, use_reentrant=False)
            else:
                hidden = layer(hidden, mask, image, None)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return hidden, pooled
