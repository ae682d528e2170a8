"""Test helpers for `uniir download`: Hugging Face cache layouts and a Hub simulated at
huggingface_hub's public API (the Hub is unreachable from the tests)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(
    cache: Path, repo_folder: str, files: dict[str, bytes], commit: str = COMMIT, refs: tuple[str, ...] = ("main",)
) -> Path:
    """A Hugging Face cache layout: refs/<ref>, blobs/<hash>, snapshots/<commit>/<path> -> blob."""
    base = cache / repo_folder
    (base / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (base / "refs" / ref).write_text(commit)
    for rel, data in files.items():
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return base / "snapshots" / commit


def use_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache, offline (as HF_HUB_CACHE=<tmp> HF_HUB_OFFLINE=1 would give)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


class FakeHub:
    """The dataset repo TIGER-Lab/M-BEIR served at huggingface_hub's public API.

    `list_repo_tree` lists the files with their LFS sha256s; `hf_hub_download` writes into the
    real cache layout (blobs/<sha256>, snapshots/<commit>/<path> -> blob, refs/<revision>) and,
    like the real one, returns a cached file without transferring it when its snapshot link
    resolves. Every call is recorded with its arguments.
    """

    def __init__(self, cache: Path, files: dict[str, bytes], commit: str = COMMIT) -> None:
        self.cache = cache
        self.files = files
        self.commit = commit
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (function, repo or filename, kwargs)
        self.fetched: list[str] = []  # files transferred (not served from the cache)
        self.on_download: list[Any] = []  # hooks called with the filename before it is served

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        import huggingface_hub
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False, raising=False)
        monkeypatch.setattr(huggingface_hub, "HfApi", lambda *args, **kwargs: self)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.hf_hub_download)
        return self

    @property
    def repo_dir(self) -> Path:
        return self.cache / "datasets--TIGER-Lab--M-BEIR"

    def list_repo_tree(self, repo: str, **kwargs: Any) -> list[Any]:
        from huggingface_hub.hf_api import RepoFile

        self.calls.append(("list_repo_tree", repo, kwargs))
        assert repo == "TIGER-Lab/M-BEIR" and kwargs["repo_type"] == "dataset"
        return [
            RepoFile(path=p, size=len(b), oid="x", lfs={"size": len(b), "oid": hashlib.sha256(b).hexdigest(), "pointerSize": 1})
            for p, b in self.files.items()
        ]

    def hf_hub_download(
        self, repo: str, filename: str, *, repo_type: str | None = None, revision: str | None = None, tqdm_class: type | None = None
    ) -> str:
        self.calls.append(("hf_hub_download", filename, {"repo_type": repo_type, "revision": revision}))
        for hook in self.on_download:
            hook(filename)
        (self.repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (self.repo_dir / "refs" / (revision or "main")).write_text(self.commit)
        pointer = self.repo_dir / "snapshots" / self.commit / filename
        if os.path.exists(pointer):
            return str(pointer)
        data = self.files[filename]
        blob = self.repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if tqdm_class is not None:
            with tqdm_class(unit="B", unit_scale=True, total=len(data), initial=0, desc=filename) as bar:
                blob.write_bytes(data)
                bar.update(len(data))
        else:
            blob.write_bytes(data)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)  # a dangling link, as huggingface_hub would replace it
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        self.fetched.append(filename)
        return str(pointer)

    def cached_parts(self, names: tuple[str, ...]) -> list[str]:
        """Which of `names` the cache holds now (blob present)."""
        blobs = self.repo_dir / "blobs"
        return [n for n in names if (blobs / hashlib.sha256(self.files[n]).hexdigest()).exists()]
