"""`uniir_cli.download.mbeir*`: selection, free-disk check, the Hub cache path without network,
offline errors, checkpoints, and the gzip reader under the tar stream."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections import namedtuple
from pathlib import Path

import pytest

from tests.download.download_fakes import FakeHub, make_hub_cache, use_offline_cache
from uniir_cli.download import checkpoint as ckpt
from uniir_cli.download import disk
from uniir_cli.download import files as download_files
from uniir_cli.download import mbeir as dl
from uniir_cli.download.disk import DiskSpaceError, check_free_space
from uniir_cli.download.hub import _forwarding_tqdm
from uniir_cli.download.parts import GunzipReader, ProgressEvent
from uniir_cli.download.selection import Selection
from uniir_cli.errors import ConfigError, DataError, ModelError


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_offline_cache(tmp_path, monkeypatch)


# -- selection ----------------------------------------------------------------------------
def test_selection_patterns_pick_the_datasets_and_splits() -> None:
    sel = Selection.parse(["test"], ["mscoco,infoseek"])
    assert sel.splits == ("test",) and sel.datasets == ("infoseek", "mscoco")
    assert sel.wants("query/test/mbeir_mscoco_task0_test.jsonl")
    assert sel.wants("cand_pool/local/mbeir_mscoco_task3_test_cand_pool.jsonl")
    assert sel.wants("qrels/test/mbeir_infoseek_task8_test_qrels.txt")
    assert sel.wants("instructions/query_instructions.tsv")
    assert not sel.wants("query/test/mbeir_cirr_task7_test.jsonl")
    assert not sel.wants("query/val/mbeir_mscoco_task0_val.jsonl")
    assert not sel.wants("cand_pool/global/mbeir_union_test_cand_pool.jsonl")  # union files: only without --datasets
    assert not sel.wants("mbeir_images.tar.gz.part-00")
    assert sel.image_folders() == {"mscoco_images", "oven_images"}  # InfoSeek images live under oven_images
    everything = Selection.parse(None, None)
    assert everything.wants("cand_pool/global/mbeir_union_train_cand_pool.jsonl")
    assert everything.wants("query/union_train/mbeir_union_up_train.jsonl")
    assert everything.image_folders() is None


def test_unknown_names_are_config_errors_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown dataset.*coco.*mscoco"):
        Selection.parse(None, ["coco"])
    with pytest.raises(ConfigError, match="unknown split.*dev.*train, val, test"):
        Selection.parse(["dev"], None)


# -- disk ---------------------------------------------------------------------------------
def test_free_disk_check_names_the_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage(10**12, 0, 5_000_000_000))
    check_free_space({tmp_path / "a": (3_000_000_000, "images")})
    with pytest.raises(DiskSpaceError) as err:
        check_free_space({tmp_path / "a": (3_000_000_000, "images"), tmp_path / "b" / "c": (2_500_000_000, "metadata")})
    message = str(err.value)
    assert "need 5.5 GB" in message and "5.0 GB free" in message and "images 3.0 GB" in message and "--no-disk-check" in message


# -- Hub: offline and local cache ---------------------------------------------------------
def test_offline_empty_cache_says_what_is_missing_and_how_to_get_it(offline_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        dl.download_mbeir(tmp_path / "data", what="metadata")
    message = str(err.value)
    assert "TIGER-Lab/M-BEIR" in message and str(offline_cache) in message
    assert "HF_HUB_OFFLINE" in message and "--from-dir" in message and "\n" not in message
    with pytest.raises(DataError, match=r"mbeir_images\.tar\.gz\.part-00 .*not in the Hugging Face cache.*HF_HUB_OFFLINE=0"):
        dl.download_mbeir(tmp_path / "data", what="images", check_disk=False)
    with pytest.raises(DataError, match=r"clip_sf_large\.pth .*TIGER-Lab/UniIR.*not in the Hugging Face cache"):
        ckpt.download_checkpoint("clip-sf-large", out_dir=tmp_path / "ckpt")


def _metadata_files() -> dict[str, bytes]:
    return {
        "instructions/query_instructions.tsv": b"dataset\ttask\n",
        "query/test/mbeir_mscoco_task0_test.jsonl": b'{"qid": "9:1"}\n',
        "query/test/mbeir_cirr_task7_test.jsonl": b'{"qid": "8:1"}\n',
        "qrels/test/mbeir_mscoco_task0_test_qrels.txt": b"9:1 0 9:2 1 0\n",
        "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl": b'{"did": "9:2"}\n',
        "query/train/mbeir_mscoco_train.jsonl": b'{"qid": "9:7"}\n',
    }


def test_local_hub_cache_is_found_and_used_without_network(offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for folder in ("mscoco_images", "cirr_images"):
            data = folder.encode() * 100
            info = tarfile.TarInfo(f"mbeir_images/{folder}/val2014/x.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    cuts = [0, 40, len(archive) // 2, len(archive) - 30, len(archive)]
    parts = {name: archive[cuts[i] : cuts[i + 1]] for i, name in enumerate(dl.IMAGE_PARTS)}
    monkeypatch.setattr(download_files, "KNOWN_PARTS", {n: (len(b), hashlib.sha256(b).hexdigest()) for n, b in parts.items()})
    snapshot = make_hub_cache(offline_cache, "datasets--TIGER-Lab--M-BEIR", {**_metadata_files(), **parts})

    data_dir = tmp_path / "data"
    report = dl.download_mbeir(data_dir, splits=["test"], datasets=["mscoco"])
    assert set(report.metadata) == {
        "instructions/query_instructions.tsv",
        "query/test/mbeir_mscoco_task0_test.jsonl",
        "qrels/test/mbeir_mscoco_task0_test_qrels.txt",
        "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl",
    }
    placed = data_dir / "query/test/mbeir_mscoco_task0_test.jsonl"
    assert not placed.is_symlink() and os.path.samefile(placed, snapshot / "query/test/mbeir_mscoco_task0_test.jsonl")  # hard link
    assert "mbeir_mscoco_task3_test.jsonl" in " ".join(report.missing)  # the cache had only part of the test split
    assert (data_dir / "mbeir_images/mscoco_images/val2014/x.jpg").read_bytes() == b"mscoco_images" * 100
    assert not (data_dir / "mbeir_images/cirr_images").exists()
    assert report.images is not None and report.images.written == 1
    assert "offline" in " ".join(report.notes)
    # Again: nothing to do.
    again = dl.download_mbeir(data_dir, splits=["test"], datasets=["mscoco"])
    assert set(again.metadata.values()) == {"present"} and again.images is not None and again.images.already_complete


def test_hash_mismatch_against_the_built_in_table_names_the_part(offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = {name: bytes([i]) * 100 for i, name in enumerate(dl.IMAGE_PARTS)}
    make_hub_cache(offline_cache, "datasets--TIGER-Lab--M-BEIR", parts)
    monkeypatch.setattr(download_files, "KNOWN_PARTS", {n: (100, hashlib.sha256(b if n != dl.IMAGE_PARTS[1] else b"x").hexdigest()) for n, b in parts.items()})
    with pytest.raises(DataError, match=r"part-01 .*SHA-256 .*expected"):
        dl.download_mbeir(tmp_path / "data", what="images")


def test_forwarding_tqdm_reports_bytes_and_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    events: list[ProgressEvent] = []
    bar_class = _forwarding_tqdm(events.append, "download", "part-00")
    with bar_class(unit="B", unit_scale=True, total=100, initial=10, desc="part-00") as bar:
        bar.update(30)
        bar.update(60)
    assert [(e.done, e.total) for e in events] == [(10, 100), (40, 100), (100, 100)]
    assert capsys.readouterr().err == ""


# -- checkpoints --------------------------------------------------------------------------
def test_checkpoint_from_cache_blip_is_converted_and_a_bad_pth_is_named_and_kept(offline_cache: Path, tmp_path: Path) -> None:
    snapshot = make_hub_cache(offline_cache, "models--TIGER-Lab--UniIR", {"checkpoint/BLIP_FF/blip_ff_large.pth": b"pth"})
    assert ckpt.get_checkpoint_spec("blip-ff-large").convertible
    with pytest.raises(ModelError) as err:
        ckpt.download_checkpoint("blip-ff-large", out_dir=tmp_path / "ckpt")
    assert str(snapshot / "checkpoint/BLIP_FF/blip_ff_large.pth") in str(err.value)
    assert (snapshot / "checkpoint/BLIP_FF/blip_ff_large.pth").read_bytes() == b"pth"
    assert not (tmp_path / "ckpt" / "model.json").exists()


def test_checkpoint_conversion_goes_through_the_registry(offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one conversion call site: registry.load_model(.pth).save_pretrained(out) (a stub model here)."""
    snapshot = make_hub_cache(offline_cache, "models--TIGER-Lab--UniIR", {"checkpoint/CLIP_SF/clip_sf_large.pth": b"pth"})
    calls: list[tuple[str, Path]] = []

    class FakeModel:
        def save_pretrained(self, out_dir: Path) -> Path:
            calls.append(("save", Path(out_dir)))
            Path(out_dir).mkdir(parents=True)
            (Path(out_dir) / "model.json").write_text("{}")
            return Path(out_dir)

    def load_model(path: Path, keep_training_state: bool = False) -> FakeModel:
        calls.append(("load", Path(path)))
        return FakeModel()

    import uniir_cli.registry

    monkeypatch.setattr(uniir_cli.registry, "load_model", load_model)
    report = ckpt.download_checkpoint("clip-sf-large", out_dir=tmp_path / "ckpt")
    assert report.checkpoint_dir == tmp_path / "ckpt" and report.converted_now
    assert calls == [("load", snapshot / "checkpoint/CLIP_SF/clip_sf_large.pth"), ("save", tmp_path / "ckpt")]
    assert not ckpt.download_checkpoint("clip-sf-large", out_dir=tmp_path / "ckpt").converted_now  # already converted
    with pytest.raises(ConfigError, match="unknown checkpoint 'clip'.*clip-sf-large"):
        ckpt.download_checkpoint("clip")


# -- the gzip reader ----------------------------------------------------------------------
def test_gunzip_reader_handles_multiple_members_and_checks_the_trailer() -> None:
    payload = os.urandom(300_000) + bytes(200_000)
    stream = gzip.compress(payload[:123_457]) + b"\0\0\0" + gzip.compress(payload[123_457:])
    reader = GunzipReader(io.BytesIO(stream))  # type: ignore[arg-type]
    assert io.BufferedReader(reader).read() == payload
    broken = bytearray(stream)
    broken[-6] ^= 0xFF  # CRC-32 of the last member
    with pytest.raises(Exception, match="incorrect data check|invalid"):
        GunzipReader(io.BytesIO(bytes(broken))).drain()  # type: ignore[arg-type]
    with pytest.raises(EOFError, match="truncated"):
        GunzipReader(io.BytesIO(stream[:-9])).drain()  # type: ignore[arg-type]


def test_online_path_uses_the_hub_listing_for_checksums_and_reports_download_progress(
    offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub is simulated at huggingface_hub's public API: listing with LFS sha256s, hf_hub_download."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("mbeir_images/nights_images/a.jpg")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    archive = buf.getvalue()
    q = len(archive) // 4
    remote = {**_metadata_files(), **{n: archive[i * q : (i + 1) * q if i < 3 else None] for i, n in enumerate(dl.IMAGE_PARTS)}}
    hub = FakeHub(offline_cache, remote).install(monkeypatch)
    fetched = hub.fetched
    monkeypatch.setattr(download_files, "KNOWN_PARTS", {})  # the listing's LFS sha256s must be the ones used

    usage, free = namedtuple("usage", "total used free"), [100]
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage(10**12, 0, free[0]))
    with pytest.raises(DiskSpaceError, match="downloads into the Hub cache"):
        dl.download_mbeir(tmp_path / "data", datasets=["nights", "mscoco"])
    free[0] = 10**11

    events: list[ProgressEvent] = []
    report = dl.download_mbeir(tmp_path / "data", datasets=["nights", "mscoco"], progress=events.append)
    assert (tmp_path / "data/mbeir_images/nights_images/a.jpg").read_bytes() == b"hello"
    assert "query/test/mbeir_mscoco_task0_test.jsonl" in report.metadata and "query/test/mbeir_cirr_task7_test.jsonl" not in fetched
    assert set(dl.IMAGE_PARTS) <= set(fetched)
    done = {(e.name, e.done) for e in events if e.stage == "download"}
    assert ("mbeir_images.tar.gz.part-02", len(remote["mbeir_images.tar.gz.part-02"])) in done
    assert report.notes == [download_files.SELECTED_FOLDERS_NOTE]  # the Hub was asked; folder sizes are guarded


def test_up_front_image_estimate_covers_only_the_whole_archive(tmp_path: Path) -> None:
    """With --datasets the folders' sizes are unknown: nothing is asked for up front (the extraction guards each file)."""
    sizes = [1_000, 2_000, 3_000, None]
    whole = download_files.images_estimate(sizes, tmp_path, Selection.parse(None, None))
    assert whole == int((6_000 + download_files.PART_SIZE_APPROX) * download_files.IMAGE_EXPANSION)
    assert download_files.images_estimate(sizes, tmp_path, Selection.parse(None, ["cirr"])) == 0
