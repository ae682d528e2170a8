"""Approximate faiss indexes: too few training vectors is one line with a fitting factory,
short probe results are padded (never a crash), search-time settings apply, and the recall
`uniir index` reports equals an independent check against exact search."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.evaluation.retrieval import read_results

runner = CliRunner()


@pytest.fixture(scope="module")
def embedded(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("approx") / "run"
    result = runner.invoke(build_app(), ["embed", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run),
                                         "--pool", "global"])
    assert result.exit_code == 0, result.output
    return run


def _index(run: Path, *settings: str) -> object:
    args = ["index", "--run-dir", str(run), "--pool", "global"]
    return runner.invoke(build_app(), args + [a for s in settings for a in ("--set", s)])


def test_too_few_training_vectors_is_one_line_with_a_fitting_factory(embedded: Path) -> None:
    result = _index(embedded, 'index.factory="IVF4096,Flat"')
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    message = " ".join(result.output.split())
    assert "has 4,096 IVF lists but the pool has only" in message and ",Flat\" (about the square root" in message


def _exact_top10(run: Path) -> tuple[np.ndarray, np.ndarray]:
    def stack(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        shards = sorted(folder.glob("shard-*[0-9].npy"))
        vectors = np.concatenate([np.load(p).astype(np.float32) for p in shards])
        ids = np.concatenate([np.load(p.with_suffix(".ids.npy")) for p in shards])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ids

    pool, pool_ids = stack(run / "embeddings/candidates_test")
    queries = np.concatenate([stack(d)[0] for d in sorted((run / "embeddings").iterdir()) if d.name != "candidates_test"])
    top = np.argsort(-(queries @ pool.T), axis=1, kind="stable")[:, :10]
    return queries, pool_ids[top]


def test_reported_recall_equals_an_independent_check_and_nprobe_applies(embedded: Path) -> None:
    queries, exact = _exact_top10(embedded)
    for nprobe in (1, 4):
        result = _index(embedded, 'index.factory="IVF4,Flat"', f"index.nprobe={nprobe}")
        assert result.exit_code == 0, result.output
        info = json.loads((embedded / "index/global_test/pool.json").read_text())
        assert info["nprobe"] == nprobe and info["recall_sample"] == len(queries)  # fewer than 1000: all of them
        index = faiss.read_index(str(embedded / "index/global_test/faiss.index"))
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        _, found = index.search(queries, 10)
        independent = np.mean([len(np.intersect1d(e, f[f >= 0])) / 10 for e, f in zip(exact, found)])
        assert info["recall_at_10_vs_exact"] == pytest.approx(independent, abs=1e-4)
        assert f"recall@10 vs exact {independent:.1%}" in " ".join(result.output.split())
    assert info["recall_at_10_vs_exact"] == 1.0  # all 4 lists probed: exact


def test_short_probe_results_are_padded_and_retrieval_completes(embedded: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert _index(embedded, 'index.factory="IVF64,Flat"', "index.nprobe=1").exit_code == 0
    result = runner.invoke(build_app(), ["retrieve", "--run-dir", str(embedded), "--pool", "global"])
    assert result.exit_code == 0, result.output
    results = read_results(embedded / "retrieval/cirr_task7_test__global.npz")
    assert (results.ids == -1).any() and (results.ids[:, 0] != -1).all()  # short rows padded at their ends
    rows = [line.split() for line in (embedded / "retrieval/cirr_task7_test__global.run").read_text().splitlines()]
    assert len(rows) == int((results.ids != -1).sum())  # padding is left out of the run file
    assert all(int(did.split(":")[1]) > 0 for _, _, did, *_ in rows)
    assert any("got fewer than 10 candidates from the approximate index" in r.getMessage() for r in caplog.records)
