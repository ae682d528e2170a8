"""metrics/*.jsonl are appended a line at a time: readers and the resume truncation drop a
torn last line (a run killed mid-append) and reject damage anywhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uniir_cli.errors import RunDirError
from uniir_cli.training.metrics_log import read_metrics_log, truncate_log


def _log(path: Path, steps: range, tail: str = "") -> Path:
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps) + tail)
    return path


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = _log(tmp_path / "train.jsonl", range(1, 4), tail='{"step": 4, "loss": 0.2')
    assert [r["step"] for r in read_metrics_log(path)] == [1, 2, 3]


def test_resume_truncation_keeps_complete_lines_up_to_the_step(tmp_path: Path) -> None:
    path = _log(tmp_path / "train.jsonl", range(1, 6), tail='{"step": 6, "lo')
    truncate_log(path, 3)
    assert path.read_text() == "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 4))
    truncate_log(tmp_path / "absent.jsonl", 3)  # nothing logged yet: nothing to do
    assert not (tmp_path / "absent.jsonl").exists()


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "val.jsonl"
    path.write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n')
    with pytest.raises(RunDirError, match=r"val.jsonl:2: not a JSON record"):
        read_metrics_log(path)
