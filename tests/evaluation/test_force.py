"""A new run's defaults (`runs/<preset>-<timestamp>`, `UNIIR_DATA_DIR`) and `--force` redoing steps.

One small `uniir eval` (tiny CLIP-SF, one pair, local pool) on the synthetic M-BEIR, run from
a scratch working directory without --run-dir and without --data-dir.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir, now

runner = CliRunner()
APP = build_app()
EVAL = ["eval", "--tasks", "mscoco_task0", "--pool", "local"]


@pytest.fixture(scope="module")
def new_run(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dt.datetime, dt.datetime]:
    """(run directory, time before, time after) of an eval given neither --run-dir nor --data-dir."""
    cwd = tmp_path_factory.mktemp("cwd")
    here = Path.cwd()
    os.chdir(cwd)
    try:
        before = dt.datetime.now().replace(microsecond=0)
        result = runner.invoke(APP, [*EVAL, "--preset", "demo"], env={"UNIIR_DATA_DIR": str(synthetic_tiny)})
        after = dt.datetime.now()
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0], before, after


def test_default_run_dir_is_runs_preset_timestamp(new_run: tuple[Path, dt.datetime, dt.datetime]) -> None:
    run_dir, before, after = new_run
    match = re.fullmatch(r"demo-(\d{8}-\d{6})", run_dir.name)
    assert match, run_dir.name
    assert before <= dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S") <= after
    assert RunDir(run_dir).read_manifest()["steps"]["score"]["status"] == "done"


def test_data_dir_comes_from_uniir_data_dir(new_run: tuple[Path, dt.datetime, dt.datetime], synthetic_tiny: Path) -> None:
    run_dir, _, _ = new_run
    assert RunDir(run_dir).read_manifest()["data_dir"] == str(synthetic_tiny.resolve())


def test_no_data_dir_at_all_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        APP, [*EVAL, "--preset", "demo", "--run-dir", str(tmp_path / "run")], env={"UNIIR_DATA_DIR": None}
    )
    assert result.exit_code == 2
    assert "no data directory: pass --data-dir (or set UNIIR_DATA_DIR)" in result.output


def test_force_redoes_unchanged_steps(new_run: tuple[Path, dt.datetime, dt.datetime]) -> None:
    run_dir, _, _ = new_run
    run = RunDir(run_dir)
    run_file = run.run_file("mscoco_task0_test", "local")  # the retrieve step's artefact
    original = run_file.read_bytes()
    run_file.write_bytes(b"tampered\n")
    tampered_mtime = run_file.stat().st_mtime_ns
    steps_before = run.read_manifest()["steps"]

    result = runner.invoke(APP, [*EVAL, "--run-dir", str(run_dir)])  # data dir: the one the run recorded
    assert result.exit_code == 0, result.output
    assert run.read_manifest()["steps"] == steps_before  # every step skipped ...
    assert run_file.read_bytes() == b"tampered\n" and run_file.stat().st_mtime_ns == tampered_mtime  # ... untouched

    started = now()
    result = runner.invoke(APP, [*EVAL, "--run-dir", str(run_dir), "--force"])
    assert result.exit_code == 0, result.output
    steps = run.read_manifest()["steps"]
    for step in ("embed", "index", "retrieve", "score"):
        assert steps[step]["status"] == "done" and steps[step]["started"] >= started, (step, steps[step])
    assert run_file.stat().st_mtime_ns != tampered_mtime
    assert run_file.read_bytes() == original  # rewritten, identical: the pipeline is deterministic
