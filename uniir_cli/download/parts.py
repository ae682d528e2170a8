"""The parts of a multi-part ``.tar.gz``: verified, then read as one decompressed stream.

M-BEIR ships its images as ``mbeir_images.tar.gz.part-00..03`` (about 169 GB): byte slices of
one gzip stream. Joining them first would need the disk twice, so the parts are read back to
back through one file-like object (`ConcatReader`) and decompressed by `GunzipReader` (zlib in
gzip mode, so each gzip member's CRC-32 and length are checked, which tarfile's own ``r|gz``
never does). `verify_parts` checks size and SHA-256 first; a verified part is recorded in
``<journal_dir>/parts.json`` with its size and mtime and is not hashed again. With `LazyParts`
(``--low-disk``) a part is fetched only when the stream reaches it and released once the
stream has read past it. Extracting the stream is `uniir_cli.download.archive`'s job.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # read size for hashing, copying and the tar stream
JOURNAL_VERSION = 1


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: `done` of `total` bytes of file `name` in `stage`.

    Stages: ``download``, ``verify``, ``extract``. The library never prints; the
    command turns these into progress bars. A callback may raise to abort (tests use this to
    simulate a crash).
    """

    stage: str
    name: str
    done: int
    total: int | None


ProgressCallback = Callable[[ProgressEvent], None]


def _no_progress(event: ProgressEvent) -> None:
    return None


class PartHashMismatch(DataError):
    """A part's SHA-256 (or size) differs from the published value."""


@dataclass(frozen=True)
class Part:
    """One slice of the archive: its name, where it is, and what it should be."""

    name: str
    path: Path | None  # None: not on disk yet, fetched by `LazyParts` when the stream reaches it
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class LazyParts:
    """Parts fetched one at a time (``--low-disk``): peak disk is one part, not all of them.

    `fetch` puts a part on disk and returns its path (it is verified before any byte is used);
    `release` is called with that path once the stream has read past the part's end.
    """

    fetch: Callable[[Part], Path]
    release: Callable[[Part, Path], None]


# ---------------------------------------------------------------------------------------
# Verification


def sha256_file(path: Path, *, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of a file, reporting cumulative bytes read."""
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None:
                on_bytes(done)
    return digest.hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    """A journal file, or {} when absent or unreadable (a journal is only an optimisation)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable journal %s (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) and data.get("version") == JOURNAL_VERSION else {}


def verify_parts(
    parts: Sequence[Part],
    journal_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> int:
    """Check every part's size and SHA-256; return how many parts were hashed now.

    A part already verified (same size and mtime recorded in ``parts.json``) is not hashed
    again unless `force`. A part with no known hash is hashed and its hash recorded.
    """
    report = progress or _no_progress
    journal_path = journal_dir / "parts.json"
    journal = read_json(journal_path)
    known: dict[str, Any] = dict(journal.get("parts", {}))
    hashed = 0
    for part in parts:
        if part.path is None:
            raise DataError(f"archive part {part.name} is not on disk yet; fetch it before verifying it")
        try:
            stat = part.path.stat()
        except FileNotFoundError:
            raise DataError(f"archive part {part.name} not found at {part.path}; download it again") from None
        if part.size is not None and stat.st_size != part.size:
            raise PartHashMismatch(
                f"archive part {part.name} ({part.path}) is {stat.st_size:,} bytes, expected {part.size:,}: "
                "the download or copy is incomplete or wrong; delete it and download it again"
            )
        entry = known.get(part.name)
        if (
            not force
            and isinstance(entry, dict)
            and entry.get("path") == str(part.path)
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and (part.sha256 is None or entry.get("sha256") == part.sha256)
        ):
            log.debug("part %s already verified", part.name)
            report(ProgressEvent("verify", part.name, stat.st_size, stat.st_size))
            continue
        actual = sha256_file(
            part.path, on_bytes=lambda n, name=part.name, total=stat.st_size: report(ProgressEvent("verify", name, n, total))
        )
        hashed += 1
        if part.sha256 is not None and actual != part.sha256.lower():
            raise PartHashMismatch(
                f"archive part {part.name} ({part.path}) has SHA-256 {actual}, expected {part.sha256}: "
                "the file is corrupt or from another revision; delete it and download it again"
            )
        if part.sha256 is None:
            log.warning("no published SHA-256 for %s; recorded its hash %s without checking", part.name, actual)
        known[part.name] = {"path": str(part.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": actual}
        atomic.write_json(journal_path, {"version": JOURNAL_VERSION, "parts": known})
    return hashed


# ---------------------------------------------------------------------------------------
# One stream over all parts


class ConcatReader(io.RawIOBase):
    """The parts, read back to back as one byte stream; reports bytes read per part.

    `open_part` gives the path to read for a part when the stream reaches it (default: its
    path); `finished` is called with that path once the part has been read to its end.
    """

    def __init__(
        self,
        parts: Sequence[Part],
        progress: ProgressCallback | None = None,
        *,
        open_part: Callable[[Part], Path] | None = None,
        finished: Callable[[Part, Path], None] | None = None,
    ) -> None:
        super().__init__()
        self._parts = list(parts)
        self._report = progress or _no_progress
        self._open_part = open_part or _own_path
        self._finished = finished
        self._index = 0
        self._handle: io.BufferedReader | None = None
        self._path: Path | None = None
        self._done = 0
        self._total: int | None = None

    @property
    def current_part(self) -> str:
        """Name of the part being read (the last one once the stream is exhausted)."""
        return self._parts[min(self._index, len(self._parts) - 1)].name if self._parts else "?"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._index < len(self._parts):
            part = self._parts[self._index]
            if self._handle is None:
                self._path = self._open_part(part)
                self._handle = open(self._path, "rb")
                self._done = 0
                self._total = os.fstat(self._handle.fileno()).st_size
            count = self._handle.readinto(view)
            if count:
                self._done += count
                self._report(ProgressEvent("extract", part.name, self._done, self._total))
                return count
            self._handle.close()
            self._handle = None
            if self._finished is not None and self._path is not None:
                self._finished(part, self._path)
            self._index += 1
        return 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def _own_path(part: Part) -> Path:
    if part.path is None:
        raise DataError(f"archive part {part.name} is not on disk; download it first")
    return part.path


class GunzipReader(io.RawIOBase):
    """Decompresses a gzip stream read from `raw`, checking every member's CRC-32 and length.

    tarfile's own ``r|gz`` reads raw deflate and never checks the gzip trailer, so a corrupt
    or truncated archive can go unnoticed; zlib's gzip mode checks it. Handles multi-member
    streams and zero padding between members, as the gzip module does.
    """

    _OUT_MAX = 4 * CHUNK  # bound the output of one decompress call (memory)

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        while True:
            z = self._z
            if z.unconsumed_tail:
                out = z.decompress(z.unconsumed_tail, self._OUT_MAX)
            elif z.eof:  # one member done: another may follow
                rest = z.unused_data.lstrip(b"\0")
                while not rest:
                    chunk = self._raw.read(CHUNK)
                    if not chunk:
                        return b""  # clean end after a complete member
                    rest = chunk.lstrip(b"\0")
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = self._z.decompress(rest, self._OUT_MAX)
            else:
                chunk = self._raw.read(CHUNK)
                if not chunk:
                    raise EOFError("the compressed stream ends before its end marker (truncated)")
                out = z.decompress(chunk, self._OUT_MAX)
            if out:
                return out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= len(self._pending):
            self._pending, self._pos = self._more(), 0
            if not self._pending:
                return 0
        count = min(len(view), len(self._pending) - self._pos)
        view[:count] = self._pending[self._pos : self._pos + count]
        self._pos += count
        return count

    def drain(self) -> None:
        """Read to the end, so the trailers (CRC-32, length) after the tar data are checked."""
        self._pending, self._pos = b"", 0
        while self._more():
            pass
