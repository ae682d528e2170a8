"""Pool index: fast scan, fallback for odd lines, lookups, duplicates, cache, pickling."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from uniir_cli.data import pool_reader
from uniir_cli.data.benchmark import MODALITIES
from uniir_cli.data.ids import hash_did, hash_dids
from uniir_cli.data.pool_reader import DidTable, PoolReader, scan_pool
from uniir_cli.errors import DataError


def record(did: str, modality: str, rng: random.Random) -> dict:
    txt = None if modality == "image" else " ".join(rng.choice(["a", "dog", "\"quoted\"", "é", "\\"]) for _ in range(rng.randrange(1, 30)))
    img = None if modality == "text" else f"mbeir_images/x/{did.replace(':', '_')}.jpg"
    return {"txt": txt, "img_path": img, "modality": modality, "did": did, "src_content": json.dumps({"did": did, "modality": "x"})}


def write_pool(path: Path, records: list[dict], *, raw: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in records]
    for i, text in (raw or {}).items():
        lines[i] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_records(n: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [record(f"{d}:{k}", rng.choice(MODALITIES), rng) for d in (0, 3, 9) for k in range(1, n // 3 + 1)]


def test_build_and_lookup(tmp_path):
    records = make_records()
    path = write_pool(tmp_path / "pool.jsonl", records)
    index = PoolReader.build(path, cache=False)
    assert len(index) == len(records)
    assert np.all(np.diff(index.dids) > 0)
    for rec in random.Random(1).sample(records, 50):
        got = index[rec["did"]]
        assert got.to_json() == rec and index.modality(rec["did"]) == rec["modality"]
    assert "3:5" in index and "3:999" not in index and 5 not in index
    assert index.get("3:999") is None
    with pytest.raises(DataError, match=rf"{path}: candidate 3:999 is not in this pool"):
        index["3:999"]
    wanted = ["9:4", "0:1", "3:7"]
    assert [r.did for r in index.get_many(wanted)] == wanted
    assert [r.did for r in index.get_many(hash_dids(wanted))] == wanted
    with pytest.raises(DataError, match=r"candidate 1:1 is not in this pool \(1 missing"):
        index.get_many(["0:1", "1:1"])
    expected = [MODALITIES.index(r["modality"]) for r in records[:10]] + [-1]
    assert index.modalities([r["did"] for r in records[:10]] + ["7:7"]).tolist() == expected
    assert index.contains(np.array([hash_did("0:1"), hash_did("5:1")], np.int64)).tolist() == [True, False]
    assert sum(index.modality_counts().values()) == len(records)
    clone = pickle.loads(pickle.dumps(index))
    assert clone["9:1"].did == "9:1"
    with index:
        assert index["0:2"].did == "0:2"
    assert index._handle is None


def test_odd_lines_fall_back_to_json(tmp_path):
    records = make_records(30)
    odd = {
        0: json.dumps({"did": records[0]["did"], "modality": records[0]["modality"], "txt": records[0]["txt"], "img_path": records[0]["img_path"]}),
        3: json.dumps(records[3], separators=(",", ":")),
        5: "  " + json.dumps(records[5]),
    }
    path = tmp_path / "pool.jsonl"
    body = [odd.get(i, json.dumps(r)) for i, r in enumerate(records)]
    path.write_text("\n\n".join(body[:10]) + "\r\n" + "\r\n".join(body[10:]), encoding="utf-8")  # blank lines, CRLF, no final newline
    index = PoolReader.build(path, cache=False)
    assert len(index) == len(records)
    for rec in records:
        assert index[rec["did"]].did == rec["did"] and index.modality(rec["did"]) == rec["modality"]


def test_small_blocks_and_long_lines(tmp_path, monkeypatch):
    records = make_records(60)
    records[7]["txt"] = "x" * 5000  # longer than a block
    records[7]["modality"] = "text"
    path = write_pool(tmp_path / "pool.jsonl", records)
    monkeypatch.setattr(pool_reader, "CHUNK_BYTES", 256)
    dids, offsets, codes = scan_pool(path)
    assert dids.tolist() == hash_dids(r["did"] for r in records).tolist()
    data = path.read_bytes()
    assert [json.loads(data[o:data.index(b"\n", o)])["did"] for o in offsets.tolist()] == [r["did"] for r in records]
    assert codes.tolist() == [MODALITIES.index(r["modality"]) for r in records]


def test_unsorted_input_is_sorted(tmp_path):
    records = make_records(30)
    random.Random(5).shuffle(records)
    index = PoolReader.build(write_pool(tmp_path / "p.jsonl", records), cache=False)
    assert np.all(np.diff(index.dids) > 0)
    assert [index[r["did"]].did for r in records] == [r["did"] for r in records]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"txt": "a", "modality": "text", "did": "1:99"', "malformed JSON"),
        ('{"txt": "a", "img_path": null, "modality": "video", "did": "1:99"}', "unknown modality 'video'"),
        ('{"txt": "a", "img_path": null, "modality": "text"}', "missing required field 'did'"),
        ('{"txt": "a", "img_path": null, "modality": "text", "did": "1:99999999"}', "cannot be hashed"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    records = make_records(30)
    path = write_pool(tmp_path / "pool.jsonl", records, raw={12: line})
    with pytest.raises(DataError, match=rf"{path}:13: .*{message}"):
        PoolReader.build(path, cache=False)


def test_duplicate_dids(tmp_path):
    records = make_records(30)
    records[20] = dict(records[4])
    path = write_pool(tmp_path / "pool.jsonl", records)
    with pytest.raises(DataError, match=rf"{path}: candidate {records[4]['did']} appears more than once \(line 5 and line 21\)"):
        PoolReader.build(path, cache=False)
    with pytest.raises(DataError, match="appears more than once"):
        DidTable.from_arrays(hash_dids(["1:1", "1:2", "1:1"]), np.zeros(3, np.int8), source="x")


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    records = make_records(30)
    path = write_pool(tmp_path / "pool.jsonl", records)
    cache = tmp_path / "cache"
    assert PoolReader.build(path, cache_dir=cache) and not cache.exists()  # small pools are not cached
    first = PoolReader.build(path, cache_dir=cache, cache_min_bytes=0)
    files = list(cache.glob("pool-*.npz"))
    assert len(files) == 1 and not list(cache.glob(".*tmp*"))

    def no_scan(_path):
        raise AssertionError("scanned although the cache matches")

    monkeypatch.setattr(pool_reader, "scan_pool", no_scan)
    second = PoolReader.build(path, cache_dir=cache, cache_min_bytes=0)
    assert np.array_equal(first.dids, second.dids) and second[records[3]["did"]].did == records[3]["did"]
    monkeypatch.undo()
    write_pool(path, records[:-1])
    os.utime(path, ns=(1, 1))
    assert len(PoolReader.build(path, cache_dir=cache, cache_min_bytes=0)) == len(records) - 1


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UNIIR_CACHE_DIR", str(tmp_path))
    assert pool_reader.default_cache_dir() == tmp_path / "pool_index"
    monkeypatch.delenv("UNIIR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pool_reader.default_cache_dir() == tmp_path / "xdg" / "uniir" / "pool_index"


def test_stale_index_is_detected(tmp_path):
    a = {"txt": "a", "img_path": None, "modality": "text", "did": "1:1"}
    b = {"txt": "b", "img_path": None, "modality": "text", "did": "1:2"}
    path = write_pool(tmp_path / "pool.jsonl", [a, b])
    index = PoolReader.build(path, cache=False)
    write_pool(path, [b, a])
    with pytest.raises(DataError, match="expected candidate 1:1, found 1:2: the pool changed"):
        index["1:1"]


def test_missing_and_empty_pool(tmp_path):
    with pytest.raises(DataError, match="candidate pool not found"):
        PoolReader.build(tmp_path / "none.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    index = PoolReader.build(empty, cache=False)
    assert len(index) == 0 and "1:1" not in index and index.modalities(["1:1"]).tolist() == [-1]


_FORKED: dict[str, PoolReader] = {}  # inherited by forked processes as is (not pickled)


def _read_all(dids: list[str]) -> list[str]:
    return [_FORKED["index"][d].did for _ in range(20) for d in dids]


def test_forked_workers_do_not_share_the_parents_file_offset(tmp_path):
    """DataLoader workers are forked after the parent has read records: each process must
    seek its own file, or concurrent reads land mid-line (seen as "malformed JSON")."""
    import multiprocessing

    records = make_records(300)
    index = _FORKED["index"] = PoolReader.build(write_pool(tmp_path / "p.jsonl", records), cache=False)
    dids = [r["did"] for r in records]
    assert index[dids[0]].did == dids[0]  # the parent's handle is open now
    try:
        with multiprocessing.get_context("fork").Pool(2) as workers:
            results = workers.map(_read_all, [dids] * 4)
    finally:
        _FORKED.clear()
    assert all(result == dids * 20 for result in results)
