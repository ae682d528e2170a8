"""Records, readers, image loading and layout discovery, including every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import (
    CandidateRecord,
    QueryRecord,
    dumps_record,
    iter_candidates,
    iter_queries,
    load_image,
    read_pool,
    read_qrels,
    read_queries,
)
from uniir_cli.errors import DataError

QUERY = {
    "qid": "9:6", "query_txt": None, "query_img_path": "mbeir_images/mscoco_images/a.jpg",
    "query_modality": "image", "query_src_content": None, "pos_cand_list": ["9:2", "9:3"],
    "neg_cand_list": [], "task_id": 3,
}
DROP = object()
CAND = {"txt": "a dog", "img_path": None, "modality": "text", "did": "9:2", "src_content": None}


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_read_queries_and_round_trip(tmp_path):
    text_query = {"qid": "2:1", "query_txt": "what?", "query_img_path": None, "query_modality": "text", "pos_cand_list": ["2:5"]}
    path = write_lines(tmp_path / "q.jsonl", [QUERY, "", text_query])
    first, second = read_queries(path)
    assert first.qid == "9:6" and first.dataset_id == 9 and first.task_id == 3 and first.img_path == first.query_img_path
    assert first.to_json() == QUERY and list(first.to_json()) == list(QUERY)
    assert second.neg_cand_list == [] and second.task_id is None and second.query_src_content is None


def test_query_records_remember_file_and_line(tmp_path):
    text_query = {"qid": "2:1", "query_txt": "what?", "query_img_path": None, "query_modality": "text", "pos_cand_list": ["2:5"]}
    path = write_lines(tmp_path / "q.jsonl", [QUERY, "", text_query])
    first, second = read_queries(path)
    assert (first.where, second.where) == (f"{path}:1", f"{path}:3")  # the blank line 2 still counts
    assert [q.where for q in iter_queries(path)] == [f"{path}:1", f"{path}:3"]
    built = QueryRecord.from_dict(text_query)
    assert built.where == "" and built == second  # the location is not part of the record's value


def test_candidate_key_order_and_absent_src_content():
    record = CandidateRecord.from_dict(CAND)
    assert list(record.to_json()) == ["txt", "img_path", "modality", "did", "src_content"]
    bare = {k: v for k, v in CAND.items() if k != "src_content"}
    record = CandidateRecord.from_dict(bare)
    assert not record.has_src_content and record.to_json() == bare
    assert dumps_record(record) == json.dumps(bare)
    shuffled = {"did": "1:1", "modality": "image", "img_path": "x.jpg", "txt": None, "src_content": "{}"}
    assert list(CandidateRecord.from_dict(shuffled).to_json()) == ["txt", "img_path", "modality", "did", "src_content"]


def test_malformed_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [QUERY, '{"qid": "9:7", '])
    with pytest.raises(DataError, match=rf"{path}:2: malformed JSON \(.*column"):
        read_queries(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qid": DROP}, "missing required field 'qid'"),
        ({"pos_cand_list": DROP}, "missing required field 'pos_cand_list'"),
        ({"qid": "nine:6"}, "malformed qid 'nine:6'"),
        ({"query_modality": "video"}, "unknown modality 'video'"),
        ({"query_img_path": None}, "modality 'image' but 'query_img_path' is empty"),
        ({"query_modality": "image,text", "task_id": 6}, "modality 'image,text' but 'query_txt' is null"),
        ({"task_id": 5}, "task_id 5 is not a task id"),
        ({"task_id": 0}, "task_id 0 is a 'text' task but query_modality is 'image'"),
        ({"pos_cand_list": [{"did": "9:2"}]}, "'pos_cand_list' must be a list of id strings"),
        ({"neg_cand_list": ["9-2"]}, "'neg_cand_list' must be a list of id strings"),
        ({"query_txt": 7}, "'query_txt' must be a string or null"),
    ],
)
def test_bad_query_records(tmp_path, change, message):
    record = {k: v for k, v in (QUERY | change).items() if v is not DROP}
    path = write_lines(tmp_path / "q.jsonl", [QUERY | {"qid": "9:1"}, record])
    with pytest.raises(DataError, match=rf"{path}:2: .*{message}") as info:
        read_queries(path)
    assert "re-download" in str(info.value) or "fix" in str(info.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"txt": "x", "img_path": None, "modality": "text"}, "missing required field 'did'"),
        (CAND | {"modality": "audio"}, "candidate 9:2: unknown modality 'audio'"),
        (CAND | {"txt": None}, "candidate 9:2: modality 'text' but 'txt' is null"),
        (CAND | {"modality": "image,text"}, "candidate 9:2: modality 'image,text' but 'img_path' is empty"),
        (CAND | {"did": "9.2"}, "malformed did '9.2'"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_bad_candidate_records(tmp_path, record, message):
    path = write_lines(tmp_path / "pool.jsonl", [CAND | {"did": "9:1"}, "", record])
    with pytest.raises(DataError, match=rf"{path}:3: .*{message}"):
        list(iter_candidates(path))


def test_on_error_collects_and_skips(tmp_path):
    path = write_lines(tmp_path / "pool.jsonl", [CAND, "{oops", CAND | {"did": "9:3", "modality": "x"}, CAND | {"did": "9:4"}])
    errors: list[DataError] = []
    records = list(iter_candidates(path, on_error=errors.append))
    assert [r.did for r in records] == ["9:2", "9:4"]
    assert [str(e).split(": ")[0] for e in errors] == [f"{path}:2", f"{path}:3"]


def test_duplicates(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [QUERY, QUERY | {"qid": "9:7"}, QUERY])
    with pytest.raises(DataError, match=rf"{path}:3: query 9:6 repeats line 1"):
        read_queries(path)
    assert len(read_queries(path, unique=False)) == 3  # up-sampled training files repeat qids
    pool = write_lines(tmp_path / "pool.jsonl", [CAND, CAND | {"did": "9:3"}, CAND])
    with pytest.raises(DataError, match=rf"{pool}:3: candidate 9:2 repeats line 1"):
        read_pool(pool)
    assert list(read_pool(write_lines(tmp_path / "ok.jsonl", [CAND]))) == ["9:2"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_queries(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="file not found"):
        read_qrels(tmp_path / "nope.txt")


def test_qrels(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("9:6 0 9:2 1 3\n9:6 0 9:3 1 4\n9:6 0 9:2 1 3\n\n9:7 0 9:4 0 3\n9:8\t0\t9:5\t2\t3\r\n")
    qrels = read_qrels(path)
    assert qrels.relevant == {"9:6": ["9:2", "9:3"], "9:8": ["9:5"]}
    assert qrels.task_of == {"9:6": 3, "9:8": 3}  # first task id seen wins
    assert qrels.first_line == {"9:6": 1, "9:8": 6} and len(qrels) == 2


@pytest.mark.parametrize(
    "line", ["9:6 0 9:2 1", "9:6 0 9:2 one 3", "9:6 0 92 1 3", "9:6 Q0 9:2 1 3 extra", "9:6 0 9:2 1 x"]
)
def test_malformed_qrels_line(tmp_path, line):
    path = tmp_path / "qrels.txt"
    path.write_text(f"9:1 0 9:1 1 3\n{line}\n")
    with pytest.raises(DataError, match=rf"{path}:2: malformed qrels line .*qid 0 did relevance task_id"):
        read_qrels(path)
    errors: list[DataError] = []
    assert list(read_qrels(path, on_error=errors.append).relevant) == ["9:1"] and len(errors) == 1


def test_load_image(tmp_path):
    good = tmp_path / "g.jpg"
    Image.new("L", (20, 10), 128).save(good)
    image = load_image(good, "9:6")
    assert image.mode == "RGB" and image.size == (20, 10)
    assert load_image(good, "9:6", draft=(8, 8)).mode == "RGB"
    with pytest.raises(DataError, match=rf"image of 9:6 not found: {tmp_path / 'missing.jpg'}"):
        load_image(tmp_path / "missing.jpg", "9:6")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=rf"image of 1:2 is unreadable: {bad}"):
        load_image(bad, "1:2")
    truncated = tmp_path / "t.jpg"
    Image.new("RGB", (64, 64), "red").save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(DataError, match="image of 1:3 is unreadable"):
        load_image(truncated, "1:3")


def make_root(root: Path) -> Path:
    for name in ("query/test", "cand_pool/local", "qrels/test", "instructions", "mbeir_images/x"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def test_layout_paths_and_images(tmp_path):
    from uniir_cli.data.benchmark import DATASET_BY_SLUG, EVAL_PAIR_BY_NAME

    layout = MBeirLayout(make_root(tmp_path / "M-BEIR"))
    pair = EVAL_PAIR_BY_NAME["mscoco_task0"]
    assert layout.query_file(pair, "test") == layout.root / "query/test/mbeir_mscoco_task0_test.jsonl"
    assert layout.pool_file(pair, "test") == layout.root / "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"
    assert layout.qrels_file(pair, "val") == layout.root / "qrels/val/mbeir_mscoco_task0_val_qrels.txt"
    assert layout.union_pool_file("test") == layout.root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    assert layout.train_query_file(DATASET_BY_SLUG["cirr"]) == layout.root / "query/train/mbeir_cirr_train.jsonl"
    assert layout.union_train_queries.name == "mbeir_union_up_train.jsonl"
    assert layout.instructions_file == layout.root / "instructions/query_instructions.tsv"
    assert layout.pairs_present("test") == []
    Image.new("RGB", (4, 4)).save(layout.images_dir / "x" / "a.jpg")
    query = QueryRecord.from_dict(QUERY | {"query_img_path": "mbeir_images/x/a.jpg"})
    assert layout.image_path(query) == layout.root / "mbeir_images/x/a.jpg"
    assert layout.open_image(query).size == (4, 4)
    missing = CandidateRecord.from_dict(CAND | {"modality": "image", "img_path": "mbeir_images/x/b.jpg", "did": "9:77"})
    with pytest.raises(DataError, match=r"image of 9:77 not found: .*mbeir_images/x/b\.jpg"):
        layout.open_image(missing)
    with pytest.raises(DataError, match="record 9:2 has no image path"):
        layout.open_image(CandidateRecord.from_dict(CAND))
    with pytest.raises(DataError, match="query file not found"):
        layout.require(layout.query_file(pair, "test"), "query file")


def test_layout_rejects_non_mbeir_roots(tmp_path):
    with pytest.raises(DataError, match="does not exist.*uniir download mbeir.*uniir demo --data-only"):
        MBeirLayout(tmp_path / "nowhere")
    root = make_root(tmp_path / "half")
    (root / "qrels/test").rmdir()
    (root / "qrels").rmdir()
    with pytest.raises(DataError, match=r"not look like an M-BEIR data root: folder qrels/ is missing.*uniir download mbeir"):
        MBeirLayout(root)
    assert MBeirLayout(root, check=False).root == root
