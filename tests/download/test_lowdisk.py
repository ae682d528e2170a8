"""`uniir download mbeir --low-disk` (parts fetched when the stream reaches them, verified,
deleted once read) and `--revision` (reaches every Hub call; offline, no main-revision hashes
for other revisions). The Hub is simulated at huggingface_hub's public API (`FakeHub`)."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest

from tests.download.download_fakes import FakeHub, make_hub_cache, use_offline_cache
from uniir_cli.download import disk
from uniir_cli.download import files as download_files
from uniir_cli.download import mbeir as dl
from uniir_cli.download.disk import DiskSpaceError, human_bytes
from uniir_cli.download.parts import PartHashMismatch, ProgressEvent
from uniir_cli.errors import ConfigError

PARTS = dl.IMAGE_PARTS
REPO_FOLDER = "datasets--TIGER-Lab--M-BEIR"
METADATA = {
    "instructions/query_instructions.tsv": b"dataset\ttask\n",
    "query/test/mbeir_nights_task4_test.jsonl": b'{"qid": "5:1"}\n',
}


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_offline_cache(tmp_path, monkeypatch)


def _archive() -> bytes:
    """An images tar.gz of incompressible files in three folders (so the parts have real sizes)."""
    rng = random.Random(7)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for folder in ("nights_images", "cirr_images", "mscoco_images"):
            for i in range(6):
                data = rng.randbytes(3000 + 500 * i)
                info = tarfile.TarInfo(f"mbeir_images/{folder}/x/{i}.jpg")
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parts(archive: bytes) -> dict[str, bytes]:
    """Four slices of uneven sizes (40%, 20%, 30%, 10%), cut mid-member as the real ones are."""
    n = len(archive)
    cuts = [0, n * 4 // 10, n * 6 // 10, n * 9 // 10, n]
    return {name: archive[cuts[i] : cuts[i + 1]] for i, name in enumerate(PARTS)}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dangling_links(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_symlink() and not p.exists()]


@pytest.fixture()
def hub(offline_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    return FakeHub(offline_cache, {**METADATA, **_parts(_archive())}).install(monkeypatch)


def test_low_disk_fetches_parts_in_order_deletes_them_after_use_and_equals_normal_mode(hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub import try_to_load_from_cache

    timeline: list[tuple[str, str]] = []
    cached_at_fetch: dict[str, list[str]] = {}

    def on_download(name: str) -> None:
        if name in PARTS:
            timeline.append(("fetch", name))
            cached_at_fetch[name] = hub.cached_parts(PARTS)

    hub.on_download.append(on_download)
    progress = lambda e: timeline.append((e.stage, e.name)) if e.name in PARTS else None
    report = dl.download_mbeir(tmp_path / "low", what="images", low_disk=True, progress=progress)

    assert [name for stage, name in timeline if stage == "fetch"] == list(PARTS)
    for i, name in enumerate(PARTS):
        fetched_at = timeline.index(("fetch", name))
        assert fetched_at < timeline.index(("verify", name)) < timeline.index(("extract", name))  # verified before use
        if i:
            last_read = max(k for k, event in enumerate(timeline) if event == ("extract", PARTS[i - 1]))
            assert last_read < fetched_at  # fetched only when the stream reached it
        assert cached_at_fetch[name] == []  # the part before was already deleted: one part on disk at a time
    assert hub.cached_parts(PARTS) == [] and report.images is not None and report.images.parts_hashed == 4
    # The cache stays consistent: nothing dangling, nothing that looks cached.
    assert _dangling_links(hub.cache) == []
    assert all(try_to_load_from_cache("TIGER-Lab/M-BEIR", n, repo_type="dataset") is None for n in PARTS)

    normal = dl.download_mbeir(tmp_path / "normal", what="images")
    assert hub.fetched.count(PARTS[0]) == 2  # deleted parts are downloaded again, not served dangling
    assert _files(tmp_path / "low" / "mbeir_images") == _files(tmp_path / "normal" / "mbeir_images")
    assert len(_files(tmp_path / "low" / "mbeir_images")) == 18 and normal.images is not None
    assert hub.cached_parts(PARTS) == list(PARTS)  # the normal mode keeps them

    hub.fetched.clear()
    again = dl.download_mbeir(tmp_path / "low", what="images", low_disk=True)
    assert again.images is not None and again.images.already_complete and hub.fetched == []


def test_low_disk_free_space_check_counts_one_part(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = [len(hub.files[n]) for n in PARTS]
    usage, free = namedtuple("usage", "total used free"), [max(sizes) - 1]
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage(10**12, 0, free[0]))
    with pytest.raises(DiskSpaceError) as err:
        dl.download_mbeir(tmp_path / "d", what="images", datasets=["nights"], low_disk=True)
    assert f"need {human_bytes(max(sizes))}" in str(err.value) and "one at a time" in str(err.value)
    free[0] = max(sizes)
    with pytest.raises(DiskSpaceError) as err:
        dl.download_mbeir(tmp_path / "d", what="images", datasets=["nights"])
    assert f"need {human_bytes(sum(sizes))}" in str(err.value)  # the normal mode keeps all four
    # --low-disk passes the up-front check with that much; the guard then keeps its reserve free.
    with pytest.raises(DiskSpaceError, match="archive member 'mbeir_images/nights_images/"):
        dl.download_mbeir(tmp_path / "d", what="images", datasets=["nights"], low_disk=True)


def test_low_disk_verifies_a_part_before_using_its_bytes(hub: FakeHub, tmp_path: Path) -> None:
    good = hub.files[PARTS[2]]

    def corrupt_part_two(name: str) -> None:
        if name == PARTS[2]:  # the listing announced the good hash; the transfer delivers other bytes
            hub.files[name] = bytes([good[0] ^ 1]) + good[1:]

    hub.on_download.append(corrupt_part_two)
    events: list[ProgressEvent] = []
    with pytest.raises(PartHashMismatch, match=r"part-02 .*SHA-256"):
        dl.download_mbeir(tmp_path / "d", what="images", low_disk=True, progress=events.append)
    assert not [e for e in events if e.stage == "extract" and e.name == PARTS[2]]
    assert [e for e in events if e.stage == "extract" and e.name == PARTS[1]]


def test_low_disk_rerun_after_an_interruption_downloads_the_earlier_parts_again(hub: FakeHub, tmp_path: Path) -> None:
    class Crash(Exception):
        pass

    def crash_in_part_two(event: ProgressEvent) -> None:
        if event.stage == "extract" and event.name == PARTS[2]:
            raise Crash

    with pytest.raises(Crash):
        dl.download_mbeir(tmp_path / "d", what="images", low_disk=True, progress=crash_in_part_two)
    assert hub.cached_parts(PARTS) == [PARTS[2]]  # the part it stopped in is kept
    written = {p: p.stat().st_ino for p in (tmp_path / "d/mbeir_images").rglob("*.jpg")}
    assert 0 < len(written) < 18

    hub.fetched.clear()
    stats = dl.download_mbeir(tmp_path / "d", what="images", low_disk=True).images
    assert hub.fetched == [PARTS[0], PARTS[1], PARTS[3]]  # part-02 came from the cache
    assert stats is not None and stats.skipped_existing == len(written) and stats.written == 18 - len(written)
    assert all(p.stat().st_ino == ino for p, ino in written.items())  # files already written are not rewritten
    assert hub.cached_parts(PARTS) == []


def test_low_disk_from_a_real_cache_offline_leaves_it_consistent(offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real huggingface_hub reads the cache after the parts were deleted: nothing stale is returned."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    parts = _parts(_archive())
    monkeypatch.setattr(download_files, "KNOWN_PARTS", {n: (len(b), hashlib.sha256(b).hexdigest()) for n, b in parts.items()})
    make_hub_cache(offline_cache, REPO_FOLDER, {**METADATA, **parts})
    report = dl.download_mbeir(tmp_path / "d", splits=["test"], datasets=["nights"], low_disk=True)
    assert report.images is not None and report.images.written == 6
    assert _dangling_links(offline_cache) == []
    for name in PARTS:
        assert huggingface_hub.try_to_load_from_cache("TIGER-Lab/M-BEIR", name, repo_type="dataset") is None
        with pytest.raises(LocalEntryNotFoundError):
            huggingface_hub.hf_hub_download("TIGER-Lab/M-BEIR", name, repo_type="dataset")
    blobs = {p.name for p in (offline_cache / REPO_FOLDER / "blobs").iterdir()}
    assert blobs == {hashlib.sha256(b).hexdigest() for b in METADATA.values()}  # only the parts were deleted
    assert (tmp_path / "d/query/test/mbeir_nights_task4_test.jsonl").read_bytes() == METADATA["query/test/mbeir_nights_task4_test.jsonl"]


def test_low_disk_is_refused_with_from_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--low-disk applies to Hub downloads"):
        dl.download_mbeir(tmp_path / "d", from_dir=tmp_path, low_disk=True)


# -- --revision -----------------------------------------------------------------------------
def test_revision_reaches_the_listing_and_every_download(hub: FakeHub, tmp_path: Path) -> None:
    report = dl.download_mbeir(tmp_path / "d", revision="v1.1", splits=["test"], datasets=["nights"])
    assert "revision v1.1" in report.source
    assert [(f, kw["revision"]) for f, _, kw in hub.calls if f == "list_repo_tree"] == [("list_repo_tree", "v1.1")]
    downloads = [(name, kw["revision"]) for f, name, kw in hub.calls if f == "hf_hub_download"]
    assert {name for name, _ in downloads} == {*METADATA, *PARTS} and {rev for _, rev in downloads} == {"v1.1"}
    hub.fetched.clear()
    dl.download_mbeir(tmp_path / "d", revision="v1.1", splits=["test"], datasets=["nights"])
    assert hub.fetched == []  # found in the cache under refs/v1.1


def test_offline_other_revision_skips_the_main_hashes_and_says_so(offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    make_hub_cache(offline_cache, REPO_FOLDER, {**METADATA, **_parts(_archive())}, refs=("v1.1", "main"))
    seen: list[tuple[str, object]] = []
    real_snapshot, real_download = huggingface_hub.snapshot_download, huggingface_hub.hf_hub_download

    def snapshot_download(*args: object, **kwargs: object) -> str:
        seen.append(("snapshot_download", kwargs.get("revision")))
        return real_snapshot(*args, **kwargs)

    def hf_hub_download(*args: object, **kwargs: object) -> str:
        seen.append(("hf_hub_download", kwargs.get("revision")))
        return real_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    # The built-in table (main's real parts) does not match these parts: main is refused ...
    with pytest.raises(PartHashMismatch, match="part-00"):
        dl.download_mbeir(tmp_path / "main", splits=["test"], datasets=["nights"])
    # ... another revision is not checked against it, and the report says so.
    seen.clear()
    report = dl.download_mbeir(tmp_path / "v11", revision="v1.1", splits=["test"], datasets=["nights"])
    assert report.images is not None and report.images.written == 6
    assert any("revision v1.1" in n and "not checked" in n for n in report.notes)
    assert ("snapshot_download", "v1.1") in seen and {rev for _, rev in seen} == {"v1.1"}
    assert [f for f, _ in seen].count("hf_hub_download") == len(PARTS)
