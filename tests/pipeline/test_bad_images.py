"""A corrupt image stops `uniir eval` with the record named, or is skipped and counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir


def test_corrupt_image_error_or_skip(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    query = json.loads((data / "query/test/mbeir_nights_task4_test.jsonl").read_text().splitlines()[0])
    (data / query["query_img_path"]).write_bytes(b"not a jpeg")
    app = build_app()
    args = ["eval", "--preset", "demo", "--data-dir", str(data), "--tasks", "nights_task4"]

    failed = CliRunner().invoke(app, [*args, "--run-dir", str(tmp_path / "strict")])
    assert failed.exit_code == 2
    assert f"image of {query['qid']} is unreadable" in failed.output and query["query_img_path"] in failed.output

    skipped = CliRunner().invoke(app, [*args, "--run-dir", str(tmp_path / "lenient"), "--on-bad-image", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert RunDir(tmp_path / "lenient").read_manifest()["skipped_images"]["nights_task4_test"] == 1
