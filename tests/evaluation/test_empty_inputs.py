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
