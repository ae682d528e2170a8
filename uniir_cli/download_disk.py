"""Free disk space for `uniir download`, checked before anything is written.

A download that runs out of space stops part way; `check_free_space` adds up what each
filesystem will receive (the Hub cache and --data-dir may share one) and refuses early, saying
how much is needed where. Used by the M-BEIR and the checkpoint downloads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from uniir_cli.errors import DataError


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
        free = shutil.disk_usage(where).free
        if total > free:
            raise DiskSpaceError(
                f"not enough free disk space on the filesystem of {where}: need {human_bytes(total)} "
                f"({'; '.join(whats)}), {human_bytes(free)} free; free some space, choose another --data-dir "
                "(or HF_HUB_CACHE for the download cache), or pass --no-disk-check"
            )
