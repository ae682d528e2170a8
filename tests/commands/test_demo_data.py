"""`uniir demo --data-only`: writes the synthetic M-BEIR and prints a summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.data import benchmark as bm
from uniir_cli.data.synthetic import MARKER

runner = CliRunner()
APP = build_app()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "mbeir"
    result = runner.invoke(APP, ["demo", "--data-only", "--data-dir", str(root), "--size", "tiny", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "test queries" in result.output and "union test pool" in result.output and "images" in result.output
    return root


def test_data_only_writes_the_tree(tree: Path) -> None:
    assert (tree / MARKER).is_file()
    for pair in bm.EVAL_PAIRS:
        assert (tree / pair.query_file("test")).is_file()
    assert (tree / bm.union_pool_file("test")).is_file()


def test_second_run_keeps_the_identical_tree(tree: Path) -> None:
    result = runner.invoke(APP, ["demo", "--data-only", "--data-dir", str(tree), "--size", "tiny", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "kept" in result.output


def test_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIIR_DATA_DIR", raising=False)
    result = runner.invoke(APP, ["demo", "--data-only"])
    assert result.exit_code == 2 and "--data-dir" in result.output
    (tmp_path / "keep.txt").write_text("x")
    result = runner.invoke(APP, ["demo", "--data-only", "--data-dir", str(tmp_path), "--size", "tiny"])
    assert result.exit_code == 2 and "not a synthetic M-BEIR tree" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    result = runner.invoke(APP, ["demo", "--data-only", "--data-dir", str(tmp_path / "new"), "--size", "lots"])
    assert result.exit_code == 2 and "unknown synthetic size" in result.output


def test_validate_accepts_the_synthetic_tree_with_images(tree: Path) -> None:
    result = runner.invoke(APP, ["validate", "--data-dir", str(tree), "--images"])
    assert result.exit_code == 0, result.output
