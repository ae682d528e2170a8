"""A folder's whole content as a dict, to assert that an operation left it exactly as it was
(or as a reference): every file's bytes, every link's target, every folder."""

from __future__ import annotations

import os
from pathlib import Path


def file_tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """relative path -> file bytes / ('link', target) / 'dir'; links are not followed and
    folders named in `skip` are left out."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes()
    return out
