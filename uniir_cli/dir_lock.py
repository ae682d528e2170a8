"""One writer per directory: an exclusive `flock` on a lock file that names its holder.

Run directories and data directories use it. The kernel drops an `flock` when its process
dies, so a killed command never leaves a stale lock behind. Re-entrant within one process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path


class DirLock:
    """The lock of one directory; `refusal(holder)` is the error raised while another process holds it."""

    def __init__(self, lock_file: Path, refusal: Callable[[str], Exception]) -> None:
        self.lock_file = lock_file
        self.refusal = refusal
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def hold(self, command: str) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_file, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise self.refusal(holder) from None
        since = dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({command}, since {since})\n")
        handle.flush()
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            handle.truncate(0)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
