"""Package faces whose names are imported on first use.

A package's `__init__` names its public functions without importing their modules, so
importing any module of the package (or starting the CLI) does not pull in torch through
a neighbour: `__getattr__, __dir__ = lazy_face(__name__, {"evaluate": "pipeline"})`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`; `exports` maps a public name to the module
    that defines it (relative to `package`, e.g. "pipeline" or "registry:registered_models"
    for an attribute of another name)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *exports})

    return __getattr__, __dir__
