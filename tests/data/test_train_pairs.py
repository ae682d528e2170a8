"""Training samples: hard negatives (shuffled per epoch, topped up from the same dataset) and
the error naming the line of a query whose positive is missing from the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uniir_cli.data.instructions import PromptPicker
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import read_queries
from uniir_cli.data.pool_reader import PoolReader
from uniir_cli.data.train_pairs import TrainPairs
from uniir_cli.errors import DataError


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _pool(tmp_path: Path, dids: list[str]) -> PoolReader:
    records = [{"txt": f"c{d}", "img_path": None, "modality": "text", "did": d, "src_content": None} for d in dids]
    return PoolReader.build(_write_jsonl(tmp_path / "pool.jsonl", records), cache=False)


def _query(qid: str, positives: list[str], negatives: list[str]) -> dict:
    return {"qid": qid, "query_txt": f"q{qid}", "query_img_path": None, "query_modality": "text",
            "query_src_content": None, "pos_cand_list": positives, "neg_cand_list": negatives, "task_id": 1}


def _pairs(tmp_path: Path, queries: list[dict], pool_dids: list[str], hard_neg_num: int) -> TrainPairs:
    """Only ids are sampled here: no processor is needed."""
    file = _write_jsonl(tmp_path / "train.jsonl", queries)
    return TrainPairs(MBeirLayout(tmp_path, check=False), None, read_queries(file, unique=False), _pool(tmp_path, pool_dids),
                      PromptPicker(None, "none"), seed=7, hard_neg_num=hard_neg_num)


def _negatives_by_epoch(pairs: TrainPairs, index: int, epochs: int) -> list[list[str]]:
    out = []
    for epoch in range(epochs):
        pairs.set_epoch(epoch)
        out.append(pairs.sample_ids(index)[1])
    return out


def test_listed_negatives_are_shuffled_per_epoch_and_reproducible(tmp_path: Path) -> None:
    listed = [f"9:{n}" for n in range(2, 12)]
    pairs = _pairs(tmp_path, [_query("9:1", ["9:1"], listed)], ["9:1", *listed, "5:1"], hard_neg_num=3)
    per_epoch = _negatives_by_epoch(pairs, 0, 6)
    assert all(len(n) == 3 and len(set(n)) == 3 and set(n) <= set(listed) for n in per_epoch)
    assert len({tuple(n) for n in per_epoch}) > 1, "the same negatives every epoch"
    assert {n[0] for n in per_epoch} != {listed[0]}, "always the list's first entry"
    assert _negatives_by_epoch(pairs, 0, 6) == per_epoch  # a function of (seed, epoch, index)


def test_empty_or_short_lists_are_topped_up_from_the_positives_dataset(tmp_path: Path) -> None:
    dataset_9 = [f"9:{n}" for n in range(1, 30)]
    queries = [_query("9:1", ["9:1", "9:2"], []), _query("9:3", ["9:3"], ["9:4"])]
    pairs = _pairs(tmp_path, queries, [*dataset_9, "5:1", "5:2", "12:1"], hard_neg_num=3)
    for index, query in enumerate(queries):
        per_epoch = _negatives_by_epoch(pairs, index, 5)
        for negatives in per_epoch:
            assert len(negatives) == 3 and len(set(negatives)) == 3
            assert set(negatives) <= set(dataset_9) - set(query["pos_cand_list"])  # same dataset, never a positive
            assert set(query["neg_cand_list"]) <= set(negatives)  # listed ones first
        assert len({tuple(n) for n in per_epoch}) > 1


def test_a_dataset_with_only_positives_cannot_give_negatives(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, [_query("9:1", ["9:1", "9:2"], [])], ["9:1", "9:2", "5:1"], hard_neg_num=1)
    with pytest.raises(DataError, match="train.hard_neg_num"):
        pairs.sample_ids(0)


def test_too_few_candidates_repeat_rather_than_fail(tmp_path: Path) -> None:
    pairs = _pairs(tmp_path, [_query("9:1", ["9:1"], [])], ["9:1", "9:2", "9:3"], hard_neg_num=4)
    negatives = pairs.sample_ids(0)[1]
    assert len(negatives) == 4 and set(negatives) <= {"9:2", "9:3"}


def test_missing_positive_names_the_file_and_line(tmp_path: Path) -> None:
    queries = [_query("9:1", ["9:1"], []), _query("9:2", ["9:2"], []), _query("9:3", ["9:3", "9:77"], [])]
    with pytest.raises(DataError) as error:
        _pairs(tmp_path, queries, ["9:1", "9:2", "9:3"], hard_neg_num=0)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'train.jsonl'}:3: positive 9:77 of query 9:3 is not in the training pool")
    assert "data.train_pool" in message
