"""UniRAG complements with a mock embedder and constructed candidate embeddings: the expected
complement of every retrieved text/image candidate is known and asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.evaluation.mock_retriever import VectorProcessor, VectorRetriever
from uniir_cli.config import Config
from uniir_cli.data.benchmark import EVAL_PAIR_BY_NAME
from uniir_cli.data.ids import hash_did, hash_qids
from uniir_cli.data.instructions import PromptPicker, read_instructions
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import CandidateRecord
from uniir_cli.evaluation.unirag import write_rag
from uniir_cli.ranking.knn import PAD_ID, PoolBlock

DIM = 16
PAIR = EVAL_PAIR_BY_NAME["oven_task6"]  # (image, text) -> text
# What the complement queries must be: each retrieved single-modality candidate with
# MSCOCO's instruction for its modality -> the other (the OVEN rows below differ).
QUERY_AXIS = {"Coco find the image. Eiffel tower.": 0, "Coco find the caption.": 1, "Coco find the image. Big Ben.": 2}


class ComplementProcessor(VectorProcessor):
    """Complement query -> one-hot of its axis; anything else (another instruction, no
    image where one is due) is an error. It must run in a DataLoader worker: the test
    configures embed.num_workers = 1, so this proves the embed settings are used."""

    def process(self, text: str | None, image: Any, query: Any = None) -> dict[str, Any]:
        if torch.utils.data.get_worker_info() is None:
            raise AssertionError("complements were not embedded in the configured DataLoader workers")
        axis = QUERY_AXIS[text or ""]
        if axis == 1 and (image is None or np.asarray(image)[..., 0].mean() < 200):
            raise AssertionError("the image complement query lost its (red) image")
        vector = torch.zeros(DIM)
        vector[axis] = 1.0
        return {"v": vector}


class ComplementRetriever(VectorRetriever):
    processor_class = ComplementProcessor
    dim = DIM


def _record(n: int, modality: str, txt: str | None = None, img: str | None = None) -> CandidateRecord:
    return CandidateRecord(f"5:{n}", txt, img, modality, None, False)


def _vector(axis: int, score: float, spare: int) -> np.ndarray:
    """Cosine `score` with the query of `axis`, the rest on a spare axis no query uses."""
    v = np.zeros(DIM, dtype=np.float32)
    v[axis], v[spare] = score, np.sqrt(1 - score**2)
    return v


def _pool() -> list[tuple[CandidateRecord, np.ndarray]]:
    t1 = _record(1, "text", "Eiffel tower")
    i1 = _record(2, "image", img="images/i1.jpg")
    p1 = _record(3, "image,text", "Tower at night", "images/p1.jpg")
    t2 = _record(4, "text", "Big Ben")
    pool = [
        (t1, _vector(0, 1.0, 3)),
        (i1, _vector(1, 1.0, 3)),
        (p1, _vector(3, 1.0, 4)),
        (t2, _vector(2, 1.0, 3)),
        # complements of t1 (wants an image): query 1's own image, an image,text, then two images
        (_record(10, "image", img="images/query.jpg"), _vector(0, 0.95, 4)),
        (_record(11, "image,text", "Paris", "images/x.jpg"), _vector(0, 0.9, 4)),
        (_record(12, "image", img="images/good.jpg"), _vector(0, 0.85, 4)),
        (_record(13, "image", img="images/other.jpg"), _vector(0, 0.8, 4)),
        # complements of i1 (wants a text): query 1's own text first
        (_record(20, "text", "Which tower is this?"), _vector(1, 0.95, 5)),
        (_record(21, "text", "A photo of Paris"), _vector(1, 0.9, 5)),
        (_record(22, "text", "Another caption"), _vector(1, 0.85, 5)),
    ]
    # t2's top 10 has no image (itself and 9 texts); the first image comes 11th
    pool += [(_record(30 + j, "text", f"clock {j}"), _vector(2, 0.99 - 0.01 * j, 6)) for j in range(9)]
    pool.append((_record(50, "image", img="images/late.jpg"), _vector(2, 0.5, 6)))
    return pool


def _write_data(root: Path) -> None:
    (root / "query/test").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "instructions").mkdir()
    Image.new("RGB", (40, 30), (250, 10, 10)).save(root / "images/i1.jpg", "JPEG")
    queries = [
        {"qid": "5:1", "query_txt": "Which tower is this?", "query_img_path": "images/query.jpg",
         "query_modality": "image,text", "query_src_content": None, "pos_cand_list": ["5:1"], "neg_cand_list": [], "task_id": 6},
        {"qid": "5:2", "query_txt": "A photo of Paris", "query_img_path": "images/good.jpg",
         "query_modality": "image,text", "query_src_content": None, "pos_cand_list": ["5:1"], "neg_cand_list": [], "task_id": 6},
    ]
    (root / PAIR.query_file("test")).write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = [
        ("text", "image", "MSCOCO", 9, "Coco find the image"), ("image", "text", "MSCOCO", 9, "Coco find the caption"),
        ("text", "image", "OVEN", 5, "Oven find the image"), ("image", "text", "OVEN", 5, "Oven find the caption"),
    ]
    (root / "instructions/query_instructions.tsv").write_text(
        "qm\tcm\tdataset\tdataset_id\tprompt_1\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows)
    )


def test_complements_are_the_first_wanted_modality_hit_differing_from_the_query(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_data(root)
    pool = _pool()
    records = {r.did: r for r, _ in pool}
    order = np.argsort([hash_did(r.did) for r, _ in pool])  # the union is sorted by id, as embedded
    vectors = np.stack([pool[i][1] for i in order]).astype(np.float16)
    ids = np.array([hash_did(pool[i][0].did) for i in order], dtype=np.int64)
    blocks = [PoolBlock(vectors[:9], ids[:9]), PoolBlock(vectors[9:], ids[9:])]
    # both queries retrieved [t1, i1, p1, t2] from the global pool
    retrieved = [hash_did(d) for d in ("5:1", "5:2", "5:3", "5:4")] + [PAD_ID] * (PAIR.depth - 4)
    results = tmp_path / "results.npz"
    np.savez(results, qids=hash_qids(["5:1", "5:2"]), ids=np.array([retrieved, retrieved]),
             scores=np.zeros((2, PAIR.depth), dtype=np.float32))
    config = Config()
    config.embed.num_workers, config.embed.batch_size = 1, 2
    write_rag(
        lambda pair: tmp_path / "rag.jsonl", lambda pair: results, [PAIR], "test", MBeirLayout(root, check=False),
        ComplementRetriever(), PromptPicker(read_instructions(root / "instructions/query_instructions.tsv"), "first"),
        blocks, records.__getitem__, config, torch.device("cpu"),
    )
    lines = [json.loads(line) for line in (tmp_path / "rag.jsonl").read_text().splitlines()]
    assert [line["query"]["qid"] for line in lines] == ["5:1", "5:2"]
    assert [c["did"] for c in lines[0]["candidates"]] == ["5:1", "5:2", "5:3", "5:4"]
    complements = [[c and c["did"] for c in line["complement_candidates"]] for line in lines]
    # query 1: t1 -> skip itself (text), its own image 5:10, the image,text 5:11 -> 5:12;
    #          i1 -> skip itself, its own text 5:20 -> 5:21; p1 has none; t2 -> no image in top 10
    # query 2 has other image and text, so 5:10 and 5:20 differ from it and are taken
    assert complements == [["5:12", "5:21", None], ["5:10", "5:20", None]]
    assert lines[0]["complement_candidates"][0] == records["5:12"].to_json()
