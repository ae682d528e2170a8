"""AdamW parameter groups as UniIR's CLIP recipes build them (spec 7.2, 7.3).

* CLIP parameters: weight decay 0 for tensors with fewer than 2 dimensions and for names
  containing `bn`, `ln`, `bias` or `logit_scale`; the configured weight decay otherwise.
* CLIP-FF: every parameter whose name contains `t5` goes into its own group with its own
  learning rate (upstream 5e-4) and the configured weight decay, whatever its shape.

Frozen parameters (requires_grad False) are left out. Upstream AdamW settings for CLIP are
`CLIP_ADAMW_KWARGS`.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

CLIP_ADAMW_KWARGS: dict[str, Any] = {"betas": (0.9, 0.98), "eps": 1e-6}
_NO_DECAY_NAME_PARTS = ("bn", "ln", "bias", "logit_scale")


def _no_decay(name: str, ndim: int) -> bool:
    return ndim < 2 or any(part in name for part in _NO_DECAY_NAME_PARTS)


def adamw_param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, t5_lr: Optional[float] = None
) -> list[dict[str, Any]]:
    """Parameter groups for `torch.optim.AdamW(groups, **CLIP_ADAMW_KWARGS)`.

    Empty groups are dropped; each group carries a `name` for logging.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    t5: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "t5" in name:
            t5.append(param)
        elif _no_decay(name, param.ndim):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"name": "t5", "params": t5, "lr": lr if t5_lr is None else t5_lr, "weight_decay": weight_decay},
    ]
    return [group for group in groups if group["params"]]
