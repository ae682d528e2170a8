"""The query sets of an M-BEIR tree's splits (each with the pool and qrels it is checked
against) and the consistency of a query file with its qrels.

Used by `tree_check` (`uniir validate`) and by the tests of loaders that must stop at the
first problem (`raise_problems`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uniir_cli.data import benchmark as bm
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import Qrels, QueryRecord
from uniir_cli.errors import DataError, location


@dataclass(frozen=True)
class QuerySet:
    """A query file with the pool and qrels it is checked against."""

    split: str
    name: str
    queries: Path
    pool: Path
    qrels: Path | None
    required: bool
    pair: bm.EvalPair | None = None  # eval pairs: own-dataset positives, fixed task
    unique: bool = True  # up-sampled training files repeat qids


def qrels_problems(qrels: Qrels, queries: list[QueryRecord], queries_path: Path | str) -> list[DataError]:
    """qrels qids missing from the queries and queries without qrels (upstream scoring fails on both)."""
    problems: list[DataError] = []
    qids = {q.qid for q in queries}
    for qid, line in qrels.first_line.items():
        if qid not in qids:
            problems.append(DataError(
                f"{location(qrels.path, line)}: query {qid} is not in {queries_path}; fix the qrels or re-download both files"
            ))
    for q in queries:
        if q.qid not in qrels.relevant:
            problems.append(DataError(
                f"{location(queries_path, q.line)}: query {q.qid} has no relevant candidate in {qrels.path}; "
                "scoring needs one per query"
            ))
    return problems


def raise_problems(problems: list[DataError]) -> None:
    """Raise the first problem, saying how many more there are (for loaders that must stop)."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise DataError(f"{problems[0]} ({len(problems) - 1} more problem(s) like this)")


def query_sets(layout: MBeirLayout, split: str, pairs: list[bm.EvalPair]) -> list[QuerySet]:
    """The query sets of a split: the eval `pairs` (+ union val; required for test), or the
    train files of M-BEIR's and the declared datasets + union train."""
    if split == "train":
        pool = layout.union_pool_file("train")
        sets = [
            QuerySet(split, d.slug, layout.train_query_file(d), pool, layout.train_qrels_file(d), False)
            for d in layout.catalog.datasets
        ]
        return sets + [QuerySet(split, "union_up", layout.union_train_queries, pool, None, False, unique=False)]
    sets = [
        QuerySet(
            split, p.name, layout.query_file(p, split), layout.pool_file(p, split), layout.qrels_file(p, split),
            required=split == "test", pair=p,
        )
        for p in pairs
    ]
    if split == "val":
        sets.append(QuerySet(split, "union", layout.union_val_queries, layout.union_pool_file("val"), None, False))
    return sets
