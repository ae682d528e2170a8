"""Evaluating trees that are not (only) M-BEIR: a declared dataset with id 12 next to the
synthetic M-BEIR in one union pool (ids, pools and Recall against a brute-force computation),
a partial tree without --tasks, comma-separated --tasks, validate on both, and the report's
reference columns only for pairs that have published numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.data.own_data import write_photos
from tests.evaluation.test_eval_end_to_end import _brute_force_recall
from uniir_cli.app import build_app
from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.data.catalog import load_catalog
from uniir_cli.data.tree_check import validate_data
from uniir_cli.rundir import RunDir

runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_tree(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic M-BEIR plus an imported dataset 'photos' (id 12), merged into its union pool."""
    base = tmp_path_factory.mktemp("mixed")
    data = base / "data"
    shutil.copytree(synthetic_tiny, data)
    result = runner.invoke(build_app(), ["data", "import", str(write_photos(base / "photos")), "--into", str(data),
                                         "--name", "photos", "--id", "12"])
    assert result.exit_code == 0, result.output
    return data


def test_a_declared_dataset_next_to_mbeir_in_one_union_pool(mixed_tree: Path, tmp_path: Path) -> None:
    assert validate_data(mixed_tree, splits=["test"]).ok
    run_dir = tmp_path / "run"
    result = runner.invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(mixed_tree), "--run-dir", str(run_dir),
                                         "--pool", "both"])
    assert result.exit_code == 0, result.output
    run = RunDir(run_dir)
    metrics = json.loads(run.metrics_json.read_text())
    expected = {p.name for p in EVAL_PAIRS} | {"photos_task0", "photos_task3"}
    assert set(metrics["pairs"]["local"]) == set(metrics["pairs"]["global"]) == expected
    assert metrics["average"]["local"]["pairs"] == 18 and metrics["average"]["local"]["complete"]
    union = np.load(run.pool_ids_file("global_test"))
    own = [json.loads(line)["did"] for line in (mixed_tree / "cand_pool/local/mbeir_photos_task0_cand_pool.jsonl").read_text().splitlines()]
    assert {12 * 10_000_000 + int(d.split(":")[1]) for d in own} <= set(union.tolist())  # ids hash as upstream
    assert set(np.load(run.pool_ids_file("photos_task0")).tolist()) == {12 * 10_000_000 + int(d.split(":")[1]) for d in own}
    catalog = load_catalog(mixed_tree)
    for name in ("photos_task0", "photos_task3", "mscoco_task0"):
        pair = catalog.pair_named(name)
        for pool in ("local", "global"):
            for k in pair.recall_ks:
                assert metrics["pairs"][pool][name][f"Recall@{k}"] == _brute_force_recall(run, mixed_tree, pair, pool, k), (name, pool, k)
    report = runner.invoke(build_app(), ["report", "--run-dir", str(run_dir), "--references", "--csv"])
    assert report.exit_code == 0, report.output
    rows = [line.split(",") for line in report.output.splitlines()]
    header = rows[0]
    paper = header.index("paper T6 uniir_clip_sf")
    photos = next(r for r in rows if r[2] == "photos_task0")
    assert photos[paper] == "" and photos[header.index(f"Δ {header[paper]}")] == ""
    assert next(r for r in rows if r[2] == "mscoco_task0")[paper] == "81.1"
    assert any(r[2] == "Average (18 pairs)" for r in rows)


def test_a_partial_tree_is_evaluated_on_its_pairs_and_tasks_take_commas(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    kept = ("mscoco_task0", "fashion200k_task3", "nights_task4", "cirr_task7")
    for pair in EVAL_PAIRS:
        if pair.name not in kept:
            for path in (pair.query_file("test"), pair.qrels_file("test"), pair.query_file("val"), pair.qrels_file("val")):
                (data / path).unlink(missing_ok=True)
    report = validate_data(data, splits=["test"])
    assert report.ok and report.errors == 0
    assert {r.name for r in report.rows if r.split == "test"} == {*kept, "union pool"}
    result = runner.invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(tmp_path / "all"),
                                         "--pool", "local"])
    assert result.exit_code == 0, result.output
    assert f"pairs found in the tree (4): {', '.join(kept)}" in result.output
    metrics = json.loads((tmp_path / "all/metrics/metrics.json").read_text())
    assert list(metrics["pairs"]["local"]) == list(kept)
    two = runner.invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(tmp_path / "two"),
                                      "--pool", "local", "--tasks", "cirr_task7,mscoco_task0"])
    assert two.exit_code == 0, two.output
    assert set(json.loads((tmp_path / "two/metrics/metrics.json").read_text())["pairs"]["local"]) == {"cirr_task7", "mscoco_task0"}
    report = runner.invoke(build_app(), ["report", "--run-dir", str(tmp_path / "all"), "--references", "--markdown"])
    assert "Average (4 pairs)" in report.output and "paper T6" in report.output
    checked = runner.invoke(build_app(), ["validate", "--data-dir", str(data), "--split", "test", "--tasks", "nights_task4,cirr_task7"])
    assert checked.exit_code == 0, checked.output
    missing = runner.invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(tmp_path / "x"),
                                          "--tasks", "oven_task6"])
    assert missing.exit_code == 2 and "oven_task6" in missing.output
