"""The built-in toy LLaVA-NeXT (`builtin:tiny-llava-next`) of `uniir demo --preset mllm-tiny`:
built offline, the same bytes on every machine, cached, and learnt by the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.errors import ConfigError
from uniir_cli.models.mllm.tiny import builtin_folder
from uniir_cli.registry import build_model


def test_the_builtin_is_built_once_and_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = []
    for name in ("a", "b"):
        monkeypatch.setenv("UNIIR_CACHE_DIR", str(tmp_path / name))
        folders.append(builtin_folder("tiny-llava-next"))
    for file in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (folders[0] / file).read_bytes() == (folders[1] / file).read_bytes(), file
    built = (folders[1] / "model.safetensors").stat().st_mtime_ns
    assert builtin_folder("tiny-llava-next") == folders[1] and (folders[1] / "model.safetensors").stat().st_mtime_ns == built
    assert not [p for p in folders[1].parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    model = build_model("mllm", pretrained="builtin:tiny-llava-next", prompt="e5v", dtype="fp32")
    assert model.embedding_dim == 128 and model.model_type == "llava_next"
    with pytest.raises(ConfigError, match="no such built-in model"):
        builtin_folder("tiny-qwen")


@pytest.mark.slow
def test_the_mllm_tiny_demo_learns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`uniir demo --preset mllm-tiny` on 12 test queries per pair (about 3 minutes on 2 cores)."""
    monkeypatch.setenv("UNIIR_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "demo"
    result = CliRunner().invoke(build_app(), ["demo", "--preset", "mllm-tiny", "--run-dir", str(run), "--size", "12"])
    assert result.exit_code == 0, result.output
    trained = json.loads((run / "metrics/metrics.json").read_text())["average"]
    untrained = json.loads((run / "untrained/metrics/metrics.json").read_text())["average"]
    assert trained["local"]["value"] > untrained["local"]["value"] + 0.1, (trained, untrained)
    assert trained["global"]["value"] > untrained["global"]["value"] + 0.05, (trained, untrained)
