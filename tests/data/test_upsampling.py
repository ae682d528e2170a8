"""Up-sampled union of per-dataset train queries (spec 7.1)."""

from __future__ import annotations

from collections import Counter

from uniir_cli.data.mbeir import QueryRecord
from uniir_cli.data.train_pairs import upsampled_union


def _queries(dataset: int, n: int) -> list[QueryRecord]:
    return [QueryRecord(f"{dataset}:{i}", f"q{i}", None, "text", [f"{dataset}:{i}"]) for i in range(1, n + 1)]


def test_targets_reached_with_replacement_and_deterministic() -> None:
    per_dataset = {"webqa": _queries(2, 10), "mscoco": _queries(9, 7)}
    union = upsampled_union(per_dataset, {"webqa": 25, "mscoco": 3}, seed=1)
    counts = Counter(q.qid.split(":")[0] for q in union)
    assert counts == {"2": 25, "9": 7}  # a target below the size keeps every query once
    assert {q.qid for q in union if q.qid.startswith("2:")} == {f"2:{i}" for i in range(1, 11)}
    assert [q.qid for q in union] == [q.qid for q in upsampled_union(per_dataset, {"webqa": 25, "mscoco": 3}, seed=1)]
    assert [q.qid for q in union] != [q.qid for q in upsampled_union(per_dataset, {"webqa": 25, "mscoco": 3}, seed=2)]
