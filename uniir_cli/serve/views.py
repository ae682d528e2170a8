"""The data of each page as plain dicts: the JSON API returns them as they are and the HTML
templates render them, so a page shows exactly what the API says.

`a` is the served run, `b` the run it is compared with (`--compare-run-dir`); lists of runs
always put `a` first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from uniir_cli.data.benchmark import TASKS, task_name
from uniir_cli.data.eval_sets import POOLS
from uniir_cli.errors import ConfigError, RunDirError, UniirError
from uniir_cli.serve.errors import NotFound
from uniir_cli.serve.results import Ranking, SetResults
from uniir_cli.serve.state import ServedRun, ServeState

PER_PAGE = 50
WINNERS = ("a", "b", "tie")


def image_url(side: str, img_path: str | None) -> str | None:
    return f"/image/{side}/{quote(img_path, safe='/')}" if img_path else None


def _primary(state: ServeState) -> ServedRun:
    """The served run, when its results can be browsed (else the error names the step to run)."""
    run = state.runs[0]
    if run.problem is not None:
        raise RunDirError(run.problem)
    return run


def _run_info(run: ServedRun) -> dict[str, Any]:
    return {"side": run.side, "label": run.label, "path": str(run.root),
            "data_dir": str(run.ctx.layout.root) if run.ctx is not None else None,
            "problem": run.problem, "search_problem": run.search_problem, "pools": list(run.pools)}


def status(state: ServeState) -> dict[str, Any]:
    """The served runs, what each can do, and how long they took to load."""
    return {"runs": [_run_info(run) for run in state.runs], "k": state.k, "load_seconds": round(state.load_seconds, 3),
            "max_upload_bytes": state.max_upload_bytes}


def _candidate(run: ServedRun, did: str, rank: int | None = None, score: float | None = None,
               positives: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A candidate as the page shows it: its record's text and image, id, rank and score."""
    try:
        record = run.record(did)
    except UniirError:  # a positive outside the run's candidate pools: show its id
        record = None
    return {"rank": rank, "did": did, "score": score, "positive": did in positives,
            "modality": record.modality if record else None, "txt": record.txt if record else None,
            "img_path": record.img_path if record else None,
            "image_url": image_url(run.side, record.img_path) if record else None}


# ---------------------------------------------------------------------------- search


def search(state: ServeState, text: str | None, image: Any, instruction: str | None, pool: str, k: int,
           image_preview: str | None = None) -> dict[str, Any]:
    """One query through every served run's model and its `pool` (a run that cannot search
    says why in its column; the served run's problem is the request's error)."""
    text = (text or "").strip() or None
    if text is None and image is None:
        raise ConfigError("give a query: a text, an image or both")
    first = state.runs[0]
    if first.search is None:
        raise RunDirError(first.search_problem or f"{first.root} cannot be searched")
    if pool not in first.pools:
        raise NotFound(f"pool {pool!r} is not indexed in {first.root}; pick one of {', '.join(first.pools)}")
    k = max(1, min(int(k), 100))
    columns = []
    for run in state.runs:
        column: dict[str, Any] = {"side": run.side, "label": run.label, "hits": [], "error": None}
        if run.search is None:
            column["error"] = run.search_problem
        elif pool not in run.pools:
            column["error"] = f"pool {pool!r} is not indexed in {run.root}"
        else:
            column["hits"] = [{**hit, "image_url": image_url(run.side, hit["img_path"])}
                              for hit in run.search.search(text, image, instruction, pool, k)]
        columns.append(column)
    return {"query": {"text": text, "instruction": instruction or None, "pool": pool, "k": k,
                      "image": image_preview if image is not None else None}, "runs": columns}


# ---------------------------------------------------------------------------- results browser


def query_sets(state: ServeState, pool: str, dataset: str | None = None, task: int | None = None) -> dict[str, Any]:
    """The served run's query sets that were retrieved from `pool`, with each run's metrics
    (from metrics.json), filtered by dataset (slug) and task id."""
    run = _primary(state)
    if pool not in POOLS:
        raise NotFound(f"pool {pool!r} is not a results pool; pick local or global")
    rows = []
    for query_set in run.results.query_sets:
        pair = query_set.pair
        if pool not in query_set.pools or (dataset and pair.dataset.slug != dataset) or (task is not None and pair.task_id != task):
            continue
        metrics = {}
        for served in state.runs:
            found = served.results.metrics(pair, pool) if served.results is not None else None
            metrics[served.side] = None if found is None else {
                "queries": int(found.get("queries", 0)), "recall_k": pair.reported_k,
                "recall": found.get(f"Recall@{pair.reported_k}"), "mrr": found.get("MRR@10")}
        rows.append({"name": query_set.name, "dataset": pair.dataset.name, "dataset_slug": pair.dataset.slug,
                     "task": pair.task_id, "task_name": task_name(pair.task_id), "pools": list(query_set.pools),
                     "metrics": metrics})
    present = run.results.query_sets
    return {"pool": pool, "dataset": dataset, "task": task, "sets": rows, "runs": [_run_info(r) for r in state.runs],
            "datasets": list(dict.fromkeys((s.pair.dataset.slug, s.pair.dataset.name) for s in present)),
            "tasks": [(t, task_name(t)) for t in TASKS if any(s.pair.task_id == t for s in present)]}


def _winner(a: Ranking, b: Ranking | None) -> str | None:
    """Which run ranked the query's first positive higher (a miss counts as last)."""
    if b is None:
        return None
    rank_a, rank_b = (r.first_positive or 10**9 for r in (a, b))
    return "a" if rank_a < rank_b else "b" if rank_b < rank_a else "tie"


def _compared(state: ServeState, name: str, pool: str) -> tuple[SetResults | None, str | None]:
    """The compared run's results of the same set and pool, or why there are none."""
    run = state.run("b")
    if run is None:
        return None, None
    if run.results is None:
        return None, run.problem
    try:
        return run.results.results(name, pool), None
    except UniirError as exc:
        return None, str(exc)


def _k(k: int | None, results: SetResults) -> int:
    pair = results.query_set.pair
    return max(1, min(int(k if k is not None else pair.reported_k), pair.depth))


def queries(state: ServeState, name: str, pool: str, k: int | None = None, failed: bool = False,
            winner: str | None = None, page: int = 0) -> dict[str, Any]:
    """The queries of one set with the rank of each run's first positive; `failed` keeps the
    served run's failures at k, `winner` the queries one run ranks better ("a", "b", "tie")."""
    run = _primary(state)
    results = run.results.results(name, pool)
    other, other_error = _compared(state, name, pool)
    k = _k(k, results)
    if winner and winner not in WINNERS:
        raise ConfigError(f"winner {winner!r} is not one of {', '.join(WINNERS)}")
    rows = []
    for position, query in enumerate(results.queries):
        ranking = results.rankings[query.qid]
        other_ranking = other.rankings.get(query.qid) if other is not None else None
        row = {"position": position, "qid": query.qid, "txt": query.query_txt, "modality": query.query_modality,
               "image_url": image_url(run.side, query.query_img_path),
               "first_positive": {"a": ranking.first_positive}, "failed": {"a": ranking.failed(k)},
               "winner": _winner(ranking, other_ranking)}
        if other_ranking is not None:
            row["first_positive"]["b"] = other_ranking.first_positive
            row["failed"]["b"] = other_ranking.failed(k)
        rows.append(row)
    failures = sum(row["failed"]["a"] for row in rows)
    kept = [row for row in rows if (not failed or row["failed"]["a"]) and (not winner or row["winner"] == winner)]
    pages = max(1, -(-len(kept) // PER_PAGE))
    page = max(0, min(int(page), pages - 1))
    pair = results.query_set.pair
    return {"set": name, "pool": pool, "k": k, "depth": pair.depth, "failed_only": failed, "winner": winner,
            "dataset": pair.dataset.name, "task": pair.task_id, "task_name": task_name(pair.task_id),
            "total": len(rows), "failures": failures, "matching": len(kept), "page": page, "pages": pages,
            "queries": kept[page * PER_PAGE:(page + 1) * PER_PAGE], "compare_error": other_error,
            "runs": [_run_info(r) for r in state.runs]}


def query(state: ServeState, name: str, pool: str, qid: str, k: int | None = None) -> dict[str, Any]:
    """One query next to each run's top k, positives marked, the rank of the first positive,
    and links to the neighbouring queries and to the next failure of the served run."""
    run = _primary(state)
    results = run.results.results(name, pool)
    k = _k(k, results)
    position = results.position(qid)
    record = results.queries[position]
    ranking = results.rankings[qid]
    columns = [_column(run, ranking, k)]
    other, other_error = _compared(state, name, pool)
    if state.run("b") is not None:
        other_ranking = other.rankings.get(qid) if other is not None else None
        if other is not None and other_ranking is None:
            other_error = f"query {qid} is not in the compared run's results of {name}"
        columns.append(_column(state.run("b"), other_ranking, k, other_error))
    later = results.queries[position + 1:]
    next_failure = next((q.qid for q in later if results.rankings[q.qid].failed(k)), None)
    pair = results.query_set.pair
    return {
        "set": name, "pool": pool, "k": k, "depth": pair.depth, "position": position, "total": len(results.queries),
        "dataset": pair.dataset.name, "task": pair.task_id, "task_name": task_name(pair.task_id),
        "query": {"qid": qid, "txt": record.query_txt, "modality": record.query_modality,
                  "img_path": record.query_img_path, "image_url": image_url(run.side, record.query_img_path),
                  "positives": [_candidate(run, did, positives=ranking.positives) for did in sorted(ranking.positives)]},
        "runs": columns,
        "previous": results.queries[position - 1].qid if position > 0 else None,
        "next": later[0].qid if later else None,
        "next_failure": next_failure,
    }


def _column(run: ServedRun, ranking: Ranking | None, k: int, error: str | None = None) -> dict[str, Any]:
    if ranking is None:
        return {"side": run.side, "label": run.label, "error": error or run.problem, "hits": [],
                "first_positive": None, "failed": None}
    hits = [_candidate(run, did, rank, score, ranking.positives)
            for rank, (did, score) in enumerate(zip(ranking.dids[:k], ranking.scores[:k]), start=1)]
    return {"side": run.side, "label": run.label, "error": None, "hits": hits,
            "first_positive": ranking.first_positive, "failed": ranking.failed(k)}


def default_pool(state: ServeState) -> str:
    """The global pool when the served run retrieved from it, else the local pools."""
    run = state.runs[0]
    pools = {pool for query_set in run.results.query_sets for pool in query_set.pools} if run.results else set()
    return "global" if "global" in pools or not pools else "local"
