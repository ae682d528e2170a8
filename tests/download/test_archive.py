"""Streamed multi-part tar.gz extraction: equality with `cat parts | tar xz`, selection,
resume after a crash, hash checks, refusal of unsafe members."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.file_tree import file_tree
from uniir_cli.download import disk
from uniir_cli.download.archive import ArchiveError, ExtractJournal, extract_parts
from uniir_cli.download.disk import DiskSpaceError
from uniir_cli.download.parts import Part, PartHashMismatch, ProgressEvent, verify_parts

FOLDERS = ("mscoco_images", "cirr_images", "oven_images", "fashioniq_images")


def _jpeg(seed: int, size: int = 48) -> bytes:
    """Real JPEG bytes of a noise image (incompressible, like M-BEIR's)."""
    from PIL import Image

    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def build_archive(images_per_folder: int = 10) -> bytes:
    """gzip+tar of an `mbeir_images/` tree with JPEGs, nested folders, one symlink and one hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "mbeir_images", type=tarfile.DIRTYPE, mode=0o755)
        for f, folder in enumerate(FOLDERS):
            _add(tar, f"mbeir_images/{folder}", type=tarfile.DIRTYPE, mode=0o755)
            sub = "wikipedia_images_full" if folder == "oven_images" else "val2014"
            for i in range(images_per_folder):
                _add(tar, f"mbeir_images/{folder}/{sub}/img_{i:03d}.jpg", _jpeg(f * 1000 + i), mode=0o644)
        _add(tar, "mbeir_images/cirr_images/alias.jpg", type=tarfile.SYMTYPE, linkname="val2014/img_000.jpg")
        _add(tar, "mbeir_images/mscoco_images/copy.jpg", type=tarfile.LNKTYPE, linkname="mbeir_images/mscoco_images/val2014/img_001.jpg")
    return buf.getvalue()


def split_parts(data: bytes, folder: Path, n: int = 4) -> list[Part]:
    """Cut the archive at uneven byte offsets (mid-member, as the real parts are)."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = [0, *(len(data) * k // n - 17 * k for k in range(1, n)), len(data)]
    parts = []
    for i in range(n):
        chunk = data[cuts[i] : cuts[i + 1]]
        path = folder / f"mbeir_images.tar.gz.part-{i:02d}"
        path.write_bytes(chunk)
        parts.append(Part(path.name, path, hashlib.sha256(chunk).hexdigest(), len(chunk)))
    return parts


def reference_extract(data: bytes, dest: Path) -> None:
    """What `cat parts | tar xz` produces (the tar binary when present, else Python's tarfile)."""
    dest.mkdir(parents=True)
    if shutil.which("tar"):
        subprocess.run(["tar", "xzf", "-", "-C", str(dest)], input=data, check=True)
    else:  # pragma: no cover
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(dest, filter="data")


def tree(root: Path) -> dict[str, object]:
    """The folder's content, without the download's own state folder."""
    return file_tree(root, skip=(".uniir-download",))


@pytest.fixture(scope="module")
def archive() -> bytes:
    return build_archive()


@pytest.fixture()
def parts(archive: bytes, tmp_path: Path) -> list[Part]:
    return split_parts(archive, tmp_path / "parts")


@pytest.fixture(params=["python-data-filter", "own-filter"])
def tar_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways members are checked: Python's `tarfile.data_filter`, and without it (Python < 3.10.12/3.11.4)."""
    if request.param == "own-filter":
        monkeypatch.delattr(tarfile, "data_filter")
    assert hasattr(tarfile, "data_filter") == (request.param == "python-data-filter")
    return str(request.param)


def test_streamed_extraction_equals_cat_and_tar(archive: bytes, parts: list[Part], tmp_path: Path, tar_filter: str) -> None:
    reference_extract(archive, tmp_path / "ref")
    events: list[ProgressEvent] = []
    stats = extract_parts(parts, tmp_path / "out", progress=events.append)
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert stats.written == 4 * 10 and stats.links == 2 and stats.skipped_existing == 0
    assert not list((tmp_path / "out").rglob("*.uniir-tmp"))
    # Each part was hashed, then read to its end, in order.
    extracted = [e for e in events if e.stage == "extract"]
    assert [p.name for p in parts] == list(dict.fromkeys(e.name for e in extracted))
    assert {e.name for e in events if e.stage == "verify" and e.done == e.total} == {p.name for p in parts}
    # No joined archive was written anywhere.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size >= len(archive) and p.suffix == ".gz"]


def test_selective_extraction_writes_only_the_selected_folders(archive: bytes, parts: list[Part], tmp_path: Path) -> None:
    reference_extract(archive, tmp_path / "ref")
    stats = extract_parts(parts, tmp_path / "out", folders={"cirr_images", "oven_images"})
    got = tree(tmp_path / "out")
    want = {k: v for k, v in tree(tmp_path / "ref").items() if k == "mbeir_images" or k.split("/")[1] in {"cirr_images", "oven_images"}}
    assert got == want
    assert stats.skipped_unselected > 0
    # A later run with more folders completes the tree; finished folders are not rewritten.
    again = extract_parts(parts, tmp_path / "out", folders=set(FOLDERS))
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert again.skipped_existing == 20 and again.written == 20
    assert extract_parts(parts, tmp_path / "out", folders={"cirr_images"}).already_complete


class Crash(Exception):
    pass


def test_resume_after_a_crash_mid_stream_redoes_no_completed_work(archive: bytes, parts: list[Part], tmp_path: Path) -> None:
    reference_extract(archive, tmp_path / "ref")
    out = tmp_path / "out"

    def crash_in_part_two(event: ProgressEvent) -> None:
        if event.stage == "extract" and event.name == parts[2].name:
            raise Crash

    with pytest.raises(Crash):
        extract_parts(parts, out, progress=crash_in_part_two)
    done_before = {p: p.stat().st_ino for p in out.rglob("*.jpg") if p.is_file() and not p.is_symlink()}
    assert 0 < len(done_before) < 41
    journal = ExtractJournal.load(out / ".uniir-download")
    assert not journal.complete_all and journal.bytes_written_total > 0

    stats = extract_parts(parts, out)
    assert tree(out) == tree(tmp_path / "ref")
    assert stats.parts_hashed == 0  # verified in the first run, not hashed again
    assert stats.skipped_existing == len([p for p in done_before if p.name != "copy.jpg"])
    assert stats.written == 40 - stats.skipped_existing
    assert all(p.stat().st_ino == ino for p, ino in done_before.items())  # completed files untouched
    assert not list(out.rglob("*.uniir-tmp"))
    assert extract_parts(parts, out).already_complete


def test_truncated_file_from_a_crash_is_rewritten(archive: bytes, parts: list[Part], tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_parts(parts, out)
    victim = out / "mbeir_images/oven_images/wikipedia_images_full/img_003.jpg"
    good = victim.read_bytes()
    victim.write_bytes(good[:10])  # e.g. a power cut after the rename
    extract_parts(parts, out, force=True)
    assert victim.read_bytes() == good


def test_hash_mismatch_names_the_part_and_extracts_nothing(parts: list[Part], tmp_path: Path) -> None:
    bad = list(parts)
    bad[2] = Part(parts[2].name, parts[2].path, "0" * 64, parts[2].size)
    with pytest.raises(PartHashMismatch, match=r"mbeir_images\.tar\.gz\.part-02.*SHA-256"):
        extract_parts(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "mbeir_images").exists()


def test_size_mismatch_and_missing_part_are_named(parts: list[Part], tmp_path: Path) -> None:
    short = [Part(p.name, p.path, p.sha256, (p.size or 0) + 1) for p in parts]
    with pytest.raises(PartHashMismatch, match="part-00.*expected"):
        verify_parts(short, tmp_path / "j")
    gone = [*parts[:3], Part(parts[3].name, tmp_path / "nowhere", None, None)]
    with pytest.raises(Exception, match="part-03 not found"):
        verify_parts(gone, tmp_path / "j")


def test_changed_part_is_hashed_again(parts: list[Part], tmp_path: Path) -> None:
    assert verify_parts(parts, tmp_path / "j") == 4
    assert verify_parts(parts, tmp_path / "j") == 0
    data = parts[1].path.read_bytes()
    parts[1].path.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, new content
    os.utime(parts[1].path, ns=(time.time_ns(), time.time_ns() + 10_000))
    with pytest.raises(PartHashMismatch, match="part-01"):
        verify_parts(parts, tmp_path / "j")


UNSAFE = {
    "absolute path": dict(name="/tmp/uniir-evil.jpg", data=b"x"),
    "dotdot escape": dict(name="mbeir_images/../../evil.jpg", data=b"x"),
    "dotdot inside": dict(name="mbeir_images/a/../b.jpg", data=b"x"),
    "absolute symlink": dict(name="mbeir_images/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    "escaping symlink": dict(name="mbeir_images/link", type=tarfile.SYMTYPE, linkname="../../outside"),
    "escaping hardlink": dict(name="mbeir_images/hard", type=tarfile.LNKTYPE, linkname="../outside"),
    "char device": dict(name="mbeir_images/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
    "block device": dict(name="mbeir_images/blk", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
    "fifo": dict(name="mbeir_images/pipe", type=tarfile.FIFOTYPE),
    "overlong name": dict(name="mbeir_images/" + "d/" * 600 + "x.jpg", data=b"x"),
    "metadata beside the images": dict(name="query/test/mbeir_cirr_task7_test.jsonl", data=b"{}"),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_members_are_refused_with_their_name(kind: str, tmp_path: Path, tar_filter: str) -> None:
    spec = dict(UNSAFE[kind])
    name, data = spec.pop("name"), spec.pop("data", None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "mbeir_images/ok.jpg", _jpeg(1))
        _add(tar, name, data, **spec)
    parts = split_parts(buf.getvalue(), tmp_path / "parts", n=2)
    dest = tmp_path / "box" / "dest"
    with pytest.raises(ArchiveError, match="refusing archive member") as err:
        extract_parts(parts, dest)
    assert name[:80] in str(err.value)
    assert (dest / "mbeir_images/ok.jpg").is_file()  # members before it were written
    outside = [p for p in (tmp_path / "box").rglob("*") if dest not in p.parents and p != dest]
    assert outside == []
    assert not Path("/tmp/uniir-evil.jpg").exists()
    assert not (dest / "query").exists()


def test_own_filter_sets_data_permissions_and_refuses_links_through_planted_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "mbeir_images/run.sh", b"#!/bin/sh\n", mode=0o4777)  # setuid, world-writable
        _add(tar, "mbeir_images/plain.jpg", _jpeg(3), mode=0o066)  # owner cannot even read it
        _add(tar, "mbeir_images/up/link", type=tarfile.SYMTYPE, linkname="../../box")  # leaves via the planted link
    dest = tmp_path / "box" / "dest"
    (dest / "mbeir_images").mkdir(parents=True)
    (dest / "mbeir_images" / "up").symlink_to(dest / "mbeir_images", target_is_directory=True)
    with pytest.raises(ArchiveError, match=r"'mbeir_images/up/link'.*(outside the destination)"):
        extract_parts(split_parts(buf.getvalue(), tmp_path / "parts", n=2), dest)
    assert (dest / "mbeir_images/run.sh").stat().st_mode & 0o7777 == 0o755
    assert (dest / "mbeir_images/plain.jpg").stat().st_mode & 0o7777 == 0o644


def test_symlinked_folder_cannot_redirect_writes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "mbeir_images/x.jpg", _jpeg(2))
    parts = split_parts(buf.getvalue(), tmp_path / "parts", n=2)
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "mbeir_images").symlink_to(elsewhere, target_is_directory=True)  # planted before the run
    with pytest.raises(ArchiveError, match="mbeir_images/x.jpg"):
        extract_parts(parts, dest)
    assert list(elsewhere.iterdir()) == []


def test_corrupt_stream_names_the_part(archive: bytes, tmp_path: Path) -> None:
    data = bytearray(archive)
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    parts = [Part(p.name, p.path, None, None) for p in split_parts(bytes(data), tmp_path / "parts")]
    with pytest.raises(ArchiveError, match=r"corrupt or truncated in mbeir_images\.tar\.gz\.part-0[1-3]"):
        extract_parts(parts, tmp_path / "out")


def test_truncated_archive_is_detected_without_published_hashes(archive: bytes, tmp_path: Path) -> None:
    """tarfile's own r|gz never checks the gzip trailer; the extractor does (CRC-32, length)."""
    parts = [Part(p.name, p.path, None, None) for p in split_parts(archive[:-8], tmp_path / "parts")]
    with pytest.raises(ArchiveError, match=r"truncated in mbeir_images\.tar\.gz\.part-03"):
        extract_parts(parts, tmp_path / "out")
    assert not ExtractJournal.load(tmp_path / "out" / ".uniir-download").complete_all


def _simulated_disk(monkeypatch: pytest.MonkeyPatch, dest: Path, capacity: list[int]) -> None:
    """A filesystem of `capacity[0]` bytes holding only what was extracted under `dest`."""

    def free_bytes(path: Path) -> int:
        used = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and not p.is_symlink())
        return capacity[0] - used

    monkeypatch.setattr(disk, "free_bytes", free_bytes)


def test_free_space_guard_stops_before_a_member_and_a_rerun_resumes(
    archive: bytes, parts: list[Part], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_extract(archive, tmp_path / "ref")
    out = tmp_path / "out"
    files = {p.stat().st_ino: p.stat().st_size for p in (tmp_path / "ref").rglob("*") if p.is_file() and not p.is_symlink()}
    images = sum(files.values())  # the hard link counted once
    capacity = [disk.EXTRACT_RESERVE + images // 2]
    _simulated_disk(monkeypatch, out, capacity)
    with pytest.raises(DiskSpaceError) as err:
        extract_parts(parts, out, folders=set(FOLDERS))
    message = str(err.value)
    assert "archive member 'mbeir_images/" in message and "bytes) free" in message and "bytes) needed" in message
    assert "resumes where it stopped" in message
    free = int(message.split(" bytes) free")[0].rsplit("(", 1)[1].replace(",", ""))
    needed = int(message.split(" bytes) needed")[0].rsplit("(", 1)[1].replace(",", ""))
    assert free < needed and needed > disk.EXTRACT_RESERVE
    written = {p: p.stat().st_ino for p in out.rglob("*.jpg") if p.is_file() and not p.is_symlink()}
    assert 0 < len(written) < 40 and not list(out.rglob("*.uniir-tmp"))
    assert not ExtractJournal.load(out / ".uniir-download").complete_all

    capacity[0] = disk.EXTRACT_RESERVE + 2 * images  # space freed: the same call resumes
    stats = extract_parts(parts, out, folders=set(FOLDERS))
    assert tree(out) == tree(tmp_path / "ref")
    assert stats.skipped_existing == len(written) and stats.written == 40 - len(written)
    assert all(p.stat().st_ino == ino for p, ino in written.items())


def test_free_space_guard_is_off_without_a_reserve(parts: list[Part], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _simulated_disk(monkeypatch, tmp_path / "out", [0])
    assert extract_parts(parts, tmp_path / "out", reserve=None).written == 40  # --no-disk-check
