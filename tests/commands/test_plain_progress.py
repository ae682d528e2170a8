"""With output piped (CI logs, nohup, SLURM), commands print plain progress lines instead of
nothing until the end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.commands import steps


def test_training_and_embedding_print_plain_lines_when_piped(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "PLAIN_EVERY_S", 0.0)
    run = tmp_path / "run"
    trained = CliRunner().invoke(build_app(), ["train", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run),
                                               "--set", "train.batch_size=16", "--set", "train.max_steps=4"])
    assert trained.exit_code == 0, trained.output
    lines = re.findall(r"^train step: (\d+)/4 .*loss [\d.]+ acc [\d.]+ lr \S+ \d+ samples/s$", trained.output, re.M)
    assert [int(n) for n in lines] == [1, 2, 3, 4]
    embedded = CliRunner().invoke(build_app(), ["embed", "--run-dir", str(run), "--tasks", "cirr_task7"])
    assert embedded.exit_code == 0, embedded.output
    assert re.search(r"^candidates_test: [\d,]+/[\d,]+", embedded.output, re.M), embedded.output
    assert "━" not in embedded.output  # no bar drawing in a log


def test_plain_lines_are_throttled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(steps, "PLAIN_EVERY_S", 3600.0)
    plain = steps.PlainLines()
    for done in range(0, 101):
        plain("candidates_test", done, 100)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(printed) == 1 and printed[0].startswith("candidates_test: 100/100")


def test_report_tables_keep_every_dataset_name_at_80_columns(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    result = CliRunner().invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir",
                                              str(tmp_path / "run"), "--tasks", "mscoco_task0", "--tasks", "mscoco_task3"])
    assert result.exit_code == 0, result.output
    from uniir_cli.evaluation.pipeline import evaluate

    tables = evaluate(run_dir=tmp_path / "run").tables
    screen = io.StringIO()
    monkeypatch.setattr(steps, "console", Console(file=screen, width=80))
    steps.print_tables(tables)
    text = screen.getvalue()
    assert "mscoco_task0" in text and "mscoco_task3" in text and "…" not in text
