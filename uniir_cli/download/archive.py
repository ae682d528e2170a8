"""Streamed, verified, resumable and safe extraction of a multi-part ``.tar.gz``.

The parts are verified and read back to back as one decompressed stream, never joined on disk
(`uniir_cli.download.parts`); that stream goes into one streaming tar reader, and every member
is written straight to its place.

Guarantees (what "resume" means here):

* Parts are verified (size, SHA-256) *before* anything is extracted from them; a verified part
  is not hashed again (see `uniir_cli.download.parts`).
* Every file is written to a hidden temporary sibling and renamed when complete, so a file
  that exists under its own name is complete (after a process kill; after a power failure a
  size check still catches truncated files). A resumed run skips every file whose size equals
  the tar member's size, so completed files are never written twice.
* A gzip stream cannot be entered in the middle, so a resumed run decompresses the archive
  again from the start up to where it stopped (CPU and disk reads, no writes, no download).
* ``<journal_dir>/extract.json`` records how far the stream got and, at the end, which image
  folders are complete; a finished extraction is not read again.

Safety: member names that are absolute or contain ``..``, device files, FIFOs and links that
point outside the destination are refused, naming the member (`uniir_cli.download.safety`;
writes never go through a symlinked parent that leaves the destination).

Free space: unless disabled, each file is written only if the filesystem keeps
`EXTRACT_RESERVE` free after it; otherwise the run stops with the numbers and resumes there
once space is freed (the size of a few selected image folders is not known in advance).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import shutil
import stat as stat_mod
import tarfile
import time
import zlib
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from uniir_cli import atomic
from uniir_cli.download import disk
from uniir_cli.download.parts import (
    CHUNK,
    JOURNAL_VERSION,
    ConcatReader,
    GunzipReader,
    LazyParts,
    Part,
    ProgressCallback,
    read_json,
    verify_parts,
)
from uniir_cli.download.safety import ArchiveError, checked_member
from uniir_cli.errors import DataError

log = logging.getLogger(__name__)

_TMP_SUFFIX = ".uniir-tmp"
_CHECKPOINT_SECONDS = 2.0
_CHECKPOINT_MEMBERS = 2000


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

    def __init__(
        self, dest: Path, folders: frozenset[str] | None, root: str, force: bool, stats: ExtractStats, reserve: int | None
    ) -> None:
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.folders = folders
        self.root = root
        self.force = force
        self.stats = stats
        self.reserve = reserve
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
        name, checked = checked_member(member, str(self.dest))
        if name and name != self.root and not name.startswith(self.root + "/"):
            raise ArchiveError(
                f"refusing archive member {member.name!r}: it is outside {self.root}/, where an image archive keeps "
                "everything (it could overwrite the metadata next to it); is this the M-BEIR image archive?"
            )
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
        if self.reserve is not None:
            disk.ensure_room(self.dest, member.size, f"archive member {member.name!r}", reserve=self.reserve)
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
    lazy: LazyParts | None = None,
    reserve: int | None = disk.EXTRACT_RESERVE,
) -> ExtractStats:
    """Verify the parts, then stream them through one gzip+tar reader into `dest`.

    `folders` restricts extraction to ``<root>/<folder>/...`` (None: everything). Resumable
    as the module docstring describes; `force` re-hashes the parts and rewrites every file.
    With `lazy`, each part is fetched and verified only when the stream reaches it and
    released once read (parts have no path yet). `reserve`: bytes kept free while writing
    (None: no check).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    journal_dir = Path(journal_dir) if journal_dir is not None else dest / ".uniir-download"
    wanted = frozenset(folders) if folders is not None else None
    stats = ExtractStats()
    if lazy is None:
        stats.parts_hashed = verify_parts(parts, journal_dir, progress=progress, force=force)

    journal_path = journal_dir / "extract.json"
    journal = read_json(journal_path)
    archive = _archive_id(parts)
    if journal.get("archive") != archive or force:
        journal = {"version": JOURNAL_VERSION, "archive": archive, "complete_all": False, "complete_folders": []}
    done_folders = set(journal.get("complete_folders", []))
    if not force and (journal.get("complete_all") or (wanted is not None and wanted <= done_folders)):
        log.info("extraction of %s already complete (journal %s)", ", ".join(sorted(wanted)) if wanted else "all folders", journal_path)
        stats.already_complete = True
        return stats

    extractor = _Extractor(dest, wanted, root, force, stats, reserve)
    reader = _reader(parts, lazy, journal_dir, stats, progress, force)
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
            where = f"under {dest}" + (f" or the one receiving {reader.current_part}" if lazy is not None else "")
            raise DataError(
                f"the disk {where} is full (at member {current!r}); free space and run the same command "
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


def _reader(
    parts: Sequence[Part], lazy: LazyParts | None, journal_dir: Path, stats: ExtractStats,
    progress: ProgressCallback | None, force: bool,
) -> ConcatReader:
    """The parts as one stream; with `lazy`, each fetched and verified when the stream reaches it."""
    if lazy is None:
        return ConcatReader(parts, progress)

    def open_part(part: Part) -> Path:
        path = lazy.fetch(part)
        stats.parts_hashed += verify_parts([replace(part, path=path)], journal_dir, progress=progress, force=force)
        return path

    return ConcatReader(parts, progress, open_part=open_part, finished=lazy.release)


@dataclass
class ExtractJournal:
    """Read-only view of ``extract.json`` for summaries and free-disk estimates."""

    complete_all: bool = False
    complete_folders: list[str] = field(default_factory=list)
    bytes_written_total: int = 0

    @classmethod
    def load(cls, journal_dir: Path) -> ExtractJournal:
        data = read_json(Path(journal_dir) / "extract.json")
        return cls(
            complete_all=bool(data.get("complete_all", False)),
            complete_folders=list(data.get("complete_folders", [])),
            bytes_written_total=int(data.get("bytes_written_total", 0) or 0),
        )
