"""Access to the Hugging Face Hub for `uniir download`: downloads, listings, errors.

Everything goes through ``huggingface_hub`` and its cache, so ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_TOKEN``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` work as users expect; nothing here
overrides them. Its errors become one-line `UniirError`s saying what is missing and how to
get it. Imported lazily: huggingface_hub pulls in an HTTP stack.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniir_cli.download.parts import ProgressCallback, ProgressEvent
from uniir_cli.errors import DataError, UniirError

log = logging.getLogger(__name__)

OFFLINE_HINT = "connect to the network and set HF_HUB_OFFLINE=0, or pass --from-dir PATH with a local clone of the dataset"
CACHE_HINT = "connect to the network and set HF_HUB_OFFLINE=0, or point HF_HUB_CACHE at a Hugging Face cache that has it"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS sha256, None for plain git files


def _hub_offline() -> bool:
    import huggingface_hub
    from huggingface_hub import constants

    checker = getattr(huggingface_hub, "is_offline_mode", None)
    return bool(checker()) if callable(checker) else bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The Hub cache huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _forwarding_tqdm(progress: ProgressCallback, stage: str, name: str) -> type:
    """A tqdm class for huggingface_hub that forwards byte counts to `progress` and draws nothing."""
    from tqdm.std import tqdm as std_tqdm

    class _Forward(std_tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._uniir_done = int(kwargs.get("initial") or 0)
            progress(ProgressEvent(stage, name, self._uniir_done, kwargs.get("total")))

        def update(self, n: float | None = 1) -> bool | None:
            self._uniir_done += int(n or 0)
            progress(ProgressEvent(stage, name, self._uniir_done, self.total))
            return None

    return _Forward


def _hf_errors(*names: str) -> tuple[type[BaseException], ...]:
    """huggingface_hub exception classes by name (they moved between modules across versions)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import utils as hf_utils

    found = (getattr(hf_errors, n, None) or getattr(hf_utils, n, None) for n in names)
    return tuple(c for c in found if isinstance(c, type))


def hub_error(exc: BaseException, what: str, repo: str, revision: str | None, hint: str = OFFLINE_HINT) -> UniirError:
    """A one-line `UniirError` for a huggingface_hub failure: what is missing and how to get it."""
    rev = revision or "main"
    if isinstance(exc, _hf_errors("GatedRepoError")):
        return DataError(f"{repo} is gated: accept its terms on the Hub and log in (HF_TOKEN or `hf auth login`), then retry")
    if isinstance(exc, _hf_errors("RepositoryNotFoundError")):
        return DataError(f"Hub repository {repo} not found or not accessible; check HF_ENDPOINT and your token (HF_TOKEN)")
    if isinstance(exc, _hf_errors("RevisionNotFoundError")):
        return DataError(f"revision {rev!r} not found in {repo}; check --revision")
    if isinstance(exc, _hf_errors("RemoteEntryNotFoundError")):
        return DataError(f"{what} does not exist in {repo} at revision {rev}; check --revision")
    if isinstance(exc, _hf_errors("LocalEntryNotFoundError", "OfflineModeIsEnabled")):
        why = "the Hub is switched off (HF_HUB_OFFLINE=1)" if _hub_offline() else "the Hub cannot be reached"
        return DataError(
            f"{what} ({repo}, revision {rev}) is not in the Hugging Face cache {hub_cache_dir()} and {why}; {hint}"
        )
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return DataError(f"Hub request for {what} ({repo}, revision {rev}) failed: {first}")


def hub_call(what: str, repo: str, revision: str | None, hint: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a huggingface_hub function, turning its errors into one-line `UniirError`s (`hint`: how to get the file)."""
    caught = _hf_errors("HfHubHTTPError", "EntryNotFoundError", "LocalEntryNotFoundError", "OfflineModeIsEnabled")
    try:
        return func(*args, **kwargs)
    except (*caught, ConnectionError) as exc:
        raise hub_error(exc, what, repo, revision, hint) from None


def hub_download(
    repo: str,
    filename: str,
    *,
    repo_type: str | None,
    revision: str | None,
    progress: ProgressCallback | None = None,
    hint: str = OFFLINE_HINT,
) -> Path:
    """`hf_hub_download` into the Hub cache (resumes partial downloads); errors -> UniirError."""
    from huggingface_hub import hf_hub_download

    kwargs: dict[str, Any] = {"repo_type": repo_type, "revision": revision}
    if progress is not None and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _forwarding_tqdm(progress, "download", filename)
    path = hub_call(filename, repo, revision, hint, hf_hub_download, repo, filename, **kwargs)
    return Path(path)


def cached_path(repo: str, filename: str, repo_type: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision, repo_type=repo_type)
    return Path(found) if isinstance(found, str) else None


def evict_cached(repo: str, filename: str, repo_type: str, path: Path) -> int:
    """Delete `filename` (found at `path`) from the Hub cache: its snapshot links and its blob.

    Deleting only the blob would leave dangling snapshot links behind; with both gone,
    `try_to_load_from_cache` finds nothing and `hf_hub_download` fetches the file again.
    Other files and revisions are untouched. Returns the bytes freed.
    """
    from huggingface_hub.file_download import repo_folder_name

    repo_dir = hub_cache_dir() / repo_folder_name(repo_id=repo, repo_type=repo_type)
    blob = Path(os.path.realpath(path))
    freed = 0
    for snapshot in (repo_dir / "snapshots").glob("*"):
        link = snapshot / filename
        if link.is_symlink() and Path(os.path.realpath(link)) == blob:
            link.unlink()
        elif link.is_file() and not link.is_symlink() and os.path.samefile(link, path):
            freed += link.stat().st_size  # a cache without symlinks keeps the data in the snapshot
            link.unlink()
    own_blob = repo_dir / "blobs" / blob.name
    if own_blob.is_symlink():  # a blob shared through huggingface_hub's store: only the link is ours
        log.warning("%s lives in a shared blob store (%s): its space is not freed", filename, blob)
        own_blob.unlink()
    elif own_blob.is_file() and own_blob.resolve() == blob:
        freed += own_blob.stat().st_size
        own_blob.unlink()
    log.info("deleted %s from the Hub cache (%d bytes)", filename, freed)
    return freed


def hub_listing(repo: str, repo_type: str, revision: str | None, paths: Sequence[str] | None = None) -> dict[str, RemoteFile] | None:
    """Files of a Hub repo with sizes and LFS SHA-256s, or None when offline or unreachable."""
    if _hub_offline():
        return None
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        if paths is None:
            entries = list(api.list_repo_tree(repo, recursive=True, revision=revision, repo_type=repo_type))
        else:
            entries = list(api.get_paths_info(repo, list(paths), revision=revision, repo_type=repo_type))
    except _hf_errors("RepositoryNotFoundError", "RevisionNotFoundError") as exc:
        raise hub_error(exc, repo, repo, revision) from None
    except Exception as exc:  # connection, proxy, timeout, HTTP 5xx: the HTTP stack's own classes vary
        log.warning("cannot list %s on the Hub (%s: %s); using the local cache and built-in checksums", repo, type(exc).__name__, exc)
        return None
    listing: dict[str, RemoteFile] = {}
    for entry in entries:
        size = getattr(entry, "size", None)
        if size is None:
            continue  # a folder
        lfs = getattr(entry, "lfs", None)  # a dict (subclass) with size, sha256, pointer_size
        listing[entry.path] = RemoteFile(entry.path, int(size), lfs.get("sha256") if lfs else None)
    return listing
