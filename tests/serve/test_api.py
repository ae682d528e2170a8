"""`uniir serve` in-process (FastAPI's test client): search, the results browser, comparison,
images only from inside the data directory, uploads, and the messages of bad requests."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from tests.serve.conftest import Runs  # noqa: E402
from uniir_cli.evaluation.interactive_search import search_one  # noqa: E402
from uniir_cli.serve.app import create_app  # noqa: E402
from uniir_cli.serve.state import load_state  # noqa: E402

SET, LOCAL_POOL = "mscoco_task0_test", "mscoco_task0_test"  # text -> image: its candidates have images
UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def client(served_runs: Runs) -> TestClient:
    state = load_state([served_runs.a, served_runs.b], max_upload_bytes=UPLOAD_LIMIT, max_pixels=100_000)
    return TestClient(create_app(state))


def _run_file(run: Path, name: str, pool: str) -> dict[str, list[str]]:
    """qid -> retrieved dids in rank order, from the upstream-format run file (not the .npz the server reads)."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    for line in (run / "retrieval" / f"{name}__{pool}.run").read_text().splitlines():
        qid, _, did, rank, *_ = line.split()
        ranked.setdefault(qid, []).append((int(rank), did))
    return {qid: [did for _, did in sorted(rows)] for qid, rows in ranked.items()}


def _positives(data: Path, name: str) -> dict[str, set[str]]:
    positives: dict[str, set[str]] = {}
    for line in (data / f"qrels/test/mbeir_{name.removesuffix('_test')}_test_qrels.txt").read_text().splitlines():
        qid, _, did, relevance, _ = line.split()
        if int(relevance) > 0:
            positives.setdefault(qid, set()).add(did)
    return positives


def _first_positive(dids: list[str], positives: set[str]) -> int | None:
    return next((rank for rank, did in enumerate(dids, 1) if did in positives), None)


def _query_order(data: Path, name: str) -> list[str]:
    path = data / f"query/test/mbeir_{name}.jsonl"
    return [json.loads(line)["qid"] for line in path.read_text().splitlines() if line.strip()]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- search


@pytest.mark.parametrize("instruction", [None, "Find an everyday photo that this caption describes."])
def test_text_search_equals_a_fresh_uniir_search(client: TestClient, served_runs: Runs, instruction: str | None) -> None:
    params = {"text": "a red circle on sand", "pool": LOCAL_POOL, "k": 5, **({"instruction": instruction} if instruction else {})}
    response = client.get("/api/search", params=params)
    assert response.status_code == 200, response.text
    columns = response.json()["runs"]
    assert [c["side"] for c in columns] == ["a", "b"]
    for column, run in zip(columns, (served_runs.a, served_runs.b)):
        fresh = search_one(run, "a red circle on sand", None, instruction, LOCAL_POOL, 5)
        assert [(h["did"], round(h["score"], 5)) for h in column["hits"]] == [(h["did"], round(h["score"], 5)) for h in fresh]
    hits = columns[0]["hits"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(h["image_url"] == f"/image/a/{h['img_path']}" for h in hits)
    image = client.get(hits[0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (served_runs.data / hits[0]["img_path"]).read_bytes()


def test_an_uploaded_candidate_image_finds_itself(client: TestClient, served_runs: Runs) -> None:
    record = json.loads((served_runs.data / "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl").read_text().splitlines()[2])
    jpeg = (served_runs.data / record["img_path"]).read_bytes()
    response = client.post("/api/search", data={"pool": LOCAL_POOL, "k": "3"}, files={"image": ("q.jpg", jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    top = response.json()["runs"][0]["hits"][0]
    assert top["did"] == record["did"] and top["score"] > 0.999
    assert response.json()["query"]["image"].startswith("data:image/jpeg;base64,")
    page = client.post("/", data={"pool": LOCAL_POOL, "k": "3"}, files={"image": ("q.jpg", jpeg, "image/jpeg")})
    assert page.status_code == 200 and 'src="data:image/jpeg;base64,' in page.text and f'data-did="{record["did"]}"' in page.text


def test_the_search_page_escapes_the_query(client: TestClient) -> None:
    response = client.get("/", params={"text": "<script>alert(1)</script>", "pool": "global"})
    assert response.status_code == 200
    assert "<script>alert" not in response.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert 'id="results"' in response.text and 'enctype="multipart/form-data"' in response.text


# ---------------------------------------------------------------------------- results browser


def test_sets_carry_the_metrics_of_both_runs_and_filter(client: TestClient, served_runs: Runs) -> None:
    listing = client.get("/api/sets", params={"pool": "global"}).json()
    assert len(listing["sets"]) == 16
    for side, run in (("a", served_runs.a), ("b", served_runs.b)):
        metrics = json.loads((run / "metrics/metrics.json").read_text())["pairs"]["global"]["mscoco_task0"]
        row = next(r for r in listing["sets"] if r["name"] == SET)
        assert row["metrics"][side] == {"queries": 4, "recall_k": 5, "recall": metrics["Recall@5"], "mrr": metrics["MRR@10"]}
    by_dataset = client.get("/api/sets", params={"pool": "local", "dataset": "mscoco"}).json()["sets"]
    assert [r["name"] for r in by_dataset] == ["mscoco_task0_test", "mscoco_task3_test"]
    by_task = client.get("/api/sets", params={"task": 7}).json()["sets"]
    assert [r["name"] for r in by_task] == ["fashioniq_task7_test", "cirr_task7_test"]
    page = client.get("/browse", params={"pool": "local"})
    assert page.status_code == 200 and "/browse/set?set=cirr_task7_test&amp;pool=local" in page.text


@pytest.mark.parametrize("name,pool,k", [(SET, "global", 5), ("cirr_task7_test", "local", 1), ("fashioniq_task7_test", "global", 10)])
def test_failed_queries_and_first_positives_match_the_run_file(client: TestClient, served_runs: Runs, name: str, pool: str, k: int) -> None:
    ranked, positives = _run_file(served_runs.a, name, pool), _positives(served_runs.data, name)
    expected = {qid: _first_positive(dids, positives[qid]) for qid, dids in ranked.items()}
    every = client.get("/api/queries", params={"set": name, "pool": pool, "k": k}).json()
    assert [row["qid"] for row in every["queries"]] == _query_order(served_runs.data, name)
    assert {row["qid"]: row["first_positive"]["a"] for row in every["queries"]} == expected
    failed = client.get("/api/queries", params={"set": name, "pool": pool, "k": k, "failed": 1}).json()
    want = [qid for qid in _query_order(served_runs.data, name) if expected[qid] is None or expected[qid] > k]
    assert [row["qid"] for row in failed["queries"]] == want and failed["failures"] == len(want)
    page = client.get("/browse/set", params={"set": name, "pool": pool, "k": k, "failed": 1})
    assert page.status_code == 200 and f"{len(want)} of {every['total']} queries fail at k={k}" in page.text


def test_one_query_beside_its_top_k_with_positives_and_the_next_failure(client: TestClient, served_runs: Runs) -> None:
    name, pool, k = SET, "global", 5
    ranked, positives = _run_file(served_runs.a, name, pool), _positives(served_runs.data, name)
    order = _query_order(served_runs.data, name)
    failing = [q for q in order if (_first_positive(ranked[q], positives[q]) or 99) > k]
    assert failing, "the untrained model fails some queries at k=5"
    qid = order[0]
    detail = client.get("/api/query", params={"set": name, "pool": pool, "qid": qid, "k": k}).json()
    column = detail["runs"][0]
    assert [h["did"] for h in column["hits"]] == ranked[qid][:k]
    assert {h["did"] for h in column["hits"] if h["positive"]} == positives[qid] & set(ranked[qid][:k])
    assert column["first_positive"] == _first_positive(ranked[qid], positives[qid])
    assert {p["did"] for p in detail["query"]["positives"]} == positives[qid]
    assert detail["next_failure"] == next((q for q in order[1:] if q in failing), None)
    assert detail["next"] == order[1] and detail["previous"] is None
    page = client.get("/browse/query", params={"set": name, "pool": pool, "qid": qid, "k": k})
    assert page.status_code == 200
    found = column["first_positive"] is not None and column["first_positive"] <= k
    assert ('class="hit positive"' in page.text) == found
    if detail["next_failure"]:
        assert 'id="next-failure"' in page.text


def test_compare_shows_both_runs_and_who_wins(client: TestClient, served_runs: Runs) -> None:
    name, pool = "cirr_task7_test", "global"
    ranked_a, ranked_b = _run_file(served_runs.a, name, pool), _run_file(served_runs.b, name, pool)
    assert ranked_a != ranked_b, "the two runs should rank differently"
    positives = _positives(served_runs.data, name)
    rank = {side: {q: _first_positive(r[q], positives[q]) or 10**9 for q in r} for side, r in (("a", ranked_a), ("b", ranked_b))}
    for winner, keep in (("a", lambda q: rank["a"][q] < rank["b"][q]), ("b", lambda q: rank["b"][q] < rank["a"][q]),
                         ("tie", lambda q: rank["a"][q] == rank["b"][q])):
        rows = client.get("/api/queries", params={"set": name, "pool": pool, "winner": winner}).json()["queries"]
        assert [r["qid"] for r in rows] == [q for q in _query_order(served_runs.data, name) if keep(q)], winner
    qid = _query_order(served_runs.data, name)[0]
    detail = client.get("/api/query", params={"set": name, "pool": pool, "qid": qid, "k": 10}).json()
    assert [c["side"] for c in detail["runs"]] == ["a", "b"]
    assert [h["did"] for h in detail["runs"][1]["hits"]] == ranked_b[qid][:10]
    assert all(h["image_url"] is None or h["image_url"].startswith("/image/b/") for h in detail["runs"][1]["hits"])
    page = client.get("/browse/query", params={"set": name, "pool": pool, "qid": qid})
    assert page.status_code == 200 and 'class="column side-a"' in page.text and 'class="column side-b"' in page.text


# ---------------------------------------------------------------------------- images


def test_images_only_from_inside_the_data_directory(client: TestClient, served_runs: Runs, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), "red").save(secret)
    link = served_runs.data / "mbeir_images" / "escape.jpg"
    link.symlink_to(secret)
    try:
        good = "mbeir_images/mscoco_images/test/mscoco_test_000001.jpg"
        assert client.get(f"/image/a/{good}").status_code == 200
        assert client.get(f"/image/b/{good}").status_code == 200
        for bad in [
            "mbeir_images/escape.jpg",  # a symlink out of the tree
            "mbeir_images/..%2F..%2Frun-a%2Frun.toml", "%2E%2E/%2E%2E/etc/hostname.jpg",  # `..`, encoded past the client
            f"%2F{str(secret).lstrip('/')}", "%2Fetc%2Fpasswd",  # absolute paths
            "query/test/mbeir_mscoco_task0_test.jsonl",  # inside, but no image
            "mbeir_images/missing.jpg",
        ]:
            response = client.get(f"/image/a/{bad}")
            assert response.status_code == 404, bad
            assert response.content == b"not found"
        assert client.get(f"/image/c/{good}").status_code == 404  # no third run
    finally:
        link.unlink()


# ---------------------------------------------------------------------------- bad input


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_uploads_are_refused_in_words_and_nothing_is_written(client: TestClient, served_runs: Runs) -> None:
    before = {run: _snapshot(run) for run in (served_runs.a, served_runs.b)}
    cases = [
        (b"GIF89a but not really", 400, "not an image uniir reads"),
        (_jpeg((64, 64))[:300], 400, "damaged"),
        (_jpeg((400, 400)), 400, "pixels"),  # the client allows 100,000
        (os.urandom(UPLOAD_LIMIT + 1), 413, "larger than the 0.2 MB allowed"),
    ]
    for body, status, words in cases:
        response = client.post("/api/search", data={"text": "x"}, files={"image": ("q.jpg", body, "image/jpeg")})
        assert response.status_code == status and words in response.json()["error"], (status, response.text)
    page = client.post("/", data={"text": "x"}, files={"image": ("q.png", b"\x89PNG\r\n\x1a\n broken", "image/png")})
    assert page.status_code == 400 and "not an image uniir reads" in page.text
    assert client.post("/api/search", content=b"{}", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/api/search", data={"text": "  "}).json()["error"] == "give a query: a text, an image or both"
    ok = client.post("/api/search", data={"text": "a blue square", "pool": LOCAL_POOL}, files={"image": ("", b"", "application/octet-stream")})
    assert ok.status_code == 200 and ok.json()["query"]["image"] is None  # the browser's empty file field
    assert {run: _snapshot(run) for run in (served_runs.a, served_runs.b)} == before


def test_unknown_names_are_404_with_a_message(client: TestClient) -> None:
    error = client.get("/api/queries", params={"set": "nope_task9_test"}).json()["error"]
    assert error.startswith("query set 'nope_task9_test' has no results in") and "mscoco_task0_test" in error
    assert client.get("/api/queries", params={"set": "nope_task9_test"}).status_code == 404
    assert client.get("/api/query", params={"set": SET, "pool": "global", "qid": "9:999999"}).status_code == 404
    assert client.get("/api/sets", params={"pool": "galactic"}).status_code == 404
    bad_winner = client.get("/api/queries", params={"set": SET, "winner": "c"})
    assert bad_winner.status_code == 400 and bad_winner.json()["error"] == "winner 'c' is not one of a, b, tie"
    assert "not indexed" in client.get("/api/search", params={"text": "x", "pool": "nope"}).json()["error"]
    assert client.get("/api/search").json() == {"error": "give a query: a text, an image or both"}
    page = client.get("/browse/set", params={"set": "nope_task9_test"})
    assert page.status_code == 404 and "query set &#39;nope_task9_test&#39; has no results" in page.text
    assert client.get("/api/status").status_code == 200  # still serving


def test_a_run_without_embeddings_says_what_to_run(served_runs: Runs, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "run.toml").write_text((served_runs.a / "run.toml").read_text())
    (fresh / "manifest.json").write_text(json.dumps({"data_dir": str(served_runs.data)}))
    bare = tmp_path / "bare"
    bare.mkdir()
    client = TestClient(create_app(load_state([fresh, bare])))
    runs = client.get("/api/status").json()["runs"]
    assert "run `uniir embed` first" in runs[0]["search_problem"] and "run `uniir eval --run-dir" in runs[0]["problem"]
    assert "not a uniir run directory" in runs[1]["problem"]
    response = client.get("/api/search", params={"text": "a red circle"})
    assert response.status_code == 409 and "has no embeddings yet; run `uniir embed` first" in response.json()["error"]
    for path in ("/", "/browse"):
        page = client.get(path)
        assert "has no embeddings yet; run `uniir embed` first" in page.text and "no retrieval results yet" in page.text
    assert client.get("/browse").status_code == 409


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time(client: TestClient) -> None:
    """Searches and record lookups share the pool files' handle: the server serialises them."""
    from concurrent.futures import ThreadPoolExecutor

    requests = [("/api/query", {"set": name, "pool": "global", "qid": qid, "k": 10})
                for name in (SET, "cirr_task7_test", "webqa_task1_test")
                for qid in (row["qid"] for row in client.get("/api/queries", params={"set": name}).json()["queries"])]
    requests += [("/api/search", {"text": f"a {colour} square", "pool": "global"}) for colour in ("red", "blue", "green", "yellow")]
    one_at_a_time = [client.get(path, params=params).json() for path, params in requests]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda request: client.get(request[0], params=request[1]).json(), requests * 3))
    assert together == one_at_a_time * 3
