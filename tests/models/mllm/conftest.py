"""Tiny random MLLM checkpoints (`tiny_models.build_all`), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.mllm.tiny_models import build_all


@pytest.fixture(scope="session")
def tiny_mllms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{variant: Hugging Face folder}: llava_phi3, llava_longrope, llava_next, qwen2vl and the legacy layouts."""
    return build_all(tmp_path_factory.mktemp("tiny-mllms"))

