"""A run's settings are frozen only by a command that completed, and one-off flags do not stick."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir


def _eval(*args: str) -> object:
    return CliRunner().invoke(build_app(), ["eval", *args])


def test_a_failed_first_command_leaves_no_settings_behind(synthetic_tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    failed = _eval("--preset", "clip-sf-large", "--data-dir", str(synthetic_tiny), "--run-dir", str(run), "--tasks", "nights_task4")
    assert failed.exit_code == 2, failed.output  # OpenAI weights are not in the (offline) cache
    assert not (run / "run.toml").exists()
    retry = _eval("--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run), "--tasks", "nights_task4")
    assert retry.exit_code == 0, retry.output
    assert 'size = "tiny"' in (run / "run.toml").read_text()


def test_rejected_settings_and_one_off_flags_do_not_stick(synthetic_tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _eval("--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run), "--pool", "global", "--rag")
    assert first.exit_code == 0, first.output
    settings = (run / "run.toml").read_text()
    assert 'pool = "global"' in settings and "rag = false" in settings  # --rag was for that command only
    assert list((run / "retrieval").glob("*_retrieved.jsonl"))

    rejected = _eval("--run-dir", str(run), "--pool", "global", "--set", 'index.factory="Nonsense,Flat"')
    assert rejected.exit_code != 0
    assert (run / "run.toml").read_text() == settings

    steps = RunDir(run).read_manifest()["steps"]
    plain = _eval("--run-dir", str(run), "--pool", "global")  # without --rag: retrieval is not redone
    assert plain.exit_code == 0, plain.output
    assert RunDir(run).read_manifest()["steps"]["retrieve"]["ended"] == steps["retrieve"]["ended"]
