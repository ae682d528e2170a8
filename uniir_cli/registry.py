"""Model registry: `@register_model("clip_sf")`, build or load a retriever by name.

Built-in models are listed here by module so that listing names (`uniir --version`,
`--help` texts) imports neither torch nor open_clip; a model module is imported when the
model is first built. Third-party models register themselves with the decorator once
their module is imported.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from uniir_cli.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from uniir_cli.models.base import Retriever

# registry name -> module that registers it (imported on first use)
_BUILTIN: dict[str, str] = {
    "clip_sf": "uniir_cli.models.clip_fusion",
    "clip_ff": "uniir_cli.models.clip_fusion",
    "blip_sf": "uniir_cli.models.blip.model",
    "blip_ff": "uniir_cli.models.blip.model",
}
_REGISTRY: dict[str, type[Retriever]] = {}

R = TypeVar("R", bound="type[Retriever]")


def register_model(name: str) -> Callable[[R], R]:
    """Class decorator: make a `Retriever` subclass buildable as `name`."""

    def decorator(cls: R) -> R:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"model name {name!r} is already registered by {existing.__qualname__}")
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_models() -> list[str]:
    """Names of all models, without importing them."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_model_class(name: str) -> type[Retriever]:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ConfigError(f"model.name = {name!r} is not a registered model; use one of {', '.join(registered_models())}")
    return _REGISTRY[name]


def build_model(name: str, **kwargs: Any) -> Retriever:
    """`build_model(cfg.name, size=cfg.size, pretrained=cfg.pretrained, **cfg.options)`."""
    cls = get_model_class(name)
    signature = inspect.signature(cls.__init__)
    accepted = [p for p in signature.parameters if p != "self"]
    try:
        signature.bind(None, **kwargs)
    except TypeError:
        unknown = sorted(set(kwargs) - set(accepted))
        raise ConfigError(
            f"model {name!r} does not take option(s) {', '.join(unknown) or '(see signature)'}; "
            f"it takes: {', '.join(accepted)}"
        ) from None
    return cls(**kwargs)


def load_model(path: Union[str, Path], *, keep_training_state: bool = False) -> Retriever:
    """A trained retriever from a uniir checkpoint folder or a released UniIR `.pth` file
    (CPU, fp32, eval mode). `keep_training_state` keeps a released BLIP file's momentum
    encoders and queues (for fine-tuning); by default they are dropped."""
    from uniir_cli.models import checkpoint_io
    from uniir_cli.models.base import Retriever

    path = Path(path)
    if path.is_dir():
        return Retriever.from_pretrained(path)
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint (expected a uniir checkpoint folder or a UniIR .pth file)")
    upstream = checkpoint_io.load_upstream_pth(path)
    name, kwargs = checkpoint_io.identify_upstream(upstream.state_dict, str(path), keep_training_state=keep_training_state)
    model = build_model(name, **get_model_class(name).loading_kwargs({**kwargs, "pretrained": ""}))
    model.load_upstream_state_dict(upstream.state_dict, str(path))
    model.provenance = upstream.provenance()
    return model.eval()
