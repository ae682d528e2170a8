"""Checkpoint files: uniir folders (safetensors) and released UniIR `.pth` files.

A uniir checkpoint folder holds `model.safetensors` and `model.json` (registry name,
constructor kwargs, uniir version, embedding size, provenance). `model.json` is written
last, so a folder that has it is complete.

Released UniIR files (spec 6.1) are `torch.save`d dicts: `model` (state dict),
`optimizer`, `scheduler`, `config` (an OmegaConf DictConfig), `epoch`, `scaler`. They are
read with `torch.load(weights_only=True)`: torch's restricted unpickler runs no pickled
code, and only an explicit allow-list of extra globals is accepted - the omegaconf classes
(turned into inert `UpstreamObject` stand-ins, so omegaconf need not be installed),
`typing.Any`, `builtins.dict` and `collections.defaultdict` (read as a plain dict); BLIP's
int64 queues add `torch.LongStorage`, which torch allows by default. A file
that names any other global is refused with a `ModelError` naming it.
"""

from __future__ import annotations

import json
import logging
import re
import typing
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import torch
from torch import nn

from uniir_cli.atomic import atomic_path, write_json
from uniir_cli.errors import ModelError
from uniir_cli.version import __version__

log = logging.getLogger(__name__)

MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "uniir-checkpoint"
FORMAT_VERSION = 1
_SHOW = 8  # how many offending keys an error message lists


# -- uniir folders ---------------------------------------------------------------------
def is_checkpoint_folder(path: Union[str, Path]) -> bool:
    return (Path(path) / MODEL_JSON).is_file()


def save_folder(
    directory: Union[str, Path],
    *,
    name: str,
    kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    embedding_dim: int,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write the folder; removes a stale model.json first so a killed write never leaves a
    folder that looks complete."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_JSON).unlink(missing_ok=True)
    tensors = {key: state_dict[key].detach().to("cpu").contiguous() for key in sorted(state_dict)}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        # One metadata key only: safetensors writes metadata in hash-map order, so two keys made
        # files of identical weights differ; with one, identical weights give identical bytes.
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return write_model_json(directory, name, kwargs, embedding_dim, provenance)


def write_model_json(
    directory: Path, name: str, kwargs: Mapping[str, Any], embedding_dim: int, provenance: Mapping[str, Any] | None
) -> Path:
    """The folder's `model.json`, written last: its presence marks the folder complete."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "kwargs": dict(kwargs),
        "embedding_dim": embedding_dim,
        "uniir_version": __version__,
        "torch_version": torch.__version__,
        "provenance": dict(provenance or {}),
    }
    write_json(directory / MODEL_JSON, meta)
    log.info("saved %s checkpoint to %s", name, directory)
    return directory


def read_model_json(directory: Union[str, Path]) -> dict[str, Any]:
    path = Path(directory) / MODEL_JSON
    if not path.is_file():
        raise ModelError(
            f"{directory}: not a uniir checkpoint folder (no {MODEL_JSON}); "
            "pass a folder written by `uniir train`/`uniir convert`, or a released UniIR .pth file"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({exc}); re-create the checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model" not in meta:
        raise ModelError(f"{path}: not a uniir model.json (expected \"format\": \"{FORMAT}\" and \"model\")")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path}: format_version {meta['format_version']} is newer than this uniir reads "
            f"({FORMAT_VERSION}); upgrade uniir"
        )
    return meta


def read_folder(directory: Union[str, Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(model.json contents, state dict on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_model_json(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights}: missing; the checkpoint folder is incomplete, re-create it")
    try:
        state_dict = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights}: unreadable ({exc}); re-create the checkpoint") from None
    return meta, state_dict


def key_listing(keys: list[str]) -> str:
    """The first keys of a list and how many there are, for one-line errors."""
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOW else "")


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """`load_state_dict(strict=True)` whose failure is one line naming the keys at fault."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {key_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {key_listing(mismatched)}")
    if not problems:
        damaged = next((key for key in sorted(state_dict) if state_dict[key].is_floating_point()
                        and not bool(torch.isfinite(state_dict[key]).all())), None)
        if damaged is not None:
            raise ModelError(f"{source}: tensor {damaged} holds NaN or infinite values; the checkpoint is damaged "
                             "(a diverged training run?): use an earlier checkpoint")
    if problems:
        raise ModelError(
            f"{source}: weights do not fit model {getattr(module, 'registry_name', type(module).__name__)!r} "
            f"({'; '.join(problems)}); is it a checkpoint of this model and size?"
        )
    module.load_state_dict(dict(state_dict), strict=True)


# -- released UniIR .pth ---------------------------------------------------------------
class UpstreamObject:
    """Inert stand-in for an omegaconf object in an upstream pickle: keeps the pickled
    state, runs nothing. `to_plain` turns a config tree into dicts/lists/scalars."""

    upstream_name: ClassVar[str] = ""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<inert {self.upstream_name}>"


_OMEGACONF_NAMES = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
)
_STAND_INS: dict[str, type[UpstreamObject]] = {
    full: type(full.rsplit(".", 1)[1], (UpstreamObject,), {"upstream_name": full}) for full in _OMEGACONF_NAMES
}


def _plain_dict(default_factory: Any = None) -> dict[Any, Any]:
    """`collections.defaultdict(...)` read as a plain dict (only omegaconf's resolver cache
    uses one); the factory is never called."""
    return {}


ALLOWED_EXTRA_GLOBALS: list[tuple[Any, str]] = [
    *((cls, full) for full, cls in _STAND_INS.items()),
    (typing.Any, "typing.Any"),
    (dict, "builtins.dict"),
    (_plain_dict, "collections.defaultdict"),
]


def to_plain(obj: Any, depth: int = 0) -> Any:
    """An upstream config (stand-ins) as JSON-friendly data; metadata and tensors dropped."""
    if depth > 50:
        return None
    if isinstance(obj, UpstreamObject):
        state = obj.__dict__.get("state")
        state = state if isinstance(state, dict) else {}
        if obj.upstream_name.endswith("DictConfig"):
            return to_plain(state.get("_content"), depth + 1)
        if obj.upstream_name.endswith("ListConfig"):
            return to_plain(state.get("_content"), depth + 1)
        if obj.upstream_name.endswith("Node"):
            return to_plain(state.get("_val"), depth + 1)
        return None
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return None


@dataclass
class UpstreamCheckpoint:
    path: Path
    state_dict: dict[str, torch.Tensor]
    epoch: Any = None
    config: Any = None  # plain data (to_plain of the OmegaConf config), or None
    top_level_keys: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        return {"converted_from": self.path.name, "epoch": self.epoch, "upstream_config": self.config}


def _refused_globals(path: Path) -> list[str]:
    """Globals the pickle names beyond torch's defaults and our allow-list (zip files only;
    weights_only loading is the actual guard, this gives the clear message)."""
    try:
        named = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # unusual opcodes or legacy format: leave it to weights_only
        log.debug("pickle scan of %s skipped: %s", path, exc)
        return []
    allowed = {name for _, name in ALLOWED_EXTRA_GLOBALS}
    return sorted(set(named) - allowed)


def load_upstream_pth(path: Union[str, Path]) -> UpstreamCheckpoint:
    """Read a released UniIR `.pth` without executing pickled code; keep only the weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file (0 bytes); download it again (uniir download checkpoint NAME)")
    is_zip = zipfile.is_zipfile(path)
    refused = _refused_globals(path) if is_zip else []
    if refused:
        raise ModelError(
            f"{path}: refused to load: the pickle imports {', '.join(refused)}, which a UniIR "
            "checkpoint never needs (allowed: torch tensors, omegaconf config objects); "
            "do not load this file unless you know where it came from"
        )
    try:
        with torch.serialization.safe_globals(ALLOWED_EXTRA_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise ModelError(f"{path}: refused to load (it names the global {found.group(1)}, which is not allowed); "
                             "it is not a UniIR checkpoint uniir can read safely") from None
        raise ModelError(f"{path}: not a readable torch checkpoint ({_load_failure(exc)}); "
                         "the file is damaged or of another kind: download it again") from None
    return _unpack(path, obj)


def _load_failure(exc: Exception) -> str:
    """What went wrong in `torch.load`, without torch's advice to load unsafely: the detail
    after "WeightsUnpickler error:" (e.g. "Unsupported operand 101", an unknown pickle opcode)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()), "")
        if detail.startswith("Unsupported operand"):
            return f"unknown pickle opcode {detail.rsplit(' ', 1)[-1]}"
        return detail or type(exc).__name__
    return f"{type(exc).__name__}: {(text.splitlines() or [''])[0]}"


def _unpack(path: Path, obj: Any) -> UpstreamCheckpoint:
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: expected a pickled dict with a 'model' state dict, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        state, epoch, config = obj["model"], obj.get("epoch"), to_plain(obj.get("config"))
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, epoch, config = obj, None, None  # a bare state dict
    else:
        raise ModelError(
            f"{path}: no 'model' state dict inside (top-level keys: {key_listing(sorted(map(str, obj)))})"
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{path}: the state dict has non-tensor entries: {key_listing(bad)}")
    epoch = epoch if isinstance(epoch, (int, float, str)) or epoch is None else str(epoch)
    return UpstreamCheckpoint(path, dict(state), epoch, config, sorted(map(str, obj)))
