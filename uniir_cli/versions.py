"""`uniir --version`: the versions that decide whether numbers reproduce."""

from __future__ import annotations

import importlib.metadata

import uniir_cli


def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def faiss_version() -> str:
    for dist in ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss"):
        version = _installed(dist)
        if version != "not installed":
            return f"{version} ({dist})"
    return "not installed"


def version_report() -> str:
    import torch

    cuda = f"yes ({torch.cuda.device_count()} device(s))" if torch.cuda.is_available() else "no"
    lines = [
        f"uniir {uniir_cli.__version__}",
        f"torch {torch.__version__}",
        f"open_clip {_installed('open_clip_torch')}",
        f"transformers {_installed('transformers')}",
        f"faiss {faiss_version()}",
        f"CUDA visible: {cuda}",
    ]
    try:
        from uniir_cli.registry import registered_models

        lines.append("models: " + ", ".join(registered_models()))
    except ImportError:
        pass
    return "\n".join(lines)
