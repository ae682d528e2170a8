"""A run's retrieval results as the results browser reads them: the query sets it retrieved,
each query's top-k (the retrieve step's results file), its positives (the data tree's qrels)
and the metrics the score step wrote. Nothing is searched or scored again.

Each (query set, pool) is read on first use and kept: a served run's files do not change
under it (a new `uniir eval` means a restart).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from uniir_cli.data.benchmark import EvalPair
from uniir_cli.data.eval_sets import query_set_name
from uniir_cli.data.ids import unhash_dids, unhash_qids
from uniir_cli.data.mbeir import QueryRecord, read_qrels, read_queries
from uniir_cli.errors import DataError, RunDirError
from uniir_cli.evaluation.pipeline import Context
from uniir_cli.evaluation.retrieval import read_results
from uniir_cli.ranking.knn import PAD_ID
from uniir_cli.serve.errors import NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuerySet:
    name: str  # "mscoco_task0_test": a folder under embeddings/, a prefix of the results files
    pair: EvalPair
    pools: tuple[str, ...]  # the pools it was retrieved from


@dataclass(frozen=True)
class Ranking:
    """One query's retrieved candidates and where its first positive came."""

    qid: str
    dids: tuple[str, ...]
    scores: tuple[float, ...]
    positives: frozenset[str]
    first_positive: int | None  # 1-based rank, None when no positive is within the retrieved depth

    def failed(self, k: int) -> bool:
        """No positive within the top k: what Recall@k counts as a miss."""
        return self.first_positive is None or self.first_positive > k


@dataclass(frozen=True)
class SetResults:
    query_set: QuerySet
    pool: str
    queries: tuple[QueryRecord, ...]  # in the order they were retrieved
    rankings: dict[str, Ranking]  # by qid

    def position(self, qid: str) -> int:
        for i, query in enumerate(self.queries):
            if query.qid == qid:
                return i
        raise NotFound(f"query {qid} is not in {self.query_set.name}; pick one from the query list")


def first_positive(dids: tuple[str, ...], positives: frozenset[str]) -> int | None:
    return next((rank for rank, did in enumerate(dids, start=1) if did in positives), None)


class RunResults:
    """The retrieval results of one run, read lazily and kept."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._sets: dict[tuple[str, str], SetResults] = {}
        self._lock = threading.Lock()
        self._metrics: dict[str, Any] | None = None

    @functools.cached_property
    def query_sets(self) -> list[QuerySet]:
        """The query sets of the run's split that have results, in catalog order (M-BEIR's 16,
        then the datasets the data tree declares); listed once, as the files are read once."""
        pools: dict[str, list[str]] = {}
        for name, pool in self.ctx.run.retrieved():
            pools.setdefault(name, []).append(pool)
        split = self.ctx.split
        return [QuerySet(query_set_name(pair, split), pair, tuple(sorted(pools[query_set_name(pair, split)])))
                for pair in self.ctx.layout.catalog.possible_pairs() if query_set_name(pair, split) in pools]

    def query_set(self, name: str) -> QuerySet:
        for query_set in self.query_sets:
            if query_set.name == name:
                return query_set
        known = ", ".join(s.name for s in self.query_sets) or "none yet: run `uniir eval`"
        raise NotFound(f"query set {name!r} has no results in {self.ctx.run.root} (it has: {known})")

    def results(self, name: str, pool: str) -> SetResults:
        query_set = self.query_set(name)
        if pool not in query_set.pools:
            raise NotFound(f"{name} was not retrieved from the {pool} pool in {self.ctx.run.root} "
                           f"(it was from: {', '.join(query_set.pools)}); run `uniir retrieve --pool {pool}`")
        with self._lock:
            if (name, pool) not in self._sets:
                self._sets[name, pool] = self._read(query_set, pool)
            return self._sets[name, pool]

    def _read(self, query_set: QuerySet, pool: str) -> SetResults:
        layout, split = self.ctx.layout, self.ctx.split
        results = read_results(self.ctx.run.results_file(query_set.name, pool))
        records = {q.qid: q for q in read_queries(layout.require(layout.query_file(query_set.pair, split), f"queries of {query_set.pair.name}"))}
        qrels = read_qrels(layout.require(layout.qrels_file(query_set.pair, split), f"qrels of {query_set.pair.name}"))
        queries: list[QueryRecord] = []
        rankings: dict[str, Ranking] = {}
        for qid, row_ids, row_scores in zip(unhash_qids(results.qids), results.ids, results.scores):
            if qid not in records:
                raise DataError(f"query {qid} of {self.ctx.run.results_file(query_set.name, pool)} is not in "
                                f"{layout.query_file(query_set.pair, split)}: the data tree changed since `uniir eval`; rerun it")
            valid = row_ids != PAD_ID
            dids = tuple(unhash_dids(row_ids[valid]))
            positives = frozenset(qrels.relevant.get(qid, ()))
            queries.append(records[qid])
            rankings[qid] = Ranking(qid, dids, tuple(row_scores[valid].tolist()), positives, first_positive(dids, positives))
        log.info("read %d queries of %s (%s pool)", len(queries), query_set.name, pool)
        return SetResults(query_set, pool, tuple(queries), rankings)

    def metrics(self, pair: EvalPair, pool: str) -> dict[str, float] | None:
        """The pair's metrics from metrics.json (None when it was not scored)."""
        if self._metrics is None:
            path = self.ctx.run.metrics_json
            try:
                self._metrics = json.loads(path.read_text()) if path.is_file() else {}
            except json.JSONDecodeError as exc:
                raise RunDirError(f"{path} is damaged ({exc}); rerun `uniir score`") from None
        return self._metrics.get("pairs", {}).get(pool, {}).get(pair.name)
