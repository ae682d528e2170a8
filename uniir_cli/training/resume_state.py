"""What `--resume` needs besides the weights, stored without pickles.

A run directory travels like a checkpoint (copied from a cluster, sent by a colleague), so
nothing read back from it may run code: Accelerate's `save_state` pickles the optimizer,
scheduler and RNG states, and unpickling a tampered file executes whatever it names. uniir
writes its own files instead, tensors as safetensors and everything else as JSON:

```
checkpoints/<step>/resume/
  optimizer.safetensors  optimizer.json   AdamW moments and step counts; param groups
  scheduler.json                          the LambdaLR state (its lambdas are rebuilt, not stored)
  scaler.json                             the fp16 GradScaler, when one is used
  rng-<rank>.safetensors  rng-<rank>.json torch/CUDA generators; python and numpy generators
```

Every rank writes its own RNG files; the main process writes the rest. A missing, damaged or
foreign file is a one-line `RunDirError` naming it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uniir_cli import atomic
from uniir_cli.errors import RunDirError

RESUME_DIR = "resume"
_OLD_PICKLED_DIR = "accelerate"  # what uniir wrote before: never read


def _tensor_file(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic.atomic_path(path) as tmp:
        save_file({k: tensors[k].detach().cpu().contiguous() for k in sorted(tensors)}, str(tmp))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path}: missing; this checkpoint cannot be resumed (resume from an earlier one, or start afresh)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}); this checkpoint cannot be resumed") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise RunDirError(f"{path}: missing; this checkpoint cannot be resumed (resume from an earlier one, or start afresh)")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunDirError(f"{path}: not a readable safetensors file ({exc}); this checkpoint cannot be resumed") from None


def _foreign(path: Path, what: str) -> RunDirError:
    return RunDirError(f"{path}: {what}; it was not written by uniir for this run, so it is not resumed from")


# -- writing ---------------------------------------------------------------------------
def save_resume_state(directory: Path, *, optimizer: Any, scheduler: Any, scaler: Any, rank: int, is_main: bool) -> None:
    """Write this rank's part of `directory/resume/`."""
    folder = directory / RESUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    plain = {"python": [version, list(mt), gauss], "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    _tensor_file(folder / f"rng-{rank}.safetensors", tensors)
    atomic.write_json(folder / f"rng-{rank}.json", plain)
    if not is_main:
        return
    state = optimizer.state_dict()
    moments = {f"{pid}.{name}": value for pid, values in state["state"].items()
               for name, value in values.items() if isinstance(value, torch.Tensor)}
    scalars = {str(pid): {name: value for name, value in values.items() if not isinstance(value, torch.Tensor)}
               for pid, values in state["state"].items()}
    _tensor_file(folder / "optimizer.safetensors", moments)
    atomic.write_json(folder / "optimizer.json", {"param_groups": state["param_groups"], "scalars": scalars})
    atomic.write_json(folder / "scheduler.json", scheduler.state_dict())
    if scaler is not None:
        atomic.write_json(folder / "scaler.json", scaler.state_dict())


# -- reading ---------------------------------------------------------------------------
def _optimizer_state(folder: Path) -> dict[str, Any]:
    meta = _read_json(folder / "optimizer.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list) or not isinstance(meta.get("scalars"), dict):
        raise _foreign(folder / "optimizer.json", "expected {\"param_groups\": [...], \"scalars\": {...}}")
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in _read_tensors(folder / "optimizer.safetensors").items():
        pid, _, name = key.partition(".")
        if not pid.isdigit() or not name:
            raise _foreign(folder / "optimizer.safetensors", f"unexpected tensor {key!r}")
        state.setdefault(int(pid), {})[name] = tensor
    for pid, values in meta["scalars"].items():
        if not pid.isdigit() or not isinstance(values, dict):
            raise _foreign(folder / "optimizer.json", f"unexpected scalars entry {pid!r}")
        state.setdefault(int(pid), {}).update(values)
    groups = [dict(group, betas=tuple(group["betas"])) if isinstance(group, dict) and "betas" in group else group
              for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _load_into(target: Any, state: Any, path: Path) -> None:
    try:
        target.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise _foreign(path, f"does not fit this run's {type(target).__name__} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _restore_rng(folder: Path, rank: int) -> None:
    plain_path = folder / f"rng-{rank}.json"
    plain = _read_json(plain_path)
    tensors = _read_tensors(folder / f"rng-{rank}.safetensors")
    try:
        version, mt, gauss = plain["python"]
        kind, keys, pos, has_gauss, cached = plain["numpy"]
        random.setstate((int(version), tuple(int(x) for x in mt), gauss))
        np.random.set_state((str(kind), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
        torch.set_rng_state(tensors["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _foreign(plain_path, f"not a uniir RNG state ({exc})") from None
    if torch.cuda.is_available():
        states = [tensors[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)


def load_resume_state(directory: Path, *, optimizer: Any, scheduler: Any, scaler: Any, rank: int) -> None:
    """Restore what `save_resume_state` wrote (no file is unpickled)."""
    folder = directory / RESUME_DIR
    if not folder.is_dir():
        if (directory / _OLD_PICKLED_DIR).is_dir():
            raise RunDirError(
                f"{directory}: its resume state is in pickles ({_OLD_PICKLED_DIR}/, written by an older uniir), which "
                "uniir no longer loads because a pickle can run code; continue from its weights in a new run with "
                f"`uniir train --checkpoint {directory} --run-dir NEW`"
            )
        raise RunDirError(f"{folder}: missing; this checkpoint cannot be resumed (resume from an earlier one, or start afresh)")
    _load_into(optimizer, _optimizer_state(folder), folder / "optimizer.json")
    _load_into(scheduler, _read_json(folder / "scheduler.json"), folder / "scheduler.json")
    if scaler is not None:
        _load_into(scaler, _read_json(folder / "scaler.json"), folder / "scaler.json")
    _restore_rng(folder, rank)
