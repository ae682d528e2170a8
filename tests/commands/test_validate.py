"""`uniir validate` (in-process) and the validation library, on small generated M-BEIR trees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.data.benchmark import EVAL_PAIRS, IMAGE, IMAGE_TEXT, TEXT, EvalPair
from uniir_cli.data.tree_check import validate_data
from uniir_cli.errors import ConfigError, DataError

runner = CliRunner()


def _record_fields(modality: str, stem: str, txt: str) -> tuple[str | None, str | None]:
    text = txt if modality in (TEXT, IMAGE_TEXT) else None
    image = f"mbeir_images/{stem}.jpg" if modality in (IMAGE, IMAGE_TEXT) else None
    return text, image


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def build_tree(root: Path, *, splits: tuple[str, ...] = ("test",), pairs: tuple[EvalPair, ...] = EVAL_PAIRS) -> Path:
    """Two queries and three candidates per pair, qrels, instructions, a union pool, real JPEGs."""
    counters: dict[int, int] = {}
    union: list[dict] = []
    images: set[str] = set()
    pools: dict[str, list[dict]] = {}
    for split in splits:
        for pair in pairs:
            d = pair.dataset.id
            qmod, cmod = pair.modalities
            cands = pools.setdefault(pair.pool_file(split), [])  # val and test share pools (not MSCOCO)
            for _ in range(3 - len(cands)):
                counters[d] = counters.get(d, 0) + 1
                did = f"{d}:{counters[d]}"
                txt, img = _record_fields(cmod, f"{pair.dataset.slug}/c{counters[d]}", f"candidate {did}")
                cands.append({"txt": txt, "img_path": img, "modality": cmod, "did": did, "src_content": None})
            queries, qrels = [], []
            for k in range(2):
                counters[d] = counters.get(d, 0) + 1
                qid = f"{d}:{counters[d]}"
                txt, img = _record_fields(qmod, f"{pair.dataset.slug}/q{counters[d]}", f"query {qid}")
                pos = [cands[k]["did"]]
                queries.append({"qid": qid, "query_txt": txt, "query_img_path": img, "query_modality": qmod,
                                "query_src_content": None, "pos_cand_list": pos, "neg_cand_list": [], "task_id": pair.task_id})
                qrels.append(f"{qid} 0 {pos[0]} 1 {pair.task_id}\n")
            write_jsonl(root / pair.query_file(split), queries)
            write_jsonl(root / pair.pool_file(split), cands)
            (root / pair.qrels_file(split)).parent.mkdir(parents=True, exist_ok=True)
            (root / pair.qrels_file(split)).write_text("".join(qrels))
            images.update(r["img_path"] for r in cands if r["img_path"])
            images.update(r["query_img_path"] for r in queries if r["query_img_path"])
            if split == "test":
                union += cands
    write_jsonl(root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl", sorted(union, key=lambda r: tuple(map(int, r["did"].split(":")))))
    rows = ["query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\n"]
    rows += [f"{p.modalities[0]}\t{p.modalities[1]}\t{p.dataset.name}\t{p.dataset.id}\tfind {p.name}\talso {p.name}\n" for p in EVAL_PAIRS]
    (root / "instructions").mkdir(parents=True, exist_ok=True)
    (root / "instructions/query_instructions.tsv").write_text("".join(rows))
    for rel in images:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), "blue").save(root / rel)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("mbeir") / "M-BEIR")


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def invoke(*args: str):
    return runner.invoke(build_app(), ["validate", *args], env={"COLUMNS": "200", "UNIIR_DATA_DIR": ""})


def out(result) -> str:
    return re.sub(r"\s+", " ", result.output + (result.stderr if result.stderr_bytes is not None else ""))


def test_valid_tree_passes(tree):
    result = invoke("--data-dir", str(tree), "--images")
    assert result.exit_code == 0, out(result)
    text = out(result)
    for pair in EVAL_PAIRS:
        assert pair.name in text
    assert "16/16 pairs covered" in text and "ok:" in text
    assert "error" not in text


def test_library_report(tree):
    report = validate_data(tree, splits=["test"], images=True)
    assert report.ok and report.splits == ("test",)
    rows = {r.name: r for r in report.rows}
    assert rows["mscoco_task0"].queries == 2 and rows["mscoco_task0"].pool == 3 and rows["mscoco_task0"].qrels == 2
    assert rows["union pool"].pool == 48
    assert rows["nights_task4"].images_checked == 5 and rows["nights_task4"].images_bad == 0
    assert validate_data(tree, splits=["test"], quick=True).ok
    with pytest.raises(ConfigError, match="unknown split"):
        validate_data(tree, splits=["dev"])


def test_optional_splits_are_reported_when_present(tmp_path):
    root = build_tree(tmp_path / "M-BEIR", splits=("test", "val"), pairs=EVAL_PAIRS)
    (root / EVAL_PAIRS[0].qrels_file("val")).unlink()
    report = validate_data(root)
    val = {r.name: r for r in report.rows if r.split == "val"}
    assert val["mscoco_task0"].status == "ok" and val["union"].absent
    assert val["visualnews_task0"].warnings == 1 and report.ok
    assert all(r.absent for r in report.rows if r.split == "train")
    result = invoke("--data-dir", str(root), "--split", "val", "--split", "train")
    assert result.exit_code == 0, out(result)
    assert "qrels of val visualnews_task0 is missing" in out(result)


def test_dangling_ids_and_qrels(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "[data] M-BEIR")  # rich markup in paths must print as is
    pair = EVAL_PAIRS[1]  # mscoco_task0
    qfile = root / pair.query_file("test")
    rows = [json.loads(x) for x in qfile.read_text().splitlines()]
    rows[0]["pos_cand_list"] = ["9:999"]
    write_jsonl(qfile, rows)
    qrels = root / pair.qrels_file("test")
    qrels.write_text(qrels.read_text() + "9:777 0 9:1 1 0\n")
    result = invoke("--data-dir", str(root), "--split", "test")
    assert result.exit_code == 2
    text = out(result)
    assert f"{qfile}:1: query {rows[0]['qid']}: positive 9:999 is not in the pool" in text
    assert f"{qrels}:3: query 9:777 is not in {qfile}" in text
    assert re.search(r"error: \d+ error\(s\) and \d+ warning\(s\) in", text)


def test_bad_records_images_and_missing_files(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "M-BEIR")
    nights = next(p for p in EVAL_PAIRS if p.name == "nights_task4")
    qfile = root / nights.query_file("test")
    lines = qfile.read_text().splitlines()
    first = json.loads(lines[0])
    (root / first["query_img_path"]).unlink()
    second = json.loads(lines[1])
    (root / second["query_img_path"]).write_bytes(b"garbage")
    qfile.write_text(lines[0] + "\n" + lines[1] + "\n{broken\n")
    cirr = next(p for p in EVAL_PAIRS if p.name == "cirr_task7")
    (root / cirr.pool_file("test")).unlink()
    result = invoke("--data-dir", str(root), "--split", "test", "--images", "--max-issues", "100")
    assert result.exit_code == 2
    text = out(result)
    assert f"image of {first['qid']} not found: {root / first['query_img_path']}" in text
    assert f"image of {second['qid']} is unreadable: {root / second['query_img_path']}" in text
    assert f"{qfile}:3: malformed JSON" in text
    assert f"{root / cirr.pool_file('test')}: pool of test cirr_task7 is missing" in text


def test_instruction_coverage_and_wrong_modality(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "M-BEIR")
    tsv = root / "instructions/query_instructions.tsv"
    tsv.write_text("".join(line for line in tsv.read_text().splitlines(keepends=True) if "\tCIRR\t" not in line))
    pool = root / EVAL_PAIRS[0].pool_file("test")
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    rows[0].update(modality="text", txt="now text", img_path=None)
    write_jsonl(pool, rows)
    report = validate_data(root, splits=["test"])
    messages = [i.message for _, i in report.issues()]
    assert any("no prompt for cirr_task7 (key dataset 8, 'image,text' -> 'image')" in m for m in messages)
    assert any("positive is 'text', but visualnews_task0 expects 'image'" in m for m in messages)
    assert not report.ok


def test_union_pool_must_cover_local_pools(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "M-BEIR")
    union = root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    union.write_text("".join(union.read_text().splitlines(keepends=True)[1:]))
    report = validate_data(root, splits=["test"])
    assert [i.message for r, i in report.issues() if r.name == "union pool"] == [
        f"{union}: 1 candidate(s) of {root / EVAL_PAIRS[0].pool_file('test')} are not in the union pool; re-download it"
    ]
    union.unlink()
    assert validate_data(root, splits=["test"]).ok  # missing union pool: a warning only


def test_not_mbeir_and_no_data_dir(tmp_path):
    result = invoke("--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "folder query/ is missing" in out(result) and "uniir download mbeir" in out(result)
    result = invoke()
    assert result.exit_code == 2 and "pass --data-dir" in out(result)


def test_help_has_example():
    result = runner.invoke(build_app(), ["validate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "uniir validate --data-dir /data/M-BEIR" in out(result) and "--images" in out(result)


def test_qrels_problems_and_raise(tmp_path):
    from uniir_cli.data.mbeir import QueryRecord, read_qrels, read_queries
    from uniir_cli.data.tree_check_sets import qrels_problems, raise_problems

    path = tmp_path / "qrels.txt"
    path.write_text("9:1 0 9:2 1 0\n9:5 0 9:2 1 0\n9:6 0 9:2 1 0\n")
    queries = [QueryRecord("9:1", "a", None, "text", ["9:2"]), QueryRecord("9:3", "b", None, "text", ["9:2"])]
    problems = qrels_problems(read_qrels(path), queries, "q.jsonl")
    assert [str(p) for p in problems] == [
        f"{path}:2: query 9:5 is not in q.jsonl; fix the qrels or re-download both files",
        f"{path}:3: query 9:6 is not in q.jsonl; fix the qrels or re-download both files",
        f"q.jsonl: query 9:3 has no relevant candidate in {path}; scoring needs one per query",
    ]
    with pytest.raises(DataError, match=rf"{path}:2: query 9:5 .* \(2 more problem\(s\) like this\)"):
        raise_problems(problems)
    with pytest.raises(DataError, match="9:3 has no relevant"):
        raise_problems(problems[2:])
    raise_problems([])
    qfile = tmp_path / "q.jsonl"
    write_jsonl(qfile, [q.to_json() for q in queries])
    problems = qrels_problems(read_qrels(path), read_queries(qfile), qfile)
    assert str(problems[-1]).startswith(f"{qfile}:2: query 9:3 has no relevant candidate")


def test_an_empty_union_test_pool_is_a_reported_error(synthetic_tiny, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    (data / "cand_pool/global/mbeir_union_test_cand_pool.jsonl").write_text("")
    report = validate_data(data, splits=["test"])
    union = next(row for row in report.rows if row.name == "union pool")
    assert any("holds no candidates" in str(issue.message) for issue in union.issues if issue.severity == "error")
