"""The process group of this run (Accelerate's PartialState), CPU-aware.

Accelerate only forms gloo ranks on a machine without CUDA when asked for the CPU, so every
command gets its state from here: the first call decides for the whole process.
"""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """Accelerate's `PartialState`: rank, world size, device, main-process flag."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
