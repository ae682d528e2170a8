"""The text files of the synthetic tree: query, pool and qrels files of every split, the
up-sampled union train file, the union pools and the instructions tsv, from the records
that `builder.Builder` made.

The instructions are 4 per pair, in this project's own wording (keyed by `EvalPair.name`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from uniir_cli.data import benchmark as bm
from uniir_cli.data.benchmark import DATASETS, EVAL_PAIRS
from uniir_cli.data.synthetic.builder import Builder
from uniir_cli.data.synthetic.records import ABSENT, Cand, Query, id_key, modality

# Up-sampling of the small datasets in the union train file (upstream: WebQA, EDIS, NIGHTS,
# FashionIQ, CIRR are sampled with replacement up to a fixed target); here as a factor.
UPSAMPLE_FACTORS = {"webqa": 3.0, "edis": 2.0, "nights": 3.0, "fashioniq": 3.0, "cirr": 2.0}


INSTRUCTIONS: dict[str, tuple[str, str, str, str]] = {
    "visualnews_task0": (
        "Retrieve the news photograph that this caption describes.",
        "Find the press photo that goes with this news caption.",
        "Which news image matches the caption below?",
        "Search the news archive for the picture described here.",
    ),
    "mscoco_task0": (
        "Find the everyday photo that this caption describes.",
        "Retrieve a common-scene picture matching the text.",
        "Which everyday image fits this description?",
        "Look up the ordinary photo this caption talks about.",
    ),
    "fashion200k_task0": (
        "Find the product photo of the fashion item described.",
        "Retrieve the clothing image that matches this product text.",
        "Which fashion picture fits the following description?",
        "Show me the garment image for this catalogue entry.",
    ),
    "webqa_task1": (
        "Find an encyclopedia passage that answers this question.",
        "Retrieve the wiki paragraph that contains the answer.",
        "Which reference text answers the question below?",
        "Look up a knowledge-base passage for this question.",
    ),
    "edis_task2": (
        "Find the news photo and headline that match this caption.",
        "Retrieve an illustrated news item for this caption.",
        "Which news image with its headline fits this text?",
        "Search for a captioned press photo described by this sentence.",
    ),
    "webqa_task2": (
        "Find a wiki picture with its caption that answers this question.",
        "Retrieve an encyclopedia image and text that answer the question.",
        "Which illustrated wiki entry answers the question below?",
        "Look up a captioned reference image for this question.",
    ),
    "visualnews_task3": (
        "Find the news caption written for this photo.",
        "Retrieve the caption a newspaper would print under this picture.",
        "Which news caption belongs to this image?",
        "Look up the press caption of the photo shown.",
    ),
    "mscoco_task3": (
        "Find a caption that describes this everyday photo.",
        "Retrieve a sentence describing this common scene.",
        "Which description fits this ordinary picture?",
        "Look up a plain caption for the image shown.",
    ),
    "fashion200k_task3": (
        "Find the product description of the item pictured.",
        "Retrieve the catalogue text for this fashion photo.",
        "Which clothing description matches this image?",
        "Look up the shop listing text for the garment shown.",
    ),
    "nights_task4": (
        "Find an image that looks nearly identical to this one.",
        "Retrieve the most visually similar everyday picture.",
        "Which photo is a near copy of the image shown?",
        "Look up a picture that is almost the same as this one.",
    ),
    "oven_task6": (
        "Find the encyclopedia article about the entity in this picture.",
        "Retrieve a wiki text that answers this question about the image.",
        "Which reference passage names what is shown here?",
        "Look up the wiki entry that identifies the pictured object.",
    ),
    "infoseek_task6": (
        "Find a wiki passage that answers this question about the pictured entity.",
        "Retrieve the encyclopedia text holding the answer for this image and question.",
        "Which article answers what is asked about this picture?",
        "Look up a reference paragraph answering my question on the image.",
    ),
    "fashioniq_task7": (
        "Find the fashion item that looks like this one after the requested change.",
        "Retrieve the product photo matching this item with the described edits.",
        "Which clothing image shows this piece altered as written?",
        "Look up a garment like the pictured one but with these changes.",
    ),
    "cirr_task7": (
        "Find the everyday image that matches this photo with the described edit.",
        "Retrieve a picture like this one, changed as the text says.",
        "Which photo shows this scene after the requested modification?",
        "Look up an image similar to the given one but with these changes.",
    ),
    "oven_task8": (
        "Find a wiki image with text that identifies the entity in this picture.",
        "Retrieve an encyclopedia picture and passage for what this image shows.",
        "Which illustrated wiki entry answers this question about the image?",
        "Look up a captioned reference image naming the pictured object.",
    ),
    "infoseek_task8": (
        "Find a wiki image with text that answers my question about this picture.",
        "Retrieve an illustrated encyclopedia entry holding the answer for this image.",
        "Which wiki picture and passage answer what is asked about the image?",
        "Look up a captioned reference entry answering the question on this image.",
    ),
}


def instructions_tsv() -> str:
    """`instructions/query_instructions.tsv`: header, then one row per pair in upstream order."""
    rows = ["query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\tprompt_3\tprompt_4"]
    for pair in EVAL_PAIRS:
        query_modality, cand_modality = pair.modalities
        cells = [query_modality, cand_modality, pair.dataset.name, str(pair.dataset.id), *INSTRUCTIONS[pair.name]]
        rows.append("\t".join(cells))
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------
# Serialisation


def _query_record(q: Query) -> dict[str, Any]:
    return {
        "qid": q.qid,
        "query_txt": q.txt,
        "query_img_path": q.img.path if q.img else None,
        "query_modality": modality(q.txt, q.img),
        "query_src_content": q.src,
        "pos_cand_list": [c.did for c in q.pos],
        "neg_cand_list": [c.did for c in q.neg],
        "task_id": q.task_id,
    }


def _cand_record(c: Cand) -> dict[str, Any]:
    record = {"txt": c.txt, "img_path": c.img.path if c.img else None, "modality": c.modality, "did": c.did}
    if c.src is not ABSENT:
        record["src_content"] = c.src
    return record


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _qrels(queries: Iterable[Query]) -> str:
    return "".join(f"{q.qid} 0 {c.did} 1 {q.task_id}\n" for q in queries for c in q.pos)


def _union_pool(pools: Iterable[list[Cand]], keep: set[str] | None = None) -> list[Cand]:
    """Concatenate pools, drop repeated dids (first wins), optionally keep only `keep`, sort by id."""
    seen: dict[str, Cand] = {}
    for pool in pools:
        for cand in pool:
            if cand.did not in seen and (keep is None or cand.did in keep):
                seen[cand.did] = cand
    return sorted(seen.values(), key=lambda c: id_key(c.did))


def text_files(b: Builder) -> dict[str, str]:
    """Every text file of the tree, by path relative to the root."""
    files: dict[str, str] = {}
    by_qid = lambda q: id_key(q.qid)  # noqa: E731
    for split in ("val", "test"):
        for pair in EVAL_PAIRS:
            queries = b.queries[(pair.name, split)]
            files[pair.query_file(split)] = _jsonl(map(_query_record, queries))
            pool = sorted(b.pools[(pair.name, split)], key=lambda c: id_key(c.did))
            files[pair.pool_file(split)] = _jsonl(map(_cand_record, pool))
            files[pair.qrels_file(split)] = _qrels(queries)
    for d in DATASETS:
        train = sorted(b.queries[(d.slug, "train")], key=by_qid)
        files[bm.train_query_file(d)] = _jsonl(map(_query_record, train))
        files[bm.train_qrels_file(d)] = _qrels(train)

    rng = b.rng("union_train")
    union: list[Query] = []
    for d in DATASETS:
        train = sorted(b.queries[(d.slug, "train")], key=by_qid)
        extra = round(len(train) * (UPSAMPLE_FACTORS.get(d.slug, 1.0) - 1.0))
        union += train + [rng.choice(train) for _ in range(extra)]
    rng.shuffle(union)
    files[bm.UNION_TRAIN_QUERIES] = _jsonl(map(_query_record, union))
    union_val = sorted((q for p in EVAL_PAIRS for q in b.queries[(p.name, "val")]), key=by_qid)
    files[bm.UNION_VAL_QUERIES] = _jsonl(map(_query_record, union_val))

    files[bm.union_pool_file("train")] = _jsonl(map(_cand_record, _union_pool(b.train_pool[d.slug] for d in DATASETS)))
    referenced = {c.did for q in union_val for c in (*q.pos, *q.neg)}
    val_pools = (b.pools[(p.name, "val")] for p in EVAL_PAIRS)
    files[bm.union_pool_file("val")] = _jsonl(map(_cand_record, _union_pool(val_pools, referenced)))
    files[bm.union_pool_file("test")] = _jsonl(map(_cand_record, _union_pool(b.pools[(p.name, "test")] for p in EVAL_PAIRS)))
    files[bm.INSTRUCTIONS_FILE] = instructions_tsv()
    return dict(sorted(files.items()))
