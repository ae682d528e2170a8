"""Free disk space for `uniir download`, checked before anything is written.

A download that runs out of space stops part way; `check_free_space` adds up what each
filesystem will receive (the Hub cache and --data-dir may share one) and refuses early, saying
how much is needed where. Used by the M-BEIR and the checkpoint downloads. What cannot be
known before (the size of a few image folders inside the archive) is guarded while writing
by `ensure_room`, which stops before a file would leave less than `EXTRACT_RESERVE` free.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from uniir_cli.errors import DataError

# Kept free while extracting: a full disk breaks more than this download (logs, other jobs).
EXTRACT_RESERVE = 1 << 30


class DiskSpaceError(DataError):
    """Not enough free disk space for what a download will write."""


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would, once created)."""
    return shutil.disk_usage(existing_ancestor(Path(path))).free


def folder_bytes(root: Path) -> int:
    """Bytes of the files under `root`, following symlinks (what a copy of it writes)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # a dangling link: copying it fails later, with its name
    return total


def ensure_room(folder: Path, nbytes: int, what: str, *, reserve: int = EXTRACT_RESERVE) -> None:
    """Raise `DiskSpaceError` unless `nbytes` plus `reserve` are free under `folder` (checked per file)."""
    free = free_bytes(folder)
    if free < nbytes + reserve:
        raise DiskSpaceError(
            f"not enough free disk space to write {what}: {human_bytes(free)} ({free:,} bytes) free on the filesystem "
            f"of {existing_ancestor(Path(folder))}, {human_bytes(nbytes + reserve)} ({nbytes + reserve:,} bytes) needed "
            f"(the file, {nbytes:,} bytes, plus {human_bytes(reserve)} kept free); free some space and run the same "
            "command again: it resumes where it stopped"
        )


def check_free_space(needs: Mapping[Path, tuple[int, str]]) -> None:
    """Raise `DiskSpaceError` when a filesystem has less free space than will be written there.

    `needs` maps a destination folder to (bytes, what); folders on one filesystem add up.
    """
    per_device: dict[int, tuple[Path, int, list[str]]] = {}
    for folder, (nbytes, what) in needs.items():
        if nbytes <= 0:
            continue
        anchor = existing_ancestor(Path(folder))
        dev = os.stat(anchor).st_dev
        where, total, whats = per_device.get(dev, (anchor, 0, []))
        per_device[dev] = (where, total + nbytes, [*whats, f"{what} {human_bytes(nbytes)}"])
    for where, total, whats in per_device.values():
        free = free_bytes(where)
        if total > free:
            raise DiskSpaceError(
                f"not enough free disk space on the filesystem of {where}: need {human_bytes(total)} "
                f"({'; '.join(whats)}), {human_bytes(free)} free; free some space, choose another --data-dir "
                "(or HF_HUB_CACHE for the download cache), or pass --no-disk-check"
            )
