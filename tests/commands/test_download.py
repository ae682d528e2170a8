"""`uniir download`: --from-dir against a generated M-BEIR tree, the Hub cache without network,
clear one-line errors, checkpoint listing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import namedtuple
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.download import disk
from uniir_cli.download import files as download_files
from uniir_cli.download import mbeir as dl

runner = CliRunner()
APP = build_app()
METADATA = ("query", "cand_pool", "qrels", "instructions")
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_parts(images_root: Path, folder: Path) -> dict[str, tuple[int, str]]:
    """tar+gzip `images_root` as mbeir_images/, cut into the four named parts; returns their table."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(images_root, arcname="mbeir_images")
    data = buf.getvalue()
    cuts = [0, len(data) // 3, len(data) // 2, len(data) - 1000, len(data)]
    table = {}
    for i, name in enumerate(dl.IMAGE_PARTS):
        chunk = data[cuts[i] : cuts[i + 1]]
        (folder / name).write_bytes(chunk)
        table[name] = (len(chunk), hashlib.sha256(chunk).hexdigest())
    return table


@pytest.fixture()
def mirror(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of M-BEIR: the generated tree's metadata plus its images as four tar.gz parts."""
    root = tmp_path / "M-BEIR"
    root.mkdir()
    for name in METADATA:
        shutil.copytree(synthetic_tiny / name, root / name)
    monkeypatch.setattr(download_files, "KNOWN_PARTS", write_parts(synthetic_tiny / "mbeir_images", root))
    return root


def invoke(*args: str) -> object:
    return runner.invoke(APP, ["download", *args])


def one_line_error(result: object) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.output  # type: ignore[attr-defined]
    return lines[0]


def test_from_dir_links_metadata_extracts_parts_validates_and_lists(mirror: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    meta = {k: v for k, v in files_under(mirror).items() if not k.startswith("mbeir_images.tar")}
    assert files_under(data / "query").keys() and {k: v for k, v in files_under(data).items() if k.split("/")[0] in METADATA} == meta
    sample = "query/test/mbeir_mscoco_task0_test.jsonl"
    assert os.path.samefile(data / sample, mirror / sample)  # linked, not copied
    assert files_under(data / "mbeir_images") == files_under(synthetic_tiny / "mbeir_images")
    assert not any(p.name.endswith(".tar.gz") for p in data.iterdir())  # never joined
    out = result.output
    assert "validation: ok" in out or "validation skipped" in out
    assert "MSCOCO" in out and "2/2" in out and "images" in out
    again = invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(data), "--no-validate")
    assert again.exit_code == 0, again.output
    assert "already extracted" in again.output and "present" in again.output


def test_from_dir_copy_with_datasets_and_splits(mirror: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(data), "--copy", "--datasets", "cirr,infoseek", "--splits", "test")
    assert result.exit_code == 0, result.output
    got = sorted(files_under(data).keys() - {k for k in files_under(data) if k.startswith((".uniir-download", "mbeir_images"))})
    assert got == sorted(
        ["instructions/candidate_metadata.tsv"] * (mirror / "instructions/candidate_metadata.tsv").is_file()
        + ["instructions/query_instructions.tsv"]
        + [f"{kind}" for pair in ("cirr_task7", "infoseek_task6", "infoseek_task8") for kind in (
            f"query/test/mbeir_{pair}_test.jsonl", f"qrels/test/mbeir_{pair}_test_qrels.txt", f"cand_pool/local/mbeir_{pair}_cand_pool.jsonl")]
    )
    sample = data / "query/test/mbeir_cirr_task7_test.jsonl"
    assert not os.path.samefile(sample, mirror / "query/test/mbeir_cirr_task7_test.jsonl")  # copied
    folders = sorted(p.name for p in (data / "mbeir_images").iterdir())
    assert folders == ["cirr_images", "oven_images"]  # InfoSeek images live under oven_images
    assert files_under(data / "mbeir_images/oven_images") == files_under(synthetic_tiny / "mbeir_images/oven_images")


def test_from_dir_of_an_extracted_mirror_links_image_folders(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "[red]data"  # printed verbatim, never as markup
    result = invoke("mbeir", "--from-dir", str(synthetic_tiny), "--data-dir", str(data), "--datasets", "mscoco", "--no-validate")
    assert result.exit_code == 0, result.output
    assert "[red]" in result.output
    link = data / "mbeir_images/mscoco_images"
    assert link.is_symlink() and link.resolve() == (synthetic_tiny / "mbeir_images/mscoco_images").resolve()
    assert [p.name for p in (data / "mbeir_images").iterdir()] == ["mscoco_images"]


def test_from_dir_layout_problems_are_one_line_errors(mirror: Path, tmp_path: Path) -> None:
    shutil.rmtree(mirror / "qrels")
    line = one_line_error(invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d")))
    assert "does not look like an M-BEIR clone" in line and "qrels/" in line
    (mirror / "qrels").mkdir()
    pointer = mirror / "query/test/mbeir_cirr_task7_test.jsonl"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    line = one_line_error(invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d")))
    assert "git-lfs pointer" in line and "git lfs pull" in line
    (mirror / dl.IMAGE_PARTS[2]).unlink()
    line = one_line_error(invoke("mbeir", "--what", "images", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d")))
    assert dl.IMAGE_PARTS[2] in line


def test_free_disk_check_is_a_clear_error_with_numbers(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 999, 999))
    line = one_line_error(invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d")))
    assert "not enough free disk space" in line and "999 B free" in line and "need" in line
    assert not (tmp_path / "d" / "mbeir_images").exists()
    ok = invoke("mbeir", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d"), "--no-disk-check", "--no-validate")
    assert ok.exit_code == 0, ok.output


def test_offline_with_an_empty_cache_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    line = one_line_error(invoke("mbeir", "--data-dir", str(tmp_path / "d")))
    assert "not in the Hugging Face cache" in line and "HF_HUB_OFFLINE=0" in line and "--from-dir" in line
    line = one_line_error(invoke("checkpoint", "blip-ff-large"))
    assert "blip_ff_large.pth" in line and "HF_HUB_CACHE" in line


def test_hub_cache_from_the_environment_is_used_without_network(synthetic_tiny: Path, tmp_path: Path) -> None:
    """A real process with HF_HUB_CACHE=<tmp> HF_HUB_OFFLINE=1: the library reads the env, not us."""
    base = tmp_path / "hub" / "datasets--TIGER-Lab--M-BEIR"
    snapshot = base / "snapshots" / COMMIT
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    for name in METADATA:
        shutil.copytree(synthetic_tiny / name, snapshot / name)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "uniir_cli", "download", "mbeir", "--what", "metadata", "--splits", "test",
            "--no-validate", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    sample = "qrels/test/mbeir_nights_task4_test_qrels.txt"
    assert (tmp_path / "data" / sample).read_bytes() == (synthetic_tiny / sample).read_bytes()
    assert not (tmp_path / "data" / "query/train").exists()


def test_checkpoint_list_shows_sizes_and_what_each_reproduces() -> None:
    result = invoke("checkpoint", "--list")
    assert result.exit_code == 0, result.output
    for text in ["clip-sf-large", "blip-ff-large", "5.1 GB", "7.5 GB", "47.5", "50.2", "44.3", "46.5", "48.9/50.6", "45.5/46.8",
                 "checkpoint/CLIP_SF/clip_sf_large.pth", "checkpoint/BLIP_FF/blip_ff_large.pth"]:
        assert text in result.output, text
    assert one_line_error(invoke("checkpoint")).startswith("error: name a checkpoint")


def test_download_help_has_examples() -> None:
    for args in (["--help"], ["mbeir", "--help"], ["checkpoint", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Example" in result.output and "uniir download" in result.output


def test_progress_bars_tolerate_events_after_a_finished_small_file() -> None:
    from uniir_cli.commands.download import _Bars
    from uniir_cli.download.parts import ProgressEvent

    with _Bars() as bars:
        for done in (0, 10, 10):  # huggingface_hub may report again after the end
            bars(ProgressEvent("download", "query/test/x.jsonl", done, 10))
        bars(ProgressEvent("extract", "mbeir_images.tar.gz.part-00", 5, 10))
    assert ("download", "query/test/x.jsonl") in bars.removed


def test_from_dir_copy_of_an_extracted_mirror_counts_the_image_folders(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uniir_cli.download.disk import folder_bytes, human_bytes
    from uniir_cli.download.files import walk_metadata
    from uniir_cli.download.selection import Selection

    meta = sum(p.stat().st_size for p in walk_metadata(synthetic_tiny, Selection.parse(None, ["mscoco"])).values())
    images = folder_bytes(synthetic_tiny / "mbeir_images/mscoco_images")
    usage, free = namedtuple("usage", "total used free"), [meta + images - 1]
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage(10**12, 0, free[0]))
    args = ("mbeir", "--from-dir", str(synthetic_tiny), "--data-dir", str(tmp_path / "d"), "--datasets", "mscoco", "--copy", "--no-validate")
    line = one_line_error(invoke(*args))
    assert f"need {human_bytes(meta + images)}" in line and "image folders to copy" in line
    free[0] = meta + images
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    copied = tmp_path / "d/mbeir_images/mscoco_images"
    assert not copied.is_symlink() and files_under(copied) == files_under(synthetic_tiny / "mbeir_images/mscoco_images")


def test_images_named_by_the_selected_records_are_checked_at_the_end(mirror: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("mbeir", "--from-dir", str(mirror), "--data-dir", str(data), "--datasets", "cirr", "--splits", "test")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "validation: ok" in result.output and "images: all " in result.output and " exist" in result.output
    # MSCOCO's records arrive without its images (not selected: not reported); a selected image disappears.
    meta_only = invoke("mbeir", "--what", "metadata", "--from-dir", str(mirror), "--data-dir", str(data), "--datasets", "mscoco")
    assert meta_only.exit_code == 0 and "image references" not in meta_only.output, meta_only.output  # --what metadata
    cirr_query = next(iter((data / "query/test/mbeir_cirr_task7_test.jsonl").read_text().splitlines()))
    lost = data / json.loads(cirr_query)["query_img_path"]
    lost.unlink()
    again = invoke(*args[:1], "--what", "images", *args[1:])
    assert again.exit_code == 0, again.output
    out = " ".join(again.output.split())
    assert "already extracted" in out and "validation: ok" in out  # --what images validates the metadata present
    assert "images: 1 image file(s) named by the selected records are missing" in out, out
    assert f"missing: {lost} (8:" in out and out.count("missing: ") == 1
    skipped = invoke(*args[:1], "--what", "images", "--no-validate", *args[1:])
    assert "missing" not in skipped.output and "validation" not in skipped.output


def test_what_images_without_metadata_says_why_nothing_is_validated(mirror: Path, tmp_path: Path) -> None:
    result = invoke("mbeir", "--what", "images", "--from-dir", str(mirror), "--data-dir", str(tmp_path / "d"), "--datasets", "nights")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "validation skipped" in out and "--what metadata" in out and "images not checked against the records" in out


def test_low_disk_help_says_what_a_rerun_downloads_again() -> None:
    result = invoke("mbeir", "--help")
    text = " ".join(result.output.replace("│", " ").split())
    assert "--low-disk" in text and "one part (45 GiB)" in text
    assert "has to download again the parts before the one it stopped in" in text and "not rewritten" in text
    line = one_line_error(invoke("mbeir", "--low-disk", "--from-dir", ".", "--data-dir", "x"))
    assert "--low-disk applies to Hub downloads" in line
