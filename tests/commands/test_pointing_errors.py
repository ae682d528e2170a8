"""Errors that point the right way: a missing run is called missing, search says what to run
before it loads a model, JSON and pickle problems are said in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app

runner = CliRunner()


def _error(args: list[str]) -> str:
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return " ".join(result.output[result.output.index("error:"):].split())


@pytest.mark.parametrize("args", [
    ["eval", "--pool", "both"], ["report"], ["search", "--text", "a red bus"], ["score"],
])
def test_a_missing_run_is_called_missing(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "runs/missing"
    message = _error([args[0], "--run-dir", str(missing), *args[1:]])
    assert f"{missing} is not a uniir run directory (no run.toml)" in message


def test_search_says_what_to_run_before_it_loads_a_model(synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uniir_cli.evaluation import interactive_search

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text('[model]\nname = "clip_sf"\nsize = "large"\n')
    monkeypatch.setattr(interactive_search, "load_retriever", lambda *a: pytest.fail("the model was loaded first"))
    message = _error(["search", "--run-dir", str(run), "--data-dir", str(synthetic_tiny), "--text", "a red bus"])
    assert "has no embeddings yet; run `uniir embed` first" in message


def test_malformed_json_is_said_in_words(synthetic_tiny: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    queries = data / "query/test/mbeir_nights_task4_test.jsonl"
    queries.write_text('{"qid": "4:1", "query_txt": "unterminated\n')
    message = _error(["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(tmp_path / "r"), "--tasks", "nights_task4"])
    assert f"{queries}:1: malformed JSON (Invalid control character at column" in message and "at at" not in message


def test_a_file_that_is_no_torch_checkpoint_is_said_in_words(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 2)
    message = _error(["convert", str(junk), "--out", str(tmp_path / "out")])
    assert "not a readable torch checkpoint" in message and "weights_only" not in message
