"""Atomic file writes: write to a temporary sibling, fsync, rename.

A killed process therefore never leaves a file that looks finished; readers see either the
old content or the new content. What it does leave, its temporary files, carry the writer's
host and pid in their names, so `sweep_orphans` can remove them on the next run. `remove`
takes away a file, link or folder that a step replaces or undoes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`.

    The temporary name keeps the suffix of `path` (libraries such as numpy append
    suffixes when they are missing).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.{_WRITER}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


_HOST = socket.gethostname().replace(".", "_").replace("/", "_")
_WRITER = f"{_HOST}-{os.getpid()}"
# .<stem>.<host>-<pid>.<8 random chars>.tmp<suffix>, as `atomic_path` names its files
_TEMP_NAME = re.compile(r"^\..*\.(?P<host>[^./]+)-(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp(\.[^/]*)?$")
ORPHAN_AGE_S = 3600  # a temporary file of another host counts as orphaned after this long


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(root: Path) -> int:
    """Remove the temporary files under `root` that killed writers left: those of a process of
    this host that no longer runs, and those of other hosts older than `ORPHAN_AGE_S` (a
    multi-node run shares the folder). Returns how many were removed."""
    removed = 0
    now = time.time()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            found = _TEMP_NAME.match(name)
            if found is None:
                continue
            path = Path(dirpath) / name
            if found["host"] == _HOST:
                orphaned = int(found["pid"]) != os.getpid() and not _alive(int(found["pid"]))
            else:
                try:
                    orphaned = now - path.stat().st_mtime > ORPHAN_AGE_S
                except FileNotFoundError:
                    continue
            if orphaned:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove(path: Path) -> None:
    """`path` gone, whether a file, a link (removed, not followed) or a folder; nothing when absent."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
