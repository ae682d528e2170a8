"""The synthetic M-BEIR: determinism, layout, record schemas, pools, images and learnable rules."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from uniir_cli.data import benchmark as bm
from uniir_cli.data.benchmark import DATASETS, EVAL_PAIRS, TASK_BY_MODALITIES
from uniir_cli.data.synthetic import (
    INSTRUCTIONS,
    MARKER,
    UPSAMPLE_FACTORS,
    generate_synthetic_mbeir,
    parse_size,
)
from uniir_cli.data.synthetic import scenes as sc
from uniir_cli.errors import ConfigError, DataError

QUERY_KEYS = [
    "qid", "query_txt", "query_img_path", "query_modality", "query_src_content", "pos_cand_list", "neg_cand_list", "task_id",
]
CAND_KEYS = ["txt", "img_path", "modality", "did", "src_content"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def read_qrels(path: Path) -> list[tuple[str, str, str, str, str]]:
    return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


def tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def did_dataset(ident: str) -> int:
    return int(ident.split(":")[0])


def modality_of(txt: object, img: object) -> str:
    if txt is not None and img is not None:
        return bm.IMAGE_TEXT
    return bm.TEXT if txt is not None else bm.IMAGE


class Tree:
    """The tiny tree read back with plain json, independent of uniir's own readers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = json.loads((root / MARKER).read_text())
        self.queries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for split in ("val", "test"):
            for pair in EVAL_PAIRS:
                self.queries[(pair.name, split)] = read_jsonl(root / pair.query_file(split))
                self.pools[(pair.name, split)] = read_jsonl(root / pair.pool_file(split))
        for d in DATASETS:
            self.queries[(d.slug, "train")] = read_jsonl(root / bm.train_query_file(d))
        self.union = {split: read_jsonl(root / bm.union_pool_file(split)) for split in bm.SPLITS}
        self.union_train = read_jsonl(root / bm.UNION_TRAIN_QUERIES)
        self.union_val = read_jsonl(root / bm.UNION_VAL_QUERIES)
        self.cands: dict[str, dict[str, Any]] = {}
        for records in [*self.pools.values(), *self.union.values()]:
            for record in records:
                assert self.cands.setdefault(record["did"], record) == record, f"two different records for {record['did']}"
        # Ground truth of every image: from the records that carry a scene.
        self.scene_of: dict[str, sc.Scene] = {}
        for record in [*self.cands.values(), *(q for qs in self.queries.values() for q in qs)]:
            path = record.get("img_path", record.get("query_img_path"))
            src = record.get("src_content", record.get("query_src_content"))
            if path and src and "scene" in json.loads(src):
                self.scene_of[path] = sc.Scene.from_dict(json.loads(src)["scene"])

    def all_queries(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(name, split, q) for (name, split), qs in self.queries.items() for q in qs]

    def scene(self, query: dict[str, Any]) -> sc.Scene:
        if query["query_src_content"] is not None:
            return sc.Scene.from_dict(json.loads(query["query_src_content"])["scene"])
        return self.scene_of[query["query_img_path"]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    root = tmp_path_factory.mktemp("synthetic") / "mbeir"
    summary = generate_synthetic_mbeir(root, seed=0, size="tiny")
    assert not summary.skipped and summary.images > 0
    return Tree(root)


# -- determinism and the marker ------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_does_not(tiny: Tree, tmp_path: Path) -> None:
    again = generate_synthetic_mbeir(tmp_path / "again", seed=0, size="tiny")
    other = generate_synthetic_mbeir(tmp_path / "other", seed=1, size="tiny")
    reference = tree_hashes(tiny.root)
    assert tree_hashes(tmp_path / "again") == reference
    assert again.files == tiny.marker["files"]
    different = tree_hashes(tmp_path / "other")
    assert different[bm.union_pool_file("test")] != reference[bm.union_pool_file("test")]
    assert json.loads((tmp_path / "other" / MARKER).read_text())["sha256"] != tiny.marker["sha256"]
    assert other.seed == 1


def test_rerun_is_skipped_and_regeneration_removes_only_its_stale_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    first = generate_synthetic_mbeir(root, size=2, image_size=32)
    assert generate_synthetic_mbeir(root, size=2, image_size=32).skipped
    second = generate_synthetic_mbeir(root, size=1, image_size=32)
    assert not second.skipped and second.images < first.images
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    marker = json.loads((root / MARKER).read_text())
    assert on_disk == {MARKER, *marker["files"], *marker["images"]}
    assert marker["status"] == "complete" and marker["size"] == "1"
    with Image.open(root / marker["images"][0]) as image:  # image_size is a parameter
        assert image.size == (32, 32) and second.image_size == 32


def test_an_interrupted_run_is_recovered_by_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    generate_synthetic_mbeir(root, size=1, image_size=16)
    calls = []
    real = sc.jpeg_bytes

    def failing(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sc, "jpeg_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_mbeir(root, size=1, seed=5, image_size=16)
    assert json.loads((root / MARKER).read_text())["status"] == "incomplete"
    monkeypatch.setattr(sc, "jpeg_bytes", real)
    summary = generate_synthetic_mbeir(root, size=1, seed=5, image_size=16)
    assert not summary.skipped
    marker = json.loads((root / MARKER).read_text())
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == {MARKER, *marker["files"], *marker["images"]} and marker["status"] == "complete"


def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a synthetic M-BEIR tree"):
        generate_synthetic_mbeir(tmp_path, size="tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("bad", ["huge", "0", 81, "-3"])
def test_bad_sizes_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(bad)  # type: ignore[arg-type]


def test_sizes_scale() -> None:
    assert parse_size("tiny").test < parse_size("demo").test
    assert parse_size(20).test == 20 and parse_size("20").train == 80


# -- layout ----------------------------------------------------------------------------------


def test_layout_has_every_file_the_benchmark_needs(tiny: Tree) -> None:
    expected = {bm.UNION_TRAIN_QUERIES, bm.UNION_VAL_QUERIES, bm.INSTRUCTIONS_FILE}
    expected |= {bm.union_pool_file(split) for split in bm.SPLITS}
    expected |= {path for d in DATASETS for path in (bm.train_query_file(d), bm.train_qrels_file(d))}
    for pair in EVAL_PAIRS:
        for split in ("val", "test"):
            expected |= {pair.query_file(split), pair.pool_file(split), pair.qrels_file(split)}
    assert expected == set(tiny.marker["files"])
    assert len([p for p in expected if p.startswith("query/test/")]) == 16
    assert {"mbeir_mscoco_task0_val_cand_pool.jsonl", "mbeir_mscoco_task0_test_cand_pool.jsonl"} <= {
        Path(p).name for p in expected
    }
    for path in expected:
        assert (tiny.root / path).is_file() and (tiny.root / path).stat().st_size > 0, path


def test_instructions_have_four_own_prompts_per_pair(tiny: Tree) -> None:
    lines = (tiny.root / bm.INSTRUCTIONS_FILE).read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:4] == ["query_modality", "cand_modality", "dataset", "dataset_id"]
    assert header[4:] == ["prompt_1", "prompt_2", "prompt_3", "prompt_4"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 16
    for row, pair in zip(rows, EVAL_PAIRS):
        assert (row[0], row[1], row[3]) == (*pair.modalities, str(pair.dataset.id))
        assert len(row) == 8 and all(p.strip() for p in row[4:]) and len(set(row[4:])) == 4
    # Our own wording, not the paper's Table 1.
    assert "Find an everyday image match with caption" not in "\n".join(lines)
    assert len({p for prompts in INSTRUCTIONS.values() for p in prompts}) == 64


# -- records ---------------------------------------------------------------------------------


def test_query_records_follow_the_schema(tiny: Tree) -> None:
    seen: dict[int, set[str]] = {}
    for name, split, q in tiny.all_queries():
        assert list(q) == QUERY_KEYS
        dataset_id, n = (int(x) for x in q["qid"].split(":"))
        assert n >= 1
        assert q["qid"] not in seen.setdefault(dataset_id, set()), "qids are unique per dataset across splits"
        seen[dataset_id].add(q["qid"])
        assert q["query_modality"] == modality_of(q["query_txt"], q["query_img_path"])
        if q["query_img_path"] is not None:
            assert q["query_img_path"].startswith("mbeir_images/") and q["query_img_path"].endswith(".jpg")
        assert q["query_src_content"] is None or isinstance(json.loads(q["query_src_content"]), dict)
        pos_modalities = {tiny.cands[did]["modality"] for did in q["pos_cand_list"]}
        assert len(pos_modalities) == 1, "all positives of a query share one modality"
        assert q["task_id"] == TASK_BY_MODALITIES[(q["query_modality"], pos_modalities.pop())]
        if split != "train":
            assert q["task_id"] == bm.EVAL_PAIR_BY_NAME[name].task_id and q["neg_cand_list"] == []
        assert any(did_dataset(did) == dataset_id for did in q["pos_cand_list"]), "one same-dataset positive"
    assert {9} <= {int(q["qid"].split(":")[0]) for _, _, q in tiny.all_queries() if q["query_src_content"] is None}


def test_candidate_records_follow_the_schema(tiny: Tree) -> None:
    absent = []
    for did, c in tiny.cands.items():
        keys = list(c)
        if "src_content" not in c:
            absent.append(did)
            keys.append("src_content")
        assert keys == CAND_KEYS
        assert c["modality"] == modality_of(c["txt"], c["img_path"])
        assert did.count(":") == 1 and int(did.split(":")[1]) >= 1
    assert len(absent) == 1 and did_dataset(absent[0]) == 0  # the VisualNews quirk
    for split, pool in tiny.union.items():
        ids = [bm_id(c["did"]) for c in pool]
        assert ids == sorted(ids) and len(ids) == len(set(ids)), split


def bm_id(ident: str) -> tuple[int, int]:
    a, b = ident.split(":")
    return int(a), int(b)


def test_every_positive_is_in_its_local_pool_and_the_union_pool(tiny: Tree) -> None:
    union = {split: {c["did"] for c in tiny.union[split]} for split in bm.SPLITS}
    cross = 0
    for name, split, q in tiny.all_queries():
        dataset_id = int(q["qid"].split(":")[0])
        assert set(q["pos_cand_list"]) <= union[split], (name, split, q["qid"])
        assert set(q["neg_cand_list"]) <= union[split]
        if split == "train":
            continue
        local = {c["did"] for c in tiny.pools[(name, split)]}
        own = {did for did in q["pos_cand_list"] if did_dataset(did) == dataset_id}
        assert own <= local
        others = set(q["pos_cand_list"]) - own
        cross += len(others)
        if others:
            assert name.split("_")[0] in ("oven", "infoseek") and {did_dataset(d) for d in others} <= {5, 6}
    assert cross > 0, "the OVEN/InfoSeek cross-dataset quirk is exercised"


def test_some_train_queries_have_hard_negatives_of_the_positive_modality(tiny: Tree) -> None:
    with_negs = [q for (_, split), qs in tiny.queries.items() if split == "train" for q in qs if q["neg_cand_list"]]
    assert len(with_negs) >= 3
    for q in with_negs:
        assert not set(q["neg_cand_list"]) & set(q["pos_cand_list"])
        assert {tiny.cands[d]["modality"] for d in q["neg_cand_list"]} == {tiny.cands[q["pos_cand_list"][0]]["modality"]}


def test_qrels_equal_positive_lists(tiny: Tree) -> None:
    def expected(queries: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        return [(q["qid"], "0", did, "1", str(q["task_id"])) for q in queries for did in q["pos_cand_list"]]

    for pair in EVAL_PAIRS:
        for split in ("val", "test"):
            assert read_qrels(tiny.root / pair.qrels_file(split)) == expected(tiny.queries[(pair.name, split)])
    for d in DATASETS:
        assert read_qrels(tiny.root / bm.train_qrels_file(d)) == expected(tiny.queries[(d.slug, "train")])


def test_union_files_are_built_as_upstream(tiny: Tree) -> None:
    test_pool: dict[str, dict[str, Any]] = {}
    for pair in EVAL_PAIRS:
        for c in tiny.pools[(pair.name, "test")]:
            test_pool[c["did"]] = c
    assert tiny.union["test"] == sorted(test_pool.values(), key=lambda c: bm_id(c["did"]))
    assert all("mscoco_images/val/" not in (c["img_path"] or "") for c in tiny.union["test"])

    val_queries = sorted((q for p in EVAL_PAIRS for q in tiny.queries[(p.name, "val")]), key=lambda q: bm_id(q["qid"]))
    assert tiny.union_val == val_queries
    referenced = {did for q in val_queries for did in q["pos_cand_list"] + q["neg_cand_list"]}
    assert {c["did"] for c in tiny.union["val"]} == referenced

    train = {q["qid"]: q for d in DATASETS for q in tiny.queries[(d.slug, "train")]}
    counts = Counter(q["qid"] for q in tiny.union_train)
    assert set(counts) == set(train) and all(train[q["qid"]] == q for q in tiny.union_train)
    for d in DATASETS:
        n = len(tiny.queries[(d.slug, "train")])
        in_union = sum(v for qid, v in counts.items() if did_dataset(qid) == d.id)
        assert in_union == round(n * UPSAMPLE_FACTORS.get(d.slug, 1.0))
    assert [q["qid"] for q in tiny.union_train] != sorted(counts, key=bm_id), "shuffled"
    train_ids = {c["did"] for c in tiny.union["train"]}
    assert not train_ids & set(test_pool), "train candidates are their own documents"


def test_train_files_mix_both_tasks_of_a_dataset(tiny: Tree) -> None:
    for d in DATASETS:
        tasks = {q["task_id"] for q in tiny.queries[(d.slug, "train")]}
        assert tasks == {p.task_id for p in EVAL_PAIRS if p.dataset == d}


# -- images ----------------------------------------------------------------------------------


def test_images_are_real_jpegs_that_show_their_scene(tiny: Tree) -> None:
    referenced = {c["img_path"] for c in tiny.cands.values() if c["img_path"]}
    referenced |= {q["query_img_path"] for _, _, q in tiny.all_queries() if q["query_img_path"]}
    on_disk = {str(p.relative_to(tiny.root)) for p in (tiny.root / bm.IMAGES_DIR).rglob("*") if p.is_file()}
    assert referenced == on_disk == set(tiny.marker["images"])
    assert {p.split("/")[1] for p in on_disk} == {f"{d.slug}_images" for d in DATASETS if d.slug != "infoseek"}
    for path in sorted(on_disk)[::7]:
        with Image.open(tiny.root / path) as image:
            assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"
            pixels = np.asarray(image, dtype=np.float32)
        if path in tiny.scene_of:  # the file is the rendering of the recorded scene
            expected = np.asarray(sc.render(tiny.scene_of[path], 64), dtype=np.float32)
            assert np.abs(pixels - expected).mean() < 6.0, path


def test_domains_look_different() -> None:
    means = {}
    for domain in sc.DOMAINS:
        for name in sc.attribute_values(domain, "background"):
            scene = sc.Scene(domain, "circle", "red", "small", "left", name)
            means[(domain, name)] = np.asarray(sc.render(scene, 64), dtype=np.float32)[:, 40:].std()
    assert len({round(float(v)) for v in means.values()}) >= 3  # textures differ, not only colours


# -- the learnable rules ---------------------------------------------------------------------


def test_every_task_follows_its_rule(tiny: Tree) -> None:
    checked = Counter()
    for name, split, q in tiny.all_queries():
        pos = [tiny.cands[did] for did in q["pos_cand_list"]]
        own = [c for c in pos if did_dataset(c["did"]) == did_dataset(q["qid"])]
        task = q["task_id"]
        slug = name.split("_")[0]
        if slug in ("oven", "infoseek"):
            src = json.loads(q["query_src_content"])
            for c in pos:
                assert json.loads(c["src_content"])["entity_id"] == src["entity_id"]
            if slug == "infoseek":
                assert all(src["answer"][0] in c["txt"] for c in pos)
                assert src["question_type"] in sc.QUESTION_TYPES
            else:
                assert len(own) == 2
        elif task == 0:  # caption -> image of that scene
            (image,) = pos
            assert q["query_txt"] in sc.captions(tiny.scene_of[image["img_path"]])
        elif task == 3:  # image -> its captions
            scene = tiny.scene(q)
            assert all(c["txt"] in sc.captions(scene) for c in pos)
            assert len(pos) == (5 if slug == "mscoco" else 1)
        elif task == 1:  # question -> passages about the scene
            scene = tiny.scene(q)
            assert q["query_txt"] in [sc.question(scene, v) for v in range(3)]
            assert len(pos) == 2 and all(c["txt"] in [sc.passage(scene, v) for v in range(3)] for c in pos)
        elif task == 2:  # caption/question -> image+text of the scene
            scene = tiny.scene(q)
            for c in pos:
                assert tiny.scene_of[c["img_path"]].key == scene.key
                assert c["txt"] in [sc.short_caption(scene, v) for v in range(3)]
        elif task == 4:  # image -> the same scene, jittered
            scene, (twin,) = tiny.scene(q), pos
            other = tiny.scene_of[twin["img_path"]]
            assert other.key == scene.key and (other.dx, other.dy) != (scene.dx, scene.dy)
        elif task == 7:  # image + edit -> the edited scene
            src = json.loads(q["query_src_content"])
            reference, target = sc.Scene.from_dict(src["scene"]), sc.Scene.from_dict(src["target"])
            changed = [a for a in sc.ATTRIBUTES if getattr(reference, a) != getattr(target, a)]
            assert len(changed) == 1
            if slug == "fashioniq":
                assert changed[0] in ("colour", "shape")
            style = "fashion" if slug == "fashioniq" else "common"
            assert q["query_txt"] in [sc.modification(reference, target, v, style) for v in range(2)]
            (image,) = pos
            assert tiny.scene_of[image["img_path"]].key == target.key
        checked[task] += 1
    assert set(checked) == {0, 1, 2, 3, 4, 6, 7, 8}


def test_eval_pools_hold_hard_distractors_and_no_ambiguous_scenes(tiny: Tree) -> None:
    for pair in EVAL_PAIRS:
        if pair.dataset.slug in ("oven", "infoseek", "mscoco") or pair.task_id in (1, 3):
            continue
        pool = tiny.pools[(pair.name, "test")]
        scenes = [tiny.scene_of[c["img_path"]] for c in pool if c["img_path"] in tiny.scene_of]
        keys = Counter(s.key for s in scenes)
        unknown = sum(1 for c in pool if c["img_path"] not in tiny.scene_of)  # the src-less quirk
        lonely = 0
        for q in tiny.queries[(pair.name, "test")]:
            positive_key = tiny.scene_of[tiny.cands[q["pos_cand_list"][0]]["img_path"]].key
            lonely += not [k for k in keys if sum(a != b for a, b in zip(k, positive_key)) == 1]
        assert lonely <= unknown, f"{pair.name}: {lonely} queries without a distractor one attribute away"
        # A scene repeats in a pool only as several positives of one query (EDIS) or CIRR's reference.
        groups = {tuple(q["pos_cand_list"]) for q in tiny.queries[(pair.name, "test")] + tiny.queries[(pair.name, "val")]}
        for key, n in keys.items():
            if n > 1:
                holders = [c["did"] for c in pool if tiny_key(tiny, c) == key]
                assert any(set(holders) <= set(g) for g in groups), (pair.name, key)


def tiny_key(tree: Tree, cand: dict[str, Any]) -> tuple[str, ...] | None:
    scene = tree.scene_of.get(cand["img_path"])
    return scene.key if scene else None


def test_caption_of_a_scene_names_every_attribute() -> None:
    scene = sc.Scene("news", "star", "purple", "large", "right", "sepia")
    for text in sc.captions(scene) + [sc.question(scene, v) for v in range(3)] + [sc.passage(scene, v) for v in range(3)]:
        for word in ("star", "purple", "large", "right", "sepia"):
            assert word in text, (word, text)
