"""LoRA adapters for training an MLLM embedder (`model.options.lora`), through peft.

Adapters go on language-model linears chosen by a regular expression over module paths
(`targets`, matched in full), never by bare names: CLIP's vision tower has `q_proj` /
`v_proj` too, and name matching would adapt it by accident. Everything else is frozen. The
adapter weights are kept in fp32 whatever the base dtype (AdamW on bf16 weights loses the
small updates).

A uniir LoRA checkpoint holds the adapter only: `model.safetensors` with these tensors and
`model.json` naming the base (`pretrained`, plus an earlier stage's `adapter`). Such a
checkpoint also merges as an `adapter` (`merge_lora`): the next training stage starts from it,
and `uniir convert --merge` writes a full model folder.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from uniir_cli.errors import ConfigError

# Language-model attention and MLP projections of Llama, Phi-3 (fused qkv / gate_up) and Qwen2.
DEFAULT_TARGETS = r".*\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o|qkv)_proj|mlp\.(gate|up|down|gate_up)_proj)"
DEFAULTS: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05, "targets": DEFAULT_TARGETS, "dora": False}
_TYPES = {"r": int, "alpha": (int, float), "dropout": (int, float), "targets": str, "dora": bool}
ADAPTER_NAME = "default"


def lora_settings(options: dict[str, Any]) -> dict[str, Any]:
    """`model.options.lora` completed with the defaults; unknown keys and bad values are ConfigErrors."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"model.options.lora: unknown key(s) {', '.join(unknown)}; it takes {', '.join(DEFAULTS)}")
    settings = {**DEFAULTS, **options}
    for key, kind in _TYPES.items():
        value = settings[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"model.options.lora.{key} = {value!r}: wrong type (default {DEFAULTS[key]!r})")
    if settings["r"] < 1 or settings["alpha"] <= 0 or not 0 <= settings["dropout"] < 1:
        raise ConfigError(f"model.options.lora = {options!r}: needs r >= 1, alpha > 0 and 0 <= dropout < 1")
    return settings


def peft_config(settings: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=settings["targets"], use_dora=settings["dora"], bias="none")


def add_lora(model: torch.nn.Module, settings: dict[str, Any]) -> list[str]:
    """Inject trainable LoRA layers into `model` (a transformers MLLM) in place, freeze the
    rest; returns the adapted module paths."""
    from peft import inject_adapter_in_model

    targets = settings["targets"]
    try:
        pattern = re.compile(targets)
    except re.error as exc:
        raise ConfigError(f"model.options.lora.targets = {targets!r}: not a regular expression ({exc})") from None
    adapted = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name)]
    if not adapted:
        raise ConfigError(f"model.options.lora.targets = {targets!r} matches no linear layer of the model; "
                          "it is matched against full module paths such as model.language_model.layers.0.self_attn.q_proj")
    inject_adapter_in_model(peft_config(settings), model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
        if param.requires_grad:
            param.data = param.data.float()
    return adapted


def is_lora_tensor(name: str) -> bool:
    return "lora_" in name


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every injected adapter into its base layer and put the plain layer back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    if hasattr(model, "peft_config"):  # no adapter left: a later stage injects its own
        del model.peft_config
    return model
