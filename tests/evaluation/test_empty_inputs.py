"""An empty query set, local pool or qrels file is an error naming the file, never a 0 in the average."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app


@pytest.mark.parametrize(
    ("emptied", "says"),
    [
        ("query/test/mbeir_nights_task4_test.jsonl", "no queries; nights_task4 would score 0"),
        ("cand_pool/local/mbeir_nights_task4_cand_pool.jsonl", "the local pool of nights_task4 holds no candidates"),
        ("qrels/test/mbeir_nights_task4_test_qrels.txt", "no relevance judgements; nights_task4 cannot be scored"),
    ],
)
def test_an_empty_file_is_an_error_naming_it(synthetic_tiny: Path, tmp_path: Path, emptied: str, says: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    (data / emptied).write_text("")
    result = CliRunner().invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir",
                                              str(tmp_path / "run"), "--tasks", "nights_task4", "--tasks", "cirr_task7"])
    assert result.exit_code == 2, result.output
    assert says in result.output and str(data / emptied) in result.output.replace("\n", "")
    assert not (tmp_path / "run/metrics/metrics.json").exists()


def test_one_task_on_the_global_pool_needs_only_its_own_local_pool(synthetic_tiny: Path, tmp_path: Path) -> None:
    """The global candidates come from the union test pool: the other 15 local pools may be absent."""
    import json

    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    for pool in (data / "cand_pool/local").iterdir():
        if pool.name != "mbeir_nights_task4_cand_pool.jsonl":
            pool.unlink()
    args = ["eval", "--preset", "demo", "--tasks", "nights_task4", "--pool", "both"]
    partial = CliRunner().invoke(build_app(), [*args, "--data-dir", str(data), "--run-dir", str(tmp_path / "partial")])
    assert partial.exit_code == 0, partial.output
    full = CliRunner().invoke(build_app(), [*args, "--data-dir", str(synthetic_tiny), "--run-dir", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    # Without the union file the 16 local pools make the global pool: the same candidates.
    locals_only = tmp_path / "locals-only"
    shutil.copytree(synthetic_tiny, locals_only)
    (locals_only / "cand_pool/global/mbeir_union_test_cand_pool.jsonl").unlink()
    union = CliRunner().invoke(build_app(), [*args, "--data-dir", str(locals_only), "--run-dir", str(tmp_path / "locals")])
    assert union.exit_code == 0, union.output
    runs = ("partial", "full", "locals")
    metrics = [json.loads((tmp_path / run / "metrics/metrics.json").read_text())["pairs"] for run in runs]
    assert metrics[0] == metrics[1] == metrics[2] and set(metrics[0]) == {"local", "global"}
