"""The BLIP vision transformer (timm-style ViT, spec 5.4), parameter names as upstream.

Names (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}`, `norm`) equal the released `visual_encoder.*` keys, so
`blip_ff_large.pth` loads strictly. LayerNorm eps is 1e-6 (not torch's 1e-5); the final
norm is applied once, to every token. Stochastic depth (drop_path) and gradient
checkpointing of the last `grad_ckpt_layers` blocks match upstream's training setup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

LN_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout)."""

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, sdpa: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.sdpa = sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.sdpa:
            p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            out = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float, sdpa: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, sdpa=sdpa)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, image_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """[B, 3, H, W] -> [B, 1 + patches, width] token states after the final norm."""

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        grad_ckpt_layers: int = 0,
        sdpa: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.width = width
        self.init_std = init_std
        self.patch_embed = PatchEmbed(image_size, patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, width))
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]  # linspace(0, rate, depth)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, rates[i], sdpa) for i in range(depth))
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.grad_ckpt_layers = grad_ckpt_layers
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.init_std
        nn.init.trunc_normal_(self.pos_embed, std=std)
        nn.init.trunc_normal_(self.cls_token, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_sdpa(self, enable: bool) -> None:
        for block in self.blocks:
            block.attn.sdpa = enable

    def forward(self, pixel_values: torch.Tensor, ckpt_layers: int | None = None) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed[:, : x.shape[1]].to(x.dtype)
        layers = self.grad_ckpt_layers if ckpt_layers is None else ckpt_layers
        first_ckpt = len(self.blocks) - layers if self.grad_checkpointing else len(self.blocks)
        for i, block in enumerate(self.blocks):
            if i >= first_ckpt and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)


def resize_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """[1, 1 + n, W] -> [1, 1 + num_patches, W]: the patch grid resized bicubically (the
    class token kept), so BLIP weights trained at another resolution (e.g. 384 px) load."""
    old, new = round((pos_embed.shape[1] - 1) ** 0.5), round(num_patches**0.5)
    if old * old + 1 != pos_embed.shape[1] or new * new != num_patches:
        raise ValueError(f"a position embedding of {pos_embed.shape[1]} tokens is not a class token plus a square grid")
    if old == new:
        return pos_embed
    grid = pos_embed[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos_embed.dtype)], dim=1)
