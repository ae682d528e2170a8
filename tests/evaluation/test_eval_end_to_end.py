"""`uniir eval` on the synthetic M-BEIR with a tiny CLIP-SF: artefacts, exact metrics, skipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.rundir import RunDir

runner = CliRunner()
APP = build_app()


@pytest.fixture(scope="module")
def evaluated(synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-eval"
    result = runner.invoke(
        APP,
        ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(run_dir), "--pool", "both",
         "--set", "embed.shard_size=16"],
    )
    assert result.exit_code == 0, result.output
    return run_dir


def test_writes_every_artefact(evaluated: Path) -> None:
    run = RunDir(evaluated)
    assert run.stored_config().model.size == "tiny"
    manifest = run.read_manifest()
    assert {s: manifest["steps"][s]["status"] for s in ("embed", "index", "retrieve", "score")} == dict.fromkeys(
        ("embed", "index", "retrieve", "score"), "done"
    )
    for pair in EVAL_PAIRS:
        for pool in ("local", "global"):
            lines = run.run_file(f"{pair.name}_test", pool).read_text().splitlines()
            fields = lines[0].split()
            assert len(fields) == 7 and fields[1] == "Q0" and fields[3] == "1" and fields[6] == str(pair.task_id)
            assert fields[5] == f"mbeir_{pair.name}_{'union' if pool == 'global' else 'single'}_pool_test_k{pair.depth}"
    metrics = json.loads(run.metrics_json.read_text())
    assert set(metrics["pairs"]) == {"local", "global"}
    assert metrics["average"]["global"]["complete"] is True
    raw = run.eval_results_tsv.read_bytes().decode()
    assert raw.count("\r\n") == 1 + 16 * 3 and raw.endswith("\r\n")  # upstream's csv module: CRLF
    tsv = [line.split("\t") for line in raw.splitlines()]
    assert tsv[0] == ["TaskID", "Task", "Dataset", "Split", "Metric", "CandPool", "Value", "UnionPool", "UnionValue"]
    for row in tsv[1:]:  # values printed as Python prints the rounded floats, as upstream
        assert row[6] == str(metrics["pairs"]["local"][row[2]][row[4]])
        assert row[7:] == ["union", str(metrics["pairs"]["global"][row[2]][row[4]])]
    assert "Average" in run.report_md.read_text()


def _brute_force_recall(run: RunDir, data: Path, pair, pool: str, k: int) -> float:
    """Independent computation from the shard files, the pool jsonl and the qrels text."""
    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        directory = run.embeddings_dir(name)
        shards = sorted(directory.glob("shard-*.ids.npy"))
        ids = np.concatenate([np.load(s) for s in shards])
        vectors = np.concatenate([np.load(str(s).replace(".ids.npy", ".npy")) for s in shards]).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ids

    queries, qids = load(f"{pair.name}_test")
    candidates, dids = load("candidates_test")
    if pool == "local":
        local = [json.loads(line)["did"] for line in (data / pair.pool_file("test")).read_text().splitlines()]
        hashed = [int(d.split(":")[0]) * 10_000_000 + int(d.split(":")[1]) for d in local]
        keep = np.isin(dids, hashed)
        candidates, dids = candidates[keep], dids[keep]
    positives: dict[int, set[int]] = {}
    for line in (data / pair.qrels_file("test")).read_text().splitlines():
        qid, _, did, _, _ = line.split()
        d, n = did.split(":")
        q, m = qid.split(":")
        positives.setdefault(int(q) * 500_000 + int(m), set()).add(int(d) * 10_000_000 + int(n))
    hits = []
    for vector, qid in zip(queries, qids):
        scores = candidates @ vector
        order = sorted(range(len(dids)), key=lambda i: (-scores[i], dids[i]))[:k]
        hits.append(float(any(dids[i] in positives[int(qid)] for i in order)))
    return round(float(np.mean(hits)), 4)


def test_metrics_match_brute_force(evaluated: Path, synthetic_tiny: Path) -> None:
    run = RunDir(evaluated)
    metrics = json.loads(run.metrics_json.read_text())
    for pair in EVAL_PAIRS:
        for pool in ("local", "global"):
            for k in pair.recall_ks:
                expected = _brute_force_recall(run, synthetic_tiny, pair, pool, k)
                assert metrics["pairs"][pool][pair.name][f"Recall@{k}"] == expected, (pair.name, pool, k)


def test_second_eval_skips_unchanged_steps(evaluated: Path) -> None:
    run = RunDir(evaluated)
    before = {s: v["ended"] for s, v in run.read_manifest()["steps"].items()}
    run_file = run.run_file("mscoco_task0_test", "global")
    mtime = run_file.stat().st_mtime_ns
    result = runner.invoke(APP, ["eval", "--run-dir", str(evaluated)])
    assert result.exit_code == 0, result.output
    after = {s: v["ended"] for s, v in run.read_manifest()["steps"].items()}
    assert after == before
    assert run_file.stat().st_mtime_ns == mtime
    assert "Average" in result.output


def test_changing_the_model_of_a_run_is_refused(evaluated: Path) -> None:
    result = runner.invoke(APP, ["eval", "--run-dir", str(evaluated), "--set", "model.size=base"])
    assert result.exit_code == 2
    assert "model.size: 'tiny' -> 'base'" in result.output and "new run directory" in result.output


def test_report_and_search_commands(evaluated: Path, tmp_path: Path) -> None:
    # The synthetic tree is not the published benchmark: no paper columns unless asked for.
    result = runner.invoke(APP, ["report", "--run-dir", str(evaluated), "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert table["global"][-1]["dataset"] == "Average"
    assert not any("paper" in key for row in table["global"] for key in row)
    assert "paper" not in (evaluated / "report.md").read_text()
    result = runner.invoke(APP, ["report", "--run-dir", str(evaluated), "--json", "--references"])
    table = json.loads(result.output)
    assert table["global"][0]["paper T2 uniir_clip_sf"] == 42.6
    deltas = [value for row in table["global"] for key, value in row.items() if key.startswith("Δ") and value is not None]
    assert deltas and all(value == round(value, 2) and len(repr(value)) <= 8 for value in deltas)
    result = runner.invoke(APP, ["report", "--run-dir", str(evaluated), "--csv", "--plot", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.png").stat().st_size > 10_000
    result = runner.invoke(APP, ["search", "--run-dir", str(evaluated), "--text", "a red circle", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_eval_reports_beside_compared_runs(evaluated: Path, synthetic_tiny: Path, tmp_path: Path) -> None:
    """`--compare-run-dir`: the eval's report holds the compared run's columns, the same table
    `uniir report` makes of both; a compared run without metrics stops the eval before it starts."""
    unscored = tmp_path / "unscored"
    result = runner.invoke(APP, ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(unscored)])
    assert result.exit_code == 0, result.output
    RunDir(unscored).metrics_json.unlink()
    other = tmp_path / "seed-1"
    common = ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--run-dir", str(other), "--set", "run.seed=1",
              "--set", "embed.shard_size=16", "--pool", "both"]
    result = runner.invoke(APP, [*common, "--compare-run-dir", str(unscored)])
    assert result.exit_code == 2 and "metrics.json is missing" in result.output and "uniir score" in result.output
    assert not other.exists()

    result = runner.invoke(APP, [*common, "--compare-run-dir", str(evaluated)])
    assert result.exit_code == 0, result.output
    assert "seed-1" in result.output and "tiny-eval" in result.output
    report = runner.invoke(APP, ["report", "--run-dir", str(other), "--run-dir", str(evaluated), "--markdown"])
    assert report.exit_code == 0, report.output
    assert RunDir(other).report_md.read_text().rstrip().endswith(report.output.rstrip())
    table = json.loads(runner.invoke(APP, ["report", "--run-dir", str(other), "--run-dir", str(evaluated), "--json"]).output)
    compared = json.loads(RunDir(evaluated).metrics_json.read_text())["pairs"]["global"]["mscoco_task0"]["Recall@5"]
    assert table["global"][1]["tiny-eval"] == round(100 * compared, 1)


def test_unirag_files(evaluated: Path) -> None:
    result = runner.invoke(APP, ["retrieve", "--run-dir", str(evaluated), "--rag", "--tasks", "mscoco_task0", "--tasks", "oven_task8"])
    assert result.exit_code == 0, result.output
    run = RunDir(evaluated)
    for name, depth in (("mscoco_task0", 10), ("oven_task8", 10)):
        lines = [json.loads(line) for line in run.rag_file(f"{name}_test", "global").read_text().splitlines()]
        queries = (Path(run.read_manifest()["data_dir"]) / f"query/test/mbeir_{name}_test.jsonl").read_text().splitlines()
        assert [entry["query"] for entry in lines] == [json.loads(q) for q in queries]
        for entry in lines:
            assert len(entry["candidates"]) == depth
            singles = [c for c in entry["candidates"] if c["modality"] in ("text", "image")]
            assert len(entry["complement_candidates"]) == len(singles)
            for cand, comp in zip(singles, entry["complement_candidates"]):
                if comp is None:
                    continue
                wanted = "image" if cand["modality"] == "text" else "text"
                assert comp["modality"] == wanted
                if wanted == "image":
                    assert comp["img_path"] != entry["query"]["query_img_path"]
                else:
                    assert comp["txt"] != entry["query"]["query_txt"]
    local_only = runner.invoke(APP, ["retrieve", "--run-dir", str(evaluated), "--rag", "--pool", "local"])
    assert local_only.exit_code == 2 and "global pool" in local_only.output


def test_approximate_faiss_index_is_built_saved_and_used(synthetic_tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    exact, approximate = tmp_path / "exact", tmp_path / "hnsw"
    common = ["eval", "--preset", "demo", "--data-dir", str(synthetic_tiny), "--pool", "both", "--tasks", "mscoco_task0"]
    assert runner.invoke(APP, [*common, "--run-dir", str(exact)]).exit_code == 0
    result = runner.invoke(APP, [*common, "--run-dir", str(approximate), "--set", 'index.factory="HNSW32"'])
    assert result.exit_code == 0, result.output
    assert (approximate / "index/global_test/faiss.index").is_file()
    assert (approximate / "index/mscoco_task0_test/faiss.index").is_file()
    assert not (exact / "index/global_test/faiss.index").exists()
    for pool in ("local", "global"):
        a = np.load(exact / f"retrieval/mscoco_task0_test__{pool}.npz")["ids"]
        b = np.load(approximate / f"retrieval/mscoco_task0_test__{pool}.npz")["ids"]
        assert (a[:, 0] == b[:, 0]).mean() >= 0.9  # HNSW on a tiny pool is all but exact
