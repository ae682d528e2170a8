"""Shared fixtures. Tests never touch the network: the Hub is switched offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from uniir_cli.threads import choose_torch_threads  # noqa: E402  (before anything imports torch)

choose_torch_threads()  # beside other work, torch takes only the free cores (see uniir_cli/threads.py)

from pathlib import Path

import pytest


def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    devices = _cuda_devices()
    for item in items:
        if "gpu" in item.keywords and devices < 1:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "multi_gpu" in item.keywords and devices < 2:
            item.add_marker(pytest.mark.skip(reason="needs two CUDA GPUs"))


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic M-BEIR tree shared by the tests that only read it."""
    from uniir_cli.data.synthetic import generate_synthetic_mbeir

    root = tmp_path_factory.mktemp("mbeir") / "tiny"
    generate_synthetic_mbeir(root, seed=0, size="tiny")
    return root


@pytest.fixture(scope="session")
def tiny_mllms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random MLLM checkpoints {variant: Hugging Face folder} (llava_phi3, llava_longrope,
    llava_next, qwen2vl and the legacy layouts: `tests.models.mllm.tiny_models.build_all`)."""
    from tests.models.mllm.tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-mllms"))
