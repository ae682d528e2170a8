"""Model registry: `@register_model("clip_sf")`, build or load a retriever by name.

Families register themselves: `@register_model(name)` on the class and
`@register_upstream(*key_prefixes)` on the function that recognises a released UniIR state
dict as theirs. The built-in families are listed by module in `uniir_cli.models.BUILTIN_MODELS`
so that listing names (`uniir --version`, `--help` texts) imports neither torch nor open_clip;
a family's module is imported when one of its models is first built or a released file must
be recognised. Third-party models register themselves once their module is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models import BUILTIN_MODELS

if TYPE_CHECKING:
    import torch

    from uniir_cli.config import Config
    from uniir_cli.models.base import Retriever

# (state-dict key prefixes, recogniser) in registration order
UpstreamRecogniser = Callable[..., "tuple[str, dict[str, Any]]"]
_REGISTRY: dict[str, type[Retriever]] = {}
_UPSTREAM: list[tuple[tuple[str, ...], UpstreamRecogniser]] = []
# (marker file name, recogniser) of checkpoint folders of other formats than uniir's model.json
FolderRecogniser = Callable[[Path], str]
_FOLDERS: list[tuple[str, FolderRecogniser]] = []

R = TypeVar("R", bound="type[Retriever]")
F = TypeVar("F", bound=UpstreamRecogniser)


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


def register_upstream(*key_prefixes: str) -> Callable[[F], F]:
    """Function decorator: `func(state_dict, source, keep_training_state)` returns the
    (registry name, constructor kwargs) of a released state dict with a key starting with
    one of `key_prefixes`, or raises a `ModelError` saying why the file is not of its family."""

    def decorator(func: F) -> F:
        if all(func is not known for _, known in _UPSTREAM):
            _UPSTREAM.append((tuple(key_prefixes), func))
        return func

    return decorator


def register_folder(marker: str) -> Callable[[FolderRecogniser], FolderRecogniser]:
    """Function decorator: `func(directory)` returns the registry name of a checkpoint folder
    that has no model.json but has `marker` (e.g. a Hugging Face model folder's config.json),
    or raises a `ModelError` saying why it is not of its family."""

    def decorator(func: FolderRecogniser) -> FolderRecogniser:
        if all(func is not known for _, known in _FOLDERS):
            _FOLDERS.append((marker, func))
        return func

    return decorator


def _import_builtin_families() -> None:
    for module in sorted(set(BUILTIN_MODELS.values())):
        importlib.import_module(module)


def identify_folder(directory: Path) -> str:
    """Registry name of a checkpoint folder: its model.json's, else the family whose folder
    recogniser claims it."""
    from uniir_cli.models import checkpoint_io

    if checkpoint_io.is_checkpoint_folder(directory):
        return str(checkpoint_io.read_model_json(directory)["model"])
    _import_builtin_families()
    for marker, recognise in _FOLDERS:
        if (directory / marker).is_file():
            return recognise(directory)
    return str(checkpoint_io.read_model_json(directory)["model"])  # raises: not a checkpoint folder


def registered_models() -> list[str]:
    """Names of all models, without importing them."""
    return sorted(set(BUILTIN_MODELS) | set(_REGISTRY))


def get_model_class(name: str) -> type[Retriever]:
    if name not in _REGISTRY and name in BUILTIN_MODELS:
        importlib.import_module(BUILTIN_MODELS[name])
    if name not in _REGISTRY:
        raise ConfigError(f"model.name = {name!r} is not a registered model; use one of {', '.join(registered_models())}")
    return _REGISTRY[name]


def build_model(name: str, **kwargs: Any) -> Retriever:
    """`build_model(cfg.name, size=cfg.size, pretrained=cfg.pretrained, **cfg.options)`."""
    return get_model_class(name).build(**kwargs)


def identify_upstream(
    state_dict: Mapping[str, torch.Tensor], source: str, *, keep_training_state: bool = False
) -> tuple[str, dict[str, Any]]:
    """Registry name and constructor kwargs of the model a released state dict belongs to,
    asked of every family's recogniser (`keep_training_state`: BLIP's momentum encoders and
    queues stay in the model)."""
    _import_builtin_families()
    keys = sorted(state_dict)
    for prefixes, recognise in _UPSTREAM:
        if any(key.startswith(prefixes) for key in keys):
            return recognise(state_dict, source, keep_training_state)
    from uniir_cli.models.checkpoint_io import key_listing

    raise ModelError(f"{source}: not a UniIR model state dict (first keys: {key_listing(keys)})")


def load_model(path: Union[str, Path], *, keep_training_state: bool = False) -> Retriever:
    """A trained retriever from a uniir checkpoint folder, a folder another format's family
    recognises (a Hugging Face MLLM folder), or a released UniIR `.pth` file (CPU, eval mode). `keep_training_state` keeps a released BLIP file's momentum
    encoders and queues (for fine-tuning); by default they are dropped."""
    from uniir_cli.models import checkpoint_io

    path = Path(path)
    if path.is_dir():
        name = identify_folder(path)
        if name not in registered_models():
            raise ModelError(f"{path / checkpoint_io.MODEL_JSON}: model {name!r} is not a registered model "
                             f"(this uniir has {', '.join(registered_models())}); is the checkpoint from a newer uniir or a plugin?")
        return get_model_class(name).from_pretrained(path)
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint (expected a uniir checkpoint folder or a UniIR .pth file)")
    upstream = checkpoint_io.load_upstream_pth(path)
    name, kwargs = identify_upstream(upstream.state_dict, str(path), keep_training_state=keep_training_state)
    model = build_model(name, **get_model_class(name).loading_kwargs({**kwargs, "pretrained": ""}))
    model.load_upstream_state_dict(upstream.state_dict, str(path))
    model.provenance = upstream.provenance()
    return model.eval()


def load_retriever(config: Config, checkpoint: Path | None) -> Retriever:
    """The checkpoint's model, else the configured one (random-init parts seeded by
    run.seed): what evaluation, training and search start from. A checkpoint folder of
    another format that the configured family recognises (a plain Hugging Face MLLM folder)
    takes the configured model options (prompt, dtype, ...) with its weights."""
    import torch

    model = config.model
    if checkpoint is not None:
        from uniir_cli.models.checkpoint_io import is_checkpoint_folder

        if Path(checkpoint).is_dir() and not is_checkpoint_folder(checkpoint) and identify_folder(Path(checkpoint)) == model.name:
            return build_model(model.name, size=model.size, pretrained=str(checkpoint), **model.options).eval()
        return load_model(checkpoint)
    torch.manual_seed(config.run.seed)
    return build_model(model.name, size=model.size, pretrained=model.pretrained, **model.options)
