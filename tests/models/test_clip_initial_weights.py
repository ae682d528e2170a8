"""`pretrained = "openai"`: the initial CLIP weights come from the Hugging Face cache, offline.

The cache is a temporary folder in the Hub's own layout (refs/main -> commit,
snapshots/<commit>/<file> -> blobs/<blob>) holding random weights under the exact repo and
file name open_clip resolves the OpenAI tag to; sockets are refused, so nothing may reach
the network.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

BASE_REPO = "timm/vit_base_patch32_clip_224.openai"
LARGE_REPO = "timm/vit_large_patch14_clip_224.openai"
WEIGHTS = "open_clip_model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache, offline (what HF_HUB_CACHE=<tmp> HF_HUB_OFFLINE=1 give)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("this test must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _cache_file(cache: Path, repo: str, filename: str) -> Path:
    """Where a downloaded `repo/filename` lives; returns the blob to write."""
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    blob = base / "blobs" / ("f" * 64)
    blob.parent.mkdir()
    link = base / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(Path("..", "..", "blobs", blob.name))
    return blob


def test_openai_weights_in_the_hf_cache_load_offline(hub_cache: Path, no_network: None) -> None:
    from safetensors.torch import save_file

    from uniir_cli.models.clip_fusion import SIZES, resolve_pretrained
    from uniir_cli.registry import build_model

    torch.manual_seed(5)
    source = build_model("clip_sf", size="base", pretrained="").clip_model
    weights = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(weights, str(_cache_file(hub_cache, BASE_REPO, WEIGHTS)))
    expected = hub_cache / f"models--{BASE_REPO.replace('/', '--')}" / "snapshots" / COMMIT / WEIGHTS
    assert Path(resolve_pretrained(SIZES["base"], "openai")) == expected

    torch.manual_seed(6)  # a different random init, overwritten by the cached weights
    sf = build_model("clip_sf", size="base", pretrained="openai").clip_model.state_dict()
    assert sf.keys() == weights.keys() and all(torch.equal(sf[k], weights[k]) for k in weights)
    ff = build_model("clip_ff", size="base", pretrained="openai").clip_model  # drops text_projection
    assert ff.text_projection is None and torch.equal(ff.visual.proj, weights["visual.proj"])


@pytest.mark.parametrize("size, repo", [("base", BASE_REPO), ("large", LARGE_REPO)])
def test_uncached_openai_weights_say_what_to_download(size: str, repo: str, hub_cache: Path, no_network: None) -> None:
    from uniir_cli.errors import ModelError
    from uniir_cli.registry import build_model

    with pytest.raises(ModelError) as info:
        build_model("clip_sf", size=size, pretrained="openai")
    message = str(info.value)
    assert "\n" not in message
    assert f"`hf download {repo} {WEIGHTS}`" in message and 'model.pretrained=""' in message
    # the released UniIR model is offered for evaluation only, not as initial weights
    released = message.index("to evaluate the released UniIR model instead")
    assert message.index("`uniir download checkpoint clip-sf-large`") > released
    assert "--checkpoint checkpoints/clip-sf-large" in message[released:]
    assert "uniir download" not in message[:released]
