"""Nothing is read from outside the folder uniir is given: links in a mirror that lead out of
it, folder loops and record image paths that climb out of the data root are refused, naming
the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app


def _mirror(synthetic_tiny: Path, tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    shutil.copytree(synthetic_tiny, mirror)
    return mirror


def _download(mirror: Path, data: Path, *extra: str) -> object:
    return CliRunner().invoke(build_app(), ["download", "mbeir", "--from-dir", str(mirror), "--data-dir", str(data),
                                            "--no-validate", *extra])


def _one_line(result: object) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.parametrize("copy", [False, True])
def test_a_metadata_link_leading_outside_the_mirror_is_refused(synthetic_tiny: Path, tmp_path: Path, copy: bool) -> None:
    mirror = _mirror(synthetic_tiny, tmp_path)
    secret = tmp_path / "secret.jsonl"
    secret.write_text("private\n")
    linked = mirror / "query/test/mbeir_cirr_task7_test.jsonl"
    linked.unlink()
    linked.symlink_to(secret)
    data = tmp_path / "data"
    line = _one_line(_download(mirror, data, *(["--copy"] if copy else [])))
    assert str(linked) in line and "leads outside the mirror" in line
    assert not any(p.is_file() and p.read_bytes() == b"private\n" for p in data.rglob("*"))


@pytest.mark.parametrize("copy", [False, True])
def test_an_image_link_leading_outside_the_mirror_is_refused(synthetic_tiny: Path, tmp_path: Path, copy: bool) -> None:
    mirror = _mirror(synthetic_tiny, tmp_path)
    (tmp_path / "outside.jpg").write_bytes(b"private")
    link = next((mirror / "mbeir_images/cirr_images").rglob("*.jpg"))
    link.unlink()
    link.symlink_to(tmp_path / "outside.jpg")
    line = _one_line(_download(mirror, tmp_path / "data", *(["--copy"] if copy else [])))
    assert str(link) in line and "leads outside the mirror" in line


def test_a_folder_loop_in_an_image_folder_is_one_line(synthetic_tiny: Path, tmp_path: Path) -> None:
    mirror = _mirror(synthetic_tiny, tmp_path)
    loop = mirror / "mbeir_images/nights_images/loop"
    loop.symlink_to(loop.parent, target_is_directory=True)
    line = _one_line(_download(mirror, tmp_path / "data", "--copy"))
    assert str(loop) in line and "folder links" in line


def test_a_folder_loop_in_the_metadata_is_one_line(synthetic_tiny: Path, tmp_path: Path) -> None:
    mirror = _mirror(synthetic_tiny, tmp_path)
    (mirror / "qrels/test/again").symlink_to(mirror / "qrels/test", target_is_directory=True)
    line = _one_line(_download(mirror, tmp_path / "data", "--copy"))
    assert "a folder loop" in line


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/hostname", "mbeir_images/../../outside.jpg"])
def test_a_record_image_path_leaving_the_data_root_names_the_line(synthetic_tiny: Path, tmp_path: Path, path: str) -> None:
    data = _mirror(synthetic_tiny, tmp_path)
    queries = data / "query/test/mbeir_nights_task4_test.jsonl"
    lines = queries.read_text().splitlines()
    record = json.loads(lines[1])
    record["query_img_path"] = path
    lines[1] = json.dumps(record)
    queries.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir",
                                              str(tmp_path / "run"), "--tasks", "nights_task4"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    squeeze = lambda text: "".join(text.split())  # noqa: E731  (rich wraps long lines)
    assert squeeze(f"{queries}:2: query {record['qid']}: field 'query_img_path' = {path!r} leaves the data directory") in squeeze(
        result.output)
    assert not (tmp_path / "run/metrics").exists()
