"""Two evaluated runs of the tiny untrained CLIP-SF on a copy of the tiny synthetic M-BEIR (the
copy is theirs alone, so a test may put a symlink into it): `a` with seed 0, `b` with seed 1
(another random model, so the two rank differently)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app


@dataclass(frozen=True)
class Runs:
    a: Path
    b: Path
    data: Path


def _evaluate(run_dir: Path, data: Path, seed: int) -> None:
    result = CliRunner().invoke(build_app(), [
        "eval", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run_dir), "--pool", "both",
        "--set", "embed.shard_size=16", "--set", f"run.seed={seed}",
    ])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def served_runs(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    shutil.copytree(synthetic_tiny, data)
    runs = Runs(root / "run-a", root / "run-b", data)
    _evaluate(runs.a, data, seed=0)
    _evaluate(runs.b, data, seed=1)
    return runs
