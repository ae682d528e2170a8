"""Ids: parsing `"d:n"` and the upstream int64 hashes."""

from __future__ import annotations

import numpy as np
import pytest

from uniir_cli.data.ids import (
    dataset_of,
    hash_did,
    hash_dids,
    hash_qid,
    hash_qids,
    is_valid_id,
    parse_id,
    unhash_did,
    unhash_dids,
    unhash_qid,
    unhash_qids,
)
from uniir_cli.errors import DataError


def test_parse_and_dataset():
    assert parse_id("9:6") == (9, 6)
    assert parse_id("0:216030") == (0, 216030)
    assert dataset_of("6:12") == 6
    assert is_valid_id("1:2") and not is_valid_id("1:") and not is_valid_id(12)


@pytest.mark.parametrize("bad", ["9", "9:", ":3", "a:1", " 9:1", "9:1 ", "9:1:2", "-1:2", "9:+1", 9, None, ""])
def test_malformed_ids_are_data_errors(bad):
    with pytest.raises(DataError, match=r"queries\.jsonl:3: malformed id"):
        parse_id(bad, where="queries.jsonl:3")


def test_hashes_match_upstream_scheme():
    assert hash_qid("9:6") == 9 * 500_000 + 6
    assert hash_did("9:2") == 9 * 10_000_000 + 2
    assert unhash_qid(4_500_006) == "9:6"
    assert unhash_did(90_000_002) == "9:2"
    assert unhash_did(np.int64(2)) == "0:2"


def test_hash_out_of_range_number_is_an_error():
    with pytest.raises(DataError, match="below 500,000"):
        hash_qid("1:500000", where="f.jsonl:1")
    assert hash_did("1:500000") == 10_500_000


def test_vectorised_round_trip():
    qids = ["0:1", "9:6", "6:499999", "5:12"]
    dids = ["0:1", "9:9999999", "3:42"]
    q = hash_qids(qids)
    d = hash_dids(dids)
    assert q.dtype == np.int64 and d.dtype == np.int64
    assert q.tolist() == [hash_qid(x) for x in qids]
    assert unhash_qids(q) == qids
    assert unhash_dids(d) == dids
    assert unhash_dids(d.tolist()) == dids
    assert hash_dids([]).shape == (0,) and unhash_qids(np.zeros(0, np.int64)) == []


def test_vectorised_error_names_where():
    with pytest.raises(DataError, match=r"run\.npy: malformed id 'x'"):
        hash_dids(["1:1", "x"], where="run.npy")
