"""M-BEIR's files for `uniir download mbeir`: the image parts, their published sizes and
hashes, the metadata folders, what a run reports, and how files are put into --data-dir.

Shared by the Hub path (`uniir_cli.download.mbeir`) and the local mirror path
(`uniir_cli.download.mirror`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uniir_cli.data.layout import MBeirLayout
from uniir_cli.download.archive import ExtractJournal, ExtractStats
from uniir_cli.download.disk import EXTRACT_RESERVE, existing_ancestor
from uniir_cli.download.selection import Selection
from uniir_cli.errors import DataError

MBEIR_REPO = "TIGER-Lab/M-BEIR"
IMAGE_PARTS: tuple[str, ...] = tuple(f"mbeir_images.tar.gz.part-{i:02d}" for i in range(4))
# Published sizes and SHA-256 of the parts of the main revision (spec section 1); used when
# the Hub's LFS metadata cannot be asked (offline, --from-dir). Part 03's exact size is not
# recorded (about 24.4 GB).
KNOWN_PARTS: dict[str, tuple[int | None, str]] = {
    "mbeir_images.tar.gz.part-00": (48_318_382_080, "e0afc85d691e151f1088b2593b46e215c6dfa791d3cf0cec8669974ca34c30ad"),
    "mbeir_images.tar.gz.part-01": (48_318_382_080, "3bbbf5b8d62f6cf12eef2c583c1417aa117b62fafc93176048f39cb9ffc0be88"),
    "mbeir_images.tar.gz.part-02": (48_318_382_080, "8f646c0c44aafc309273d7f30b16f6ccd6149c1ad557eb4ffc1a5843728f8390"),
    "mbeir_images.tar.gz.part-03": (None, "3d44987a8e7911a164e81c31fdcb68d09e692bb989686555779ae126526c4568"),
}
PART_SIZE_APPROX = 24_400_000_000  # for a part whose size is not known (estimates only)
# Extracted bytes per archive byte: the images are JPEGs (gzip gains nothing) plus file-system
# block slack for millions of small files. An estimate for the free-disk check only.
IMAGE_EXPANSION = 1.05
METADATA_DIRS: tuple[str, ...] = MBeirLayout.REQUIRED_DIRS  # query, cand_pool, qrels, instructions
JOURNAL_DIR = ".uniir-download"
WHAT_CHOICES: tuple[str, ...] = ("metadata", "images", "all")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


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


def is_lfs_pointer(path: Path) -> bool:
    """A git-lfs pointer file (a clone without `git lfs pull`) instead of the data."""
    try:
        if path.stat().st_size > 1024:
            return False
        with open(path, "rb") as handle:
            return handle.read(len(_LFS_POINTER)) == _LFS_POINTER
    except OSError:
        return False


def walk_metadata(root: Path, selection: Selection) -> dict[str, Path]:
    """relative path -> file, for the metadata files under `root` that `selection` wants."""
    found: dict[str, Path] = {}
    for top in METADATA_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        seen: set[str] = set()
        for dirpath, _dirs, files in os.walk(base, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a linked folder that contains itself
                raise DataError(f"{dirpath} is a link back into {real}: a folder loop; remove the link")
            seen.add(real)
            for fname in files:
                path = Path(dirpath) / fname
                rel = path.relative_to(root).as_posix()
                if not fname.startswith(".") and selection.wants(rel):
                    found[rel] = path
    return dict(sorted(found.items()))


def known_part(name: str, revision: str | None) -> tuple[int | None, str | None]:
    """The built-in (size, SHA-256) of a part; unknown for revisions other than main."""
    if revision not in (None, "main"):
        return None, None
    return KNOWN_PARTS.get(name, (None, None))


def images_estimate(sizes: Iterable[int | None], journal_dir: Path, selection: Selection) -> int:
    """Bytes the images will add to --data-dir, for the up-front check.

    Only the whole archive has a known size; with --datasets the folders' sizes are unknown,
    so 0 here and the extraction guards each file instead.
    """
    if selection.image_folders() is not None:
        return 0
    total = sum(s if s is not None else PART_SIZE_APPROX for s in sizes)
    done = ExtractJournal.load(journal_dir).bytes_written_total
    return max(0, int(total * IMAGE_EXPANSION) - done)


def images_need_label(selection: Selection) -> str:
    """How the image bytes of the up-front check were estimated (for its error message)."""
    return " (images: estimate for the whole archive)" if selection.image_folders() is None else ""


SELECTED_FOLDERS_NOTE = (
    "the size of the selected image folders is not published: free space is checked before each file "
    f"is written, keeping {EXTRACT_RESERVE >> 30} GiB free (a run stopped for space resumes where it stopped)"
)


def same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(existing_ancestor(a)).st_dev == os.stat(existing_ancestor(b)).st_dev
