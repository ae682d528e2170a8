"""Streamed, verified, resumable and safe extraction of a multi-part ``.tar.gz``.

M-BEIR ships its images as ``mbeir_images.tar.gz.part-00..03`` (about 169 GB): byte slices of
one gzip stream. Joining them first would need the disk twice, so the parts are read back to
back through one file-like object (`ConcatReader`), decompressed by `GunzipReader` (zlib in
gzip mode, so each gzip member's CRC-32 and length are checked, which tarfile's own ``r|gz``
never does) into one streaming tar reader, and every member is written straight to its place.

Guarantees (what "resume" means here):

* Parts are verified (size, SHA-256) *before* anything is extracted from them; a verified part
  is recorded in ``<journal_dir>/parts.json`` with its size and mtime and is not hashed again.
* Every file is written to a hidden temporary sibling and renamed when complete, so a file
  that exists under its own name is complete (after a process kill; after a power failure a
  size check still catches truncated files). A resumed run skips every file whose size equals
  the tar member's size, so completed files are never written twice.
* A gzip stream cannot be entered in the middle, so a resumed run decompresses the archive
  again from the start up to where it stopped (CPU and disk reads, no writes, no download).
* ``<journal_dir>/extract.json`` records how far the stream got and, at the end, which image
  folders are complete; a finished extraction is not read again.

Safety: member names that are absolute or contain ``..``, device files, FIFOs and links that
point outside the destination are refused, naming the member (Python's ``data`` tar filter
plus own checks; writes never go through a symlinked parent that leaves the destination).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import posixpath
import shutil
import stat as stat_mod
import tarfile
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # read size for hashing, copying and the tar stream
JOURNAL_VERSION = 1
_TMP_SUFFIX = ".uniir-tmp"
_CHECKPOINT_SECONDS = 2.0
_CHECKPOINT_MEMBERS = 2000
# Longer names are refused: path resolution that gives up on very long paths has been used to
# slip links past tar filters; M-BEIR's names are short.
_MAX_NAME = 1024


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


class ArchiveError(DataError):
    """The archive is corrupt, truncated, or contains a member that is refused."""


class PartHashMismatch(DataError):
    """A part's SHA-256 (or size) differs from the published value."""


@dataclass(frozen=True)
class Part:
    """One slice of the archive: its name, where it is, and what it should be."""

    name: str
    path: Path
    sha256: str | None = None
    size: int | None = None


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


def _read_json(path: Path) -> dict[str, Any]:
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
    journal = _read_json(journal_path)
    known: dict[str, Any] = dict(journal.get("parts", {}))
    hashed = 0
    for part in parts:
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
    """The parts, read back to back as one byte stream; reports bytes read per part."""

    def __init__(self, parts: Sequence[Part], progress: ProgressCallback | None = None) -> None:
        super().__init__()
        self._parts = list(parts)
        self._report = progress or _no_progress
        self._index = 0
        self._handle: io.BufferedReader | None = None
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
            if self._handle is None:
                part = self._parts[self._index]
                self._handle = open(part.path, "rb")
                self._done = 0
                self._total = os.fstat(self._handle.fileno()).st_size
            count = self._handle.readinto(view)
            if count:
                self._done += count
                self._report(ProgressEvent("extract", self._parts[self._index].name, self._done, self._total))
                return count
            self._handle.close()
            self._handle = None
            self._index += 1
        return 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


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


# ---------------------------------------------------------------------------------------
# Extraction


@dataclass
class ExtractStats:
    """What one extraction run did (for the summary and for tests of resume)."""

    members: int = 0  # tar members read from the stream
    written: int = 0  # regular files written now
    skipped_existing: int = 0  # complete files already present (resume)
    skipped_unselected: int = 0  # members outside the selected folders
    directories: int = 0
    links: int = 0
    bytes_written: int = 0
    parts_hashed: int = 0
    already_complete: bool = False  # the journal says this selection was finished before


def safe_member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative name; refuses absolute paths and `..` components."""
    name = member.name.replace("\\", "/")
    if len(name) > _MAX_NAME or len(member.linkname) > _MAX_NAME:
        raise ArchiveError(f"refusing archive member {member.name[:80]!r}...: name or link target longer than {_MAX_NAME} characters")
    if name.startswith("/") or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"refusing archive member {member.name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"refusing archive member {member.name!r}: '..' path component")
    if not parts:
        return ""
    return "/".join(parts)


def _filtered(member: tarfile.TarInfo, dest: Path) -> tarfile.TarInfo:
    """Apply Python's `data` filter (links out of `dest`, special files), naming the member."""
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "device file" if (member.ischr() or member.isblk()) else "FIFO"
        raise ArchiveError(f"refusing archive member {member.name!r}: {kind}")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"refusing archive member {member.name!r}: unsupported member type {member.type!r}")
    try:
        return tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        reason = {
            tarfile.AbsoluteLinkError: "link to an absolute path",
            tarfile.LinkOutsideDestinationError: "link pointing outside the destination",
            tarfile.OutsideDestinationError: "path outside the destination",
            tarfile.AbsolutePathError: "absolute path",
            tarfile.SpecialFileError: "special file",
        }.get(type(exc), str(exc))
        raise ArchiveError(f"refusing archive member {member.name!r}: {reason}") from None


def member_folder(name: str, root: str) -> str | None:
    """`mbeir_images/cirr_images/x.jpg` -> `cirr_images` (the selection unit); None at the root."""
    parts = name.split("/")
    if parts[0] != root or len(parts) < 2:
        return None
    return parts[1]


def _archive_id(parts: Sequence[Part]) -> str:
    """Identity of the archive for the journal: names + sizes + expected hashes."""
    key = [(p.name, p.size, p.sha256) for p in parts]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


class _Extractor:
    """Writes members under `dest`; one instance per run."""

    def __init__(self, dest: Path, folders: frozenset[str] | None, root: str, force: bool, stats: ExtractStats) -> None:
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.folders = folders
        self.root = root
        self.force = force
        self.stats = stats
        self._safe_dirs: set[str] = set()

    def selected(self, name: str) -> bool:
        if self.folders is None or name == "":
            return True
        if name == self.root:
            return True
        folder = member_folder(name, self.root)
        return folder is not None and folder in self.folders

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.real_dest or real.startswith(self.real_dest + os.sep)

    def _parent(self, member: tarfile.TarInfo, name: str) -> Path:
        """The member's parent folder, created, after checking no symlink leads it outside."""
        parent = posixpath.dirname(name)
        if parent in self._safe_dirs:
            return self.dest / parent
        path = os.path.join(self.dest, parent) if parent else str(self.dest)
        if not self._inside(path):
            raise ArchiveError(f"refusing archive member {member.name!r}: its folder leads outside the destination through a symlink")
        os.makedirs(path, exist_ok=True)
        self._safe_dirs.add(parent)
        return Path(path)

    def handle(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = safe_member_name(member)
        checked = _filtered(member, self.dest)
        if not self.selected(name):
            self.stats.skipped_unselected += 1
            return
        if name == "":
            return
        if checked.isdir():
            target = os.path.join(self.dest, name)
            if not self._inside(target):
                raise ArchiveError(f"refusing archive member {member.name!r}: path leads outside the destination through a symlink")
            os.makedirs(target, exist_ok=True)
            self.stats.directories += 1
            return
        parent = self._parent(member, name)
        target = parent / posixpath.basename(name)
        tmp = parent / f".{target.name}{_TMP_SUFFIX}"
        if checked.isreg():
            self._write_file(tar, member, checked, target, tmp)
        elif checked.issym():
            self._symlink(checked, target, tmp)
        else:
            self._hardlink(checked, target, tmp)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, checked: tarfile.TarInfo, target: Path, tmp: Path) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            raise ArchiveError(f"cannot extract archive member {member.name!r}: {target} is a folder")
        if st is not None and not self.force and stat_mod.S_ISREG(st.st_mode) and st.st_size == member.size:
            self.stats.skipped_existing += 1
            return
        source = tar.extractfile(member)
        assert source is not None  # a regular file always has a data stream
        tmp.unlink(missing_ok=True)  # a leftover of a crash; "x" below never follows a planted link
        with source, open(tmp, "xb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        if checked.mode is not None:
            os.chmod(tmp, checked.mode)
        os.utime(tmp, (member.mtime, member.mtime))
        os.replace(tmp, target)
        self.stats.written += 1
        self.stats.bytes_written += member.size

    def _symlink(self, checked: tarfile.TarInfo, target: Path, tmp: Path) -> None:
        if target.is_symlink() and os.readlink(target) == checked.linkname:
            return
        tmp.unlink(missing_ok=True)
        os.symlink(checked.linkname, tmp)
        os.replace(tmp, target)
        self._safe_dirs.clear()  # a new link may change where a path resolves
        self.stats.links += 1

    def _hardlink(self, checked: tarfile.TarInfo, target: Path, tmp: Path) -> None:
        source = self.dest / posixpath.normpath(checked.linkname)  # the data filter kept it inside dest
        if not source.is_file() or source.is_symlink():
            log.warning("skipping hard link %s: its target %s was not extracted", checked.name, checked.linkname)
            return
        if target.exists() and os.path.samefile(source, target):
            return
        tmp.unlink(missing_ok=True)
        os.link(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)
        self.stats.links += 1


def extract_parts(
    parts: Sequence[Part],
    dest: Path,
    *,
    folders: Collection[str] | None = None,
    root: str = "mbeir_images",
    journal_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> ExtractStats:
    """Verify the parts, then stream them through one gzip+tar reader into `dest`.

    `folders` restricts extraction to ``<root>/<folder>/...`` (None: everything). Resumable
    as the module docstring describes; `force` re-hashes the parts and rewrites every file.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    journal_dir = Path(journal_dir) if journal_dir is not None else dest / ".uniir-download"
    wanted = frozenset(folders) if folders is not None else None
    stats = ExtractStats()
    stats.parts_hashed = verify_parts(parts, journal_dir, progress=progress, force=force)

    journal_path = journal_dir / "extract.json"
    journal = _read_json(journal_path)
    archive = _archive_id(parts)
    if journal.get("archive") != archive or force:
        journal = {"version": JOURNAL_VERSION, "archive": archive, "complete_all": False, "complete_folders": []}
    done_folders = set(journal.get("complete_folders", []))
    if not force and (journal.get("complete_all") or (wanted is not None and wanted <= done_folders)):
        log.info("extraction of %s already complete (journal %s)", ", ".join(sorted(wanted)) if wanted else "all folders", journal_path)
        stats.already_complete = True
        return stats

    extractor = _Extractor(dest, wanted, root, force, stats)
    reader = ConcatReader(parts, progress)
    gunzip = GunzipReader(reader)
    last_name = current = ""
    last_save = time.monotonic()
    saved_bytes = 0

    def checkpoint(complete: bool) -> None:
        nonlocal saved_bytes
        # Bytes of files written by all runs so far (for the free-disk estimate of a resumed run).
        journal["bytes_written_total"] = int(journal.get("bytes_written_total", 0)) + stats.bytes_written - saved_bytes
        saved_bytes = stats.bytes_written
        journal["running"] = {
            "selection": sorted(wanted) if wanted is not None else None,
            "members": stats.members,
            "last_member": last_name,
        }
        journal["last_run"] = asdict(stats)
        journal["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if complete:
            journal.pop("running", None)
            if wanted is None:
                journal["complete_all"] = True
            else:
                journal["complete_folders"] = sorted(done_folders | wanted)
        atomic.write_json(journal_path, journal)

    finished = False
    try:
        # One streaming tar reader over the decompressed concatenation of all parts.
        with tarfile.open(fileobj=gunzip, mode="r|", bufsize=CHUNK) as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # stream mode keeps every TarInfo otherwise: millions for M-BEIR
                stats.members += 1
                current = member.name
                extractor.handle(tar, member)
                last_name = current
                if stats.members % _CHECKPOINT_MEMBERS == 0 or time.monotonic() - last_save > _CHECKPOINT_SECONDS:
                    checkpoint(False)
                    last_save = time.monotonic()
        gunzip.drain()
        finished = True
    except (zlib.error, EOFError, tarfile.TarError) as exc:
        where = f"at member {current!r}" if current != last_name else f"after member {last_name!r}"
        raise ArchiveError(
            f"the image archive is corrupt or truncated in {reader.current_part} {where} ({exc}); "
            "delete that part and download it again"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DataError(
                f"the disk under {dest} is full (at member {current!r}); free space and run the same command "
                "again: it resumes where it stopped"
            ) from None
        raise
    finally:
        reader.close()
        try:
            checkpoint(finished)
        except OSError as exc:  # never hide the original error behind a journal problem
            log.warning("could not write the extraction journal %s: %s", journal_path, exc)
    return stats


@dataclass
class ExtractJournal:
    """Read-only view of ``extract.json`` for summaries and free-disk estimates."""

    complete_all: bool = False
    complete_folders: list[str] = field(default_factory=list)
    bytes_written_total: int = 0

    @classmethod
    def load(cls, journal_dir: Path) -> ExtractJournal:
        data = _read_json(Path(journal_dir) / "extract.json")
        return cls(
            complete_all=bool(data.get("complete_all", False)),
            complete_folders=list(data.get("complete_folders", [])),
            bytes_written_total=int(data.get("bytes_written_total", 0) or 0),
        )
