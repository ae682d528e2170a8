"""One writer per data directory, and image folders that count as present only when complete
(`uniir download mbeir --from-dir D --copy`, with real processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.download.files import JOURNAL_DIR
from uniir_cli.download.mbeir import data_dir_lock

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _args(mirror: Path, data: Path, *extra: str) -> list[str]:
    return ["download", "mbeir", "--from-dir", str(mirror), "--data-dir", str(data), "--copy", "--no-validate", *extra]


def _process(mirror: Path, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "uniir_cli", *_args(mirror, data)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _images(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_second_writer_is_refused_in_one_line_and_loses_nothing(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with data_dir_lock(data).hold("another download"):
        refused = _process(synthetic_tiny, data)
        out, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, out + err
    assert err.strip().count("\n") == 0 and f"is being written by pid {os.getpid()}" in err
    assert not (data / "mbeir_images").exists()
    result = CliRunner().invoke(build_app(), _args(synthetic_tiny, data))
    assert result.exit_code == 0, result.output
    assert _images(data / "mbeir_images") == _images(synthetic_tiny / "mbeir_images")


def test_two_downloads_at_once_leave_a_complete_tree(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    processes = [_process(synthetic_tiny, data) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    assert all(code == 0 or (code == 2 and "is being written by" in err) for code, err in outcomes), outcomes
    assert any(code == 0 for code, _ in outcomes)
    assert _images(data / "mbeir_images") == _images(synthetic_tiny / "mbeir_images")
    assert not list((data / "mbeir_images").glob(".*uniir-tmp"))


def test_an_incomplete_image_folder_is_repaired_by_a_rerun(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner, app = CliRunner(), build_app()
    assert runner.invoke(app, _args(synthetic_tiny, data)).exit_code == 0
    copied = data / "mbeir_images/cirr_images"
    # What two racing copies used to leave: a folder missing files, no marker, a temporary leftover.
    for image in sorted(copied.rglob("*.jpg"))[::2]:
        image.unlink()
    (data / JOURNAL_DIR / "folders/cirr_images.json").unlink()
    shutil.copytree(synthetic_tiny / "mbeir_images/nights_images", data / "mbeir_images/.cirr_images.uniir-tmp")
    again = runner.invoke(app, _args(synthetic_tiny, data))
    assert again.exit_code == 0, again.output
    assert "cirr_images (present)" not in again.output and "nights_images (present)" in again.output
    assert _images(data / "mbeir_images") == _images(synthetic_tiny / "mbeir_images")
    assert not (data / "mbeir_images/.cirr_images.uniir-tmp").exists()
    # A complete-looking copy that lost a file afterwards: --force copies every folder again.
    next(copied.rglob("*.jpg")).unlink()
    assert runner.invoke(app, _args(synthetic_tiny, data, "--force")).exit_code == 0
    assert _images(data / "mbeir_images") == _images(synthetic_tiny / "mbeir_images")
