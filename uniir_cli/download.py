"""Downloads of M-BEIR (`uniir download mbeir`): resumable, verified, safe.

Sources: the Hugging Face Hub (dataset ``TIGER-Lab/M-BEIR``) through ``huggingface_hub``,
which keeps its own cache and honours ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``; or a local clone or mirror (``from_dir``).
Metadata files (queries, pools, qrels, instructions) are hard-linked from the cache into the
data directory (copied across filesystems, or with ``copy``); the image parts are streamed
from wherever they are into ``mbeir_images/`` by `uniir_cli.download_archive`, never joined.

Resume: run the same call again. The Hub cache resumes partial downloads; present metadata
files are kept; verified parts are not hashed again and extracted images are not written
again (journal in ``<data_dir>/.uniir-download/``). Nothing here prints: progress goes to a
callback.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uniir_cli.data import benchmark as bm
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.download_archive import ExtractJournal, ExtractStats, extract_parts
from uniir_cli.download_disk import check_free_space, existing_ancestor
from uniir_cli.download_hub import (
    OFFLINE_HINT,
    RemoteFile,
    cached_path,
    hub_cache_dir,
    hub_call,
    hub_download,
    hub_listing,
)
from uniir_cli.download_parts import Part, ProgressCallback
from uniir_cli.download_selection import Selection, image_folder
from uniir_cli.errors import ConfigError, DataError, UniirError

log = logging.getLogger(__name__)

MBEIR_REPO = "TIGER-Lab/M-BEIR"
IMAGE_PARTS: tuple[str, ...] = tuple(f"mbeir_images.tar.gz.part-{i:02d}" for i in range(4))
# Published sizes and SHA-256 of the parts (spec section 1); used when the Hub's LFS metadata
# cannot be asked (offline, --from-dir). Part 03's exact size is not recorded (about 24.4 GB).
KNOWN_PARTS: dict[str, tuple[int | None, str]] = {
    "mbeir_images.tar.gz.part-00": (48_318_382_080, "e0afc85d691e151f1088b2593b46e215c6dfa791d3cf0cec8669974ca34c30ad"),
    "mbeir_images.tar.gz.part-01": (48_318_382_080, "3bbbf5b8d62f6cf12eef2c583c1417aa117b62fafc93176048f39cb9ffc0be88"),
    "mbeir_images.tar.gz.part-02": (48_318_382_080, "8f646c0c44aafc309273d7f30b16f6ccd6149c1ad557eb4ffc1a5843728f8390"),
    "mbeir_images.tar.gz.part-03": (None, "3d44987a8e7911a164e81c31fdcb68d09e692bb989686555779ae126526c4568"),
}
_PART_03_APPROX = 24_400_000_000
# Extracted bytes per archive byte: the images are JPEGs (gzip gains nothing) plus file-system
# block slack for millions of small files. An estimate for the free-disk check only.
IMAGE_EXPANSION = 1.05
METADATA_DIRS: tuple[str, ...] = MBeirLayout.REQUIRED_DIRS  # query, cand_pool, qrels, instructions
JOURNAL_DIR = ".uniir-download"
WHAT_CHOICES: tuple[str, ...] = ("metadata", "images", "all")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


# ---------------------------------------------------------------------------------------
# Placing files


def place_file(src: Path, dst: Path, *, copy: bool, fallback: str) -> str:
    """Put `src` at `dst`: hard link, else `fallback` ("copy" or "symlink"); returns what was done.

    A `dst` that is `src`, or has its size and mtime (an earlier copy), is kept as "present";
    anything else is replaced atomically.
    """
    src = src.resolve()
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if os.path.samefile(src, dst) or (a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)):
            return "present"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.uniir-tmp"
    tmp.unlink(missing_ok=True)
    how = "copied"
    if copy:
        shutil.copy2(src, tmp)
    else:
        try:
            os.link(src, tmp)
            how = "linked"
        except OSError:
            if fallback == "symlink":
                os.symlink(src, tmp)
                how = "symlinked"
            else:
                shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return how


def _is_lfs_pointer(path: Path) -> bool:
    try:
        if path.stat().st_size > 1024:
            return False
        with open(path, "rb") as handle:
            return handle.read(len(_LFS_POINTER)) == _LFS_POINTER
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# M-BEIR


@dataclass
class MbeirReport:
    """What `download_mbeir` did."""

    data_dir: Path
    source: str
    metadata: dict[str, str] = field(default_factory=dict)  # relative path -> linked/copied/symlinked/present
    missing: list[str] = field(default_factory=list)  # expected files the source did not have
    images: ExtractStats | None = None
    image_folders_linked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _walk(root: Path, selection: Selection) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in METADATA_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base, followlinks=True):
            for fname in files:
                path = Path(dirpath) / fname
                rel = path.relative_to(root).as_posix()
                if not fname.startswith(".") and selection.wants(rel):
                    found[rel] = path
    return dict(sorted(found.items()))


def _expected_part(name: str, listing: Mapping[str, RemoteFile] | None) -> tuple[int | None, str | None]:
    remote = (listing or {}).get(name)
    known_size, known_sha = KNOWN_PARTS.get(name, (None, None))
    if remote is not None:
        return remote.size, remote.sha256 or known_sha
    return known_size, known_sha


def _images_estimate(sizes: Iterable[int | None], journal_dir: Path) -> int:
    total = sum(s if s is not None else _PART_03_APPROX for s in sizes)
    done = ExtractJournal.load(journal_dir).bytes_written_total
    return max(0, int(total * IMAGE_EXPANSION) - done)


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
    progress: ProgressCallback | None = None,
) -> MbeirReport:
    """Fetch M-BEIR metadata and/or images into `data_dir` from the Hub or a local mirror.

    Re-running is cheap and resumes: cached downloads, present files, verified parts and
    extracted images are kept (see `uniir_cli.download_archive`). `force` re-verifies the
    parts and rewrites the images.
    """
    if what not in WHAT_CHOICES:
        raise ConfigError(f"unknown --what {what!r}: choose from {', '.join(WHAT_CHOICES)}")
    selection = Selection.parse(splits, datasets)
    data_dir = Path(data_dir).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} exists and is not a folder")
    journal_dir = data_dir / JOURNAL_DIR
    want_meta, want_images = what in ("metadata", "all"), what in ("images", "all")
    if from_dir is not None:
        return _from_mirror(Path(from_dir).expanduser(), data_dir, selection, want_meta, want_images, copy, check_disk, force, progress)

    report = MbeirReport(data_dir, f"Hugging Face Hub {MBEIR_REPO} (revision {revision or 'main'})")
    listing = hub_listing(MBEIR_REPO, "dataset", revision)
    if listing is None:
        report.notes.append(
            "the Hub was not asked (offline or unreachable): files come from the local Hugging Face cache, "
            "image parts are checked against the built-in SHA-256s of the main revision"
        )
    # Metadata: relative path -> local file (None: still to download) and its size.
    meta: dict[str, Path | None] = {}
    meta_sizes: dict[str, int] = {}
    to_download = 0
    if want_meta:
        if listing is not None:
            for rel in sorted(p for p in listing if selection.wants(p)):
                meta[rel] = cached_path(MBEIR_REPO, rel, "dataset", revision)
                meta_sizes[rel] = listing[rel].size or 0
                to_download += meta_sizes[rel] if meta[rel] is None else 0
        else:
            for rel, path in _offline_snapshot(selection, revision).items():
                meta[rel], meta_sizes[rel] = path, path.stat().st_size
        if not meta:
            raise DataError(f"no M-BEIR metadata files match the selection in {report.source}; check --splits/--datasets/--revision")
    expected_parts = [(name, *_expected_part(name, listing)) for name in IMAGE_PARTS] if want_images else []
    if listing is not None:
        to_download += sum(size or 0 for name, size, _ in expected_parts if cached_path(MBEIR_REPO, name, "dataset", revision) is None)
    if check_disk:
        cache = hub_cache_dir()
        linkable = not copy and _same_filesystem(cache, data_dir)
        images = _images_estimate([size for _, size, _ in expected_parts], journal_dir) if want_images else 0
        check_free_space({
            cache: (to_download, "downloads into the Hub cache"),
            data_dir: ((0 if linkable else sum(meta_sizes.values())) + images,
                       "files in --data-dir" + (" (images: estimate for the whole archive)" if images else "")),
        })

    for rel, local in meta.items():
        if local is None or listing is not None:  # online: let huggingface_hub check the cache is current
            local = hub_download(MBEIR_REPO, rel, repo_type="dataset", revision=revision, progress=progress)
        report.metadata[rel] = place_file(local, data_dir / rel, copy=copy, fallback="copy")
    if want_meta:
        report.missing = [f for f in selection.expected_files() if f not in report.metadata]
    if want_images:
        parts = [
            Part(name, hub_download(MBEIR_REPO, name, repo_type="dataset", revision=revision, progress=progress), sha, size)
            for name, size, sha in expected_parts
        ]
        report.images = extract_parts(
            parts, data_dir, folders=selection.image_folders(), journal_dir=journal_dir, progress=progress, force=force
        )
    return report


def _same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(existing_ancestor(a)).st_dev == os.stat(existing_ancestor(b)).st_dev


def _offline_snapshot(selection: Selection, revision: str | None) -> dict[str, Path]:
    """Metadata files of the cached snapshot, without network."""
    from huggingface_hub import snapshot_download

    folder = hub_call(
        "M-BEIR metadata", MBEIR_REPO, revision, OFFLINE_HINT, snapshot_download,
        MBEIR_REPO, repo_type="dataset", revision=revision, allow_patterns=selection.patterns(), local_files_only=True,
    )
    found = _walk(Path(folder), selection)
    if not found:
        raise DataError(
            f"the Hugging Face cache {hub_cache_dir()} has no M-BEIR metadata matching the selection "
            f"({MBEIR_REPO}, revision {revision or 'main'}); {OFFLINE_HINT}"
        )
    return found


def _from_mirror(
    mirror: Path,
    data_dir: Path,
    selection: Selection,
    want_meta: bool,
    want_images: bool,
    copy: bool,
    check_disk: bool,
    force: bool,
    progress: ProgressCallback | None,
) -> MbeirReport:
    """Use a local clone/mirror: verify its layout, link (or copy) metadata, extract its parts."""
    if not mirror.is_dir():
        raise DataError(f"--from-dir {mirror} is not a folder")
    report = MbeirReport(data_dir, f"local mirror {mirror}")
    same = data_dir.exists() and os.path.samefile(mirror, data_dir)
    journal_dir = data_dir / JOURNAL_DIR
    metadata: dict[str, Path] = {}
    if want_meta:
        missing_dirs = [d for d in METADATA_DIRS if not (mirror / d).is_dir()]
        if missing_dirs:
            raise DataError(
                f"--from-dir {mirror} does not look like an M-BEIR clone: folder {missing_dirs[0]}/ is missing "
                f"(expected {', '.join(d + '/' for d in METADATA_DIRS)})"
            )
        metadata = _walk(mirror, selection)
        pointers = [rel for rel, path in metadata.items() if _is_lfs_pointer(path)]
        if pointers:
            raise DataError(
                f"{mirror / pointers[0]} is a git-lfs pointer, not the data ({len(pointers)} such file(s)); "
                f"run `git lfs pull` in {mirror} first"
            )
    parts: list[Part] = []
    extracted = mirror / bm.IMAGES_DIR
    link_folders = False
    if want_images:
        present = [n for n in IMAGE_PARTS if (mirror / n).is_file()]
        if extracted.is_dir() and not same:
            link_folders = True  # an extracted mirror: link its folders, no need to read 169 GB again
        elif present:
            absent = [n for n in IMAGE_PARTS if n not in present]
            if absent:
                raise DataError(f"--from-dir {mirror} lacks image part {absent[0]} (has {', '.join(present)}); complete the mirror first")
            for name in IMAGE_PARTS:
                if _is_lfs_pointer(mirror / name):
                    raise DataError(f"{mirror / name} is a git-lfs pointer, not the data; run `git lfs pull --include='mbeir_images.tar.gz.part-*'` in {mirror}")
                size, sha = KNOWN_PARTS.get(name, (None, None))
                parts.append(Part(name, mirror / name, sha, size))
        elif not extracted.is_dir():
            raise DataError(
                f"--from-dir {mirror} has neither the image parts ({IMAGE_PARTS[0]}..{IMAGE_PARTS[-1][-2:]}) nor an "
                f"extracted {bm.IMAGES_DIR}/ folder; use --what metadata, or complete the mirror"
            )
    if check_disk:
        meta_bytes = sum(p.stat().st_size for p in metadata.values()) if copy and not same else 0
        image_bytes = _images_estimate([p.path.stat().st_size for p in parts], journal_dir) if parts else 0
        check_free_space({data_dir: (meta_bytes + image_bytes, "files in --data-dir")})
    data_dir.mkdir(parents=True, exist_ok=True)
    for rel, path in metadata.items():
        report.metadata[rel] = "present" if same else place_file(path, data_dir / rel, copy=copy, fallback="symlink")
    if want_meta:
        report.missing = [f for f in selection.expected_files() if f not in report.metadata]
    if parts:
        report.images = extract_parts(
            parts, data_dir, folders=selection.image_folders(), journal_dir=journal_dir, progress=progress, force=force
        )
    elif link_folders:
        report.image_folders_linked = _link_image_folders(extracted, data_dir / bm.IMAGES_DIR, selection, copy)
    return report


def _link_image_folders(src_root: Path, dst_root: Path, selection: Selection, copy: bool) -> list[str]:
    """An already extracted mirror: symlink (or copy) its image folders into place."""
    wanted = selection.image_folders()
    done = []
    dst_root.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in src_root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name not in wanted:
            continue
        target = dst_root / folder.name
        if target.exists() or target.is_symlink():
            done.append(f"{folder.name} (present)")
            continue
        if copy:
            shutil.copytree(folder, target, symlinks=False)
        else:
            target.symlink_to(folder.resolve(), target_is_directory=True)
        done.append(folder.name)
    return done


# ---------------------------------------------------------------------------------------
# What is present


@dataclass(frozen=True)
class DatasetPresence:
    slug: str
    name: str
    test_pairs: tuple[int, int]  # (pairs with query, pool and qrels files, pairs)
    val_pairs: tuple[int, int]
    train: bool
    images: bool


def inventory(data_dir: Path) -> tuple[list[DatasetPresence], dict[str, bool]]:
    """Which M-BEIR files exist under `data_dir`, per dataset and for the shared files."""
    root = Path(data_dir)

    def pairs(slug: str, split: str) -> tuple[int, int]:
        own = [p for p in bm.EVAL_PAIRS if p.dataset.slug == slug]
        full = [p for p in own if all((root / f).is_file() for f in (p.query_file(split), p.pool_file(split), p.qrels_file(split)))]
        return len(full), len(own)

    rows = [
        DatasetPresence(
            d.slug, d.name, pairs(d.slug, "test"), pairs(d.slug, "val"),
            (root / bm.train_query_file(d)).is_file(), (root / bm.IMAGES_DIR / image_folder(d.slug)).is_dir(),
        )
        for d in bm.DATASETS
    ]
    shared = {
        bm.INSTRUCTIONS_FILE: (root / bm.INSTRUCTIONS_FILE).is_file(),
        bm.UNION_TRAIN_QUERIES: (root / bm.UNION_TRAIN_QUERIES).is_file(),
        **{bm.union_pool_file(s): (root / bm.union_pool_file(s)).is_file() for s in bm.SPLITS},
    }
    return rows, shared


def run_validation(data_dir: Path, splits: Sequence[str]) -> tuple[Any | None, str | None]:
    """The `uniir validate` checks in quick mode: (report, None), or (None, why they did not run)."""
    try:
        from uniir_cli.data.validation import validate_data
    except ImportError as exc:
        return None, f"validation skipped: uniir_cli.data.validation is not available ({exc})"
    try:
        return validate_data(data_dir, splits=splits, quick=True), None
    except UniirError as exc:
        return None, f"validation could not run: {exc}"
