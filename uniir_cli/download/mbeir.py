"""Downloads of M-BEIR (`uniir download mbeir`): resumable, verified, safe.

Sources: the Hugging Face Hub (dataset ``TIGER-Lab/M-BEIR``) through ``huggingface_hub``,
which keeps its own cache and honours ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``; or a local clone or mirror (``from_dir``,
`uniir_cli.download.mirror`). Metadata files (queries, pools, qrels, instructions) are
hard-linked from the cache into the data directory (copied across filesystems, or with
``copy``); the image parts are streamed from wherever they are into ``mbeir_images/`` by
`uniir_cli.download.archive`, never joined.

Disk: by default the parts stay in the Hub cache (169 GB) next to the images. With
``low_disk`` each part is downloaded only when the stream reaches it, verified, and deleted
from the cache once the stream has read past it: the peak is one part plus the images.

Resume: run the same call again. The Hub cache resumes partial downloads; present metadata
files are kept; verified parts are not hashed again and extracted images are not written
again (journal in ``<data_dir>/.uniir-download/``). A resumed ``low_disk`` run downloads the
parts before the one it stopped in again (a gzip stream cannot be entered in the middle).
Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from uniir_cli import atomic
from uniir_cli.dir_lock import DirLock
from uniir_cli.download.archive import extract_parts
from uniir_cli.download.disk import EXTRACT_RESERVE, check_free_space
from uniir_cli.download.files import (
    IMAGE_PARTS,
    JOURNAL_DIR,
    MBEIR_REPO,
    SELECTED_FOLDERS_NOTE,
    WHAT_CHOICES,
    MbeirReport,
    images_estimate,
    images_need_label,
    known_part,
    place_file,
    same_filesystem,
    walk_metadata,
)
from uniir_cli.download.hub import (
    OFFLINE_HINT,
    RemoteFile,
    cached_path,
    evict_cached,
    hub_cache_dir,
    hub_call,
    hub_download,
    hub_listing,
)
from uniir_cli.download.mirror import from_mirror
from uniir_cli.download.parts import LazyParts, Part, ProgressCallback
from uniir_cli.download.selection import Selection
from uniir_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PartPlan:
    """An image part to extract: what it should be and where the cache has it (None: to download)."""

    name: str
    size: int | None
    sha256: str | None
    cached: Path | None

    def disk_size(self) -> int | None:
        """Its size on disk: the expected one, else that of the cached file."""
        return self.size if self.size is not None or self.cached is None else self.cached.stat().st_size


def download_mbeir(
    data_dir: Path,
    *,
    what: str = "all",
    splits: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    revision: str | None = None,
    from_dir: Path | None = None,
    copy: bool = False,
    check_disk: bool = True,
    force: bool = False,
    low_disk: bool = False,
    progress: ProgressCallback | None = None,
) -> MbeirReport:
    """Fetch M-BEIR metadata and/or images into `data_dir` from the Hub or a local mirror.

    Re-running is cheap and resumes: cached downloads, present files, verified parts and
    extracted images are kept (see `uniir_cli.download.archive`). `force` re-verifies the
    parts and rewrites the images. `low_disk` keeps at most one part in the Hub cache.
    """
    if what not in WHAT_CHOICES:
        raise ConfigError(f"unknown --what {what!r}: choose from {', '.join(WHAT_CHOICES)}")
    selection = Selection.parse(splits, datasets)
    data_dir = Path(data_dir).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} exists and is not a folder")
    want_meta, want_images = what in ("metadata", "all"), what in ("images", "all")
    if from_dir is not None and low_disk:
        raise ConfigError("--low-disk applies to Hub downloads: with --from-dir the parts are already on disk and are never deleted")
    with data_dir_lock(data_dir).hold("download mbeir"):
        atomic.sweep_orphans(data_dir / JOURNAL_DIR)  # what a killed download left
        if from_dir is not None:
            return from_mirror(
                Path(from_dir).expanduser(), data_dir, selection, want_meta=want_meta, want_images=want_images,
                copy=copy, check_disk=check_disk, force=force, progress=progress,
            )
        return _from_hub(data_dir, selection, want_meta, want_images, revision=revision, copy=copy,
                         check_disk=check_disk, force=force, low_disk=low_disk, progress=progress)


def data_dir_lock(data_dir: Path) -> DirLock:
    """The one-writer lock of a data directory (two downloads into one tree would race)."""
    return DirLock(data_dir / JOURNAL_DIR / "lock", lambda holder: DataError(
        f"data directory {data_dir} is being written by {holder}; wait for it to finish, then rerun "
        "(a rerun keeps what is complete and repairs the rest)"
    ))


def _from_hub(
    data_dir: Path,
    selection: Selection,
    want_meta: bool,
    want_images: bool,
    *,
    revision: str | None,
    copy: bool,
    check_disk: bool,
    force: bool,
    low_disk: bool,
    progress: ProgressCallback | None,
) -> MbeirReport:
    report = MbeirReport(data_dir, f"Hugging Face Hub {MBEIR_REPO} (revision {revision or 'main'})")
    listing = hub_listing(MBEIR_REPO, "dataset", revision)
    meta, meta_sizes = _metadata_plan(selection, revision, listing) if want_meta else ({}, {})
    if want_meta and not meta:
        raise DataError(f"no M-BEIR metadata files match the selection in {report.source}; check --splits/--datasets/--revision")
    plans = [_part_plan(name, listing, revision) for name in IMAGE_PARTS] if want_images else []
    _add_notes(report, listing, revision, plans, selection)
    if check_disk:
        _check_disk(data_dir, selection, listing, meta, meta_sizes, plans, copy=copy, low_disk=low_disk)

    for rel, local in meta.items():
        if local is None or listing is not None:  # online: let huggingface_hub check the cache is current
            local = hub_download(MBEIR_REPO, rel, repo_type="dataset", revision=revision, progress=progress)
        report.metadata[rel] = place_file(local, data_dir / rel, copy=copy, fallback="copy")
    if want_meta:
        report.missing = [f for f in selection.expected_files() if f not in report.metadata]
    if want_images:
        parts, lazy = _image_parts(plans, revision, progress, low_disk)
        report.images = extract_parts(
            parts, data_dir, folders=selection.image_folders(), journal_dir=data_dir / JOURNAL_DIR, progress=progress,
            force=force, lazy=lazy, reserve=EXTRACT_RESERVE if check_disk else None,
        )
    return report


def _metadata_plan(
    selection: Selection, revision: str | None, listing: Mapping[str, RemoteFile] | None
) -> tuple[dict[str, Path | None], dict[str, int]]:
    """relative path -> cached file (None: still to download), and each file's size."""
    meta: dict[str, Path | None] = {}
    sizes: dict[str, int] = {}
    if listing is not None:
        for rel in sorted(p for p in listing if selection.wants(p)):
            meta[rel] = cached_path(MBEIR_REPO, rel, "dataset", revision)
            sizes[rel] = listing[rel].size or 0
    else:
        for rel, path in _offline_snapshot(selection, revision).items():
            meta[rel], sizes[rel] = path, path.stat().st_size
    return meta, sizes


def _part_plan(name: str, listing: Mapping[str, RemoteFile] | None, revision: str | None) -> _PartPlan:
    """Expected size and SHA-256: the Hub's LFS metadata, else the built-in table (main only)."""
    remote = (listing or {}).get(name)
    known_size, known_sha = known_part(name, revision)
    size, sha = (remote.size, remote.sha256 or known_sha) if remote is not None else (known_size, known_sha)
    return _PartPlan(name, size, sha, cached_path(MBEIR_REPO, name, "dataset", revision))


def _add_notes(
    report: MbeirReport, listing: Mapping[str, RemoteFile] | None, revision: str | None, plans: list[_PartPlan], selection: Selection
) -> None:
    if listing is None:
        report.notes.append("the Hub was not asked (offline or unreachable): files come from the local Hugging Face cache")
        if plans and revision not in (None, "main"):
            report.notes.append(
                f"image parts of revision {revision}: sizes and SHA-256s unknown offline (the built-in ones are main's), "
                "so they are not checked; their hashes are recorded in .uniir-download/parts.json"
            )
        elif plans:
            report.notes.append("image parts are checked against the built-in SHA-256s of the main revision")
    if plans and selection.image_folders() is not None:
        report.notes.append(SELECTED_FOLDERS_NOTE)


def _check_disk(
    data_dir: Path,
    selection: Selection,
    listing: Mapping[str, RemoteFile] | None,
    meta: Mapping[str, Path | None],
    meta_sizes: Mapping[str, int],
    plans: list[_PartPlan],
    *,
    copy: bool,
    low_disk: bool,
) -> None:
    """Refuse early when the Hub cache or --data-dir lacks the room for what will be written there."""
    cache = hub_cache_dir()
    new_meta = sum(meta_sizes[rel] for rel, path in meta.items() if path is None) if listing is not None else 0
    new_parts = [p.size or 0 for p in plans if p.cached is None] if listing is not None else []
    # --low-disk: one part in the cache at a time (the largest still to download).
    parts_bytes = max(new_parts, default=0) if low_disk else sum(new_parts)
    linkable = not copy and same_filesystem(cache, data_dir)
    images = images_estimate([p.disk_size() for p in plans], data_dir / JOURNAL_DIR, selection) if plans else 0
    part_what = "the largest image part still to download (--low-disk: one at a time)" if low_disk else "image parts"
    check_free_space({
        cache: (new_meta + parts_bytes, f"downloads into the Hub cache (metadata, {part_what})" if parts_bytes else "downloads into the Hub cache"),
        data_dir: ((0 if linkable else sum(meta_sizes.values())) + images, "files in --data-dir" + (images_need_label(selection) if images else "")),
    })


def _image_parts(
    plans: list[_PartPlan], revision: str | None, progress: ProgressCallback | None, low_disk: bool
) -> tuple[list[Part], LazyParts | None]:
    """The parts to extract: all downloaded now, or (`low_disk`) fetched and deleted one by one."""

    def fetch(part: Part) -> Path:
        return hub_download(MBEIR_REPO, part.name, repo_type="dataset", revision=revision, progress=progress)

    parts = [Part(p.name, None, p.sha256, p.size) for p in plans]
    if not low_disk:
        return [replace(part, path=fetch(part)) for part in parts], None

    def release(part: Part, path: Path) -> None:
        evict_cached(MBEIR_REPO, part.name, "dataset", path)

    return parts, LazyParts(fetch, release)


def _offline_snapshot(selection: Selection, revision: str | None) -> dict[str, Path]:
    """Metadata files of the cached snapshot, without network."""
    from huggingface_hub import snapshot_download

    folder = hub_call(
        "M-BEIR metadata", MBEIR_REPO, revision, OFFLINE_HINT, snapshot_download,
        MBEIR_REPO, repo_type="dataset", revision=revision, allow_patterns=selection.patterns(), local_files_only=True,
    )
    found = walk_metadata(Path(folder), selection)
    if not found:
        raise DataError(
            f"the Hugging Face cache {hub_cache_dir()} has no M-BEIR metadata matching the selection "
            f"({MBEIR_REPO}, revision {revision or 'main'}); {OFFLINE_HINT}"
        )
    return found
