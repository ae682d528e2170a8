"""A mock embedder with known answers gives exactly the expected Recall values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner

from tests.evaluation.mock_retriever import VectorProcessor, VectorRetriever
from uniir_cli.app import build_app
from uniir_cli.registry import register_model

DIM = 32


class OneHotProcessor(VectorProcessor):
    """Text "q7" / "C7." -> one-hot(7): query i and candidate i are identical, all else orthogonal."""

    def process(self, text: str | None, image: Any, query: Any = None) -> dict[str, Any]:
        vector = torch.zeros(DIM)
        vector[int(re.search(r"\d+", text or "").group())] = 1.0
        return {"v": vector}


@register_model("test_onehot")
class OneHotRetriever(VectorRetriever):
    processor_class = OneHotProcessor
    dim = DIM
    scale = 3.0  # not normalised: the index must normalise

    def __init__(self, size: str = "x", pretrained: str = "") -> None:
        super().__init__(size=size, pretrained=pretrained)


def _write_tree(root: Path, positives: dict[int, int]) -> None:
    """WebQA task 1 (text -> text): queries 2:1..2:10, candidates 2:1..2:20."""
    for folder in ("query/test", "cand_pool/local", "qrels/test", "instructions"):
        (root / folder).mkdir(parents=True)
    queries = [
        {"qid": f"2:{i}", "query_txt": f"q{i}", "query_img_path": None, "query_modality": "text",
         "query_src_content": None, "pos_cand_list": [f"2:{positives[i]}"], "neg_cand_list": [], "task_id": 1}
        for i in range(1, 11)
    ]
    pool = [{"txt": f"c{j}", "img_path": None, "modality": "text", "did": f"2:{j}", "src_content": None} for j in range(1, 21)]
    (root / "query/test/mbeir_webqa_task1_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "cand_pool/local/mbeir_webqa_task1_cand_pool.jsonl").write_text("".join(json.dumps(c) + "\n" for c in pool))
    (root / "qrels/test/mbeir_webqa_task1_test_qrels.txt").write_text(
        "".join(f"2:{i} 0 2:{positives[i]} 1 1\n" for i in range(1, 11))
    )


def test_known_answers(tmp_path: Path) -> None:
    # Query i scores 3*3=9 (cosine 1) against candidate i and 0 against the rest; ties go to
    # the smaller id. So query i ranks [c_i, c1, c2, ...] without c_i repeated.
    positives = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 20, 8: 2, 9: 12, 10: 5}
    # q8 -> c2 at rank 3 (hit@5), q10 -> c5 at rank 6 (hit@10), q7 and q9 never in the top 10.
    _write_tree(tmp_path / "data", positives)
    preset = tmp_path / "mock.toml"
    preset.write_text(
        '[model]\nname = "test_onehot"\nsize = "x"\npretrained = ""\n'
        '[data]\ninstruction_mode = "none"\ntasks = ["webqa_task1"]\n'
        '[embed]\nnum_workers = 0\nprecision = "no"\n'
    )
    result = CliRunner().invoke(
        build_app(),
        ["eval", "--preset", str(preset), "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run/metrics/metrics.json").read_text())["pairs"]["local"]["webqa_task1"]
    assert (metrics["Recall@1"], metrics["Recall@5"], metrics["Recall@10"]) == (0.6, 0.7, 0.8)
    assert abs(metrics["MRR@10"] - (6 * 1 + 1 / 3 + 1 / 6) / 10) < 1e-12
    run_lines = (tmp_path / "run/retrieval/webqa_task1_test__local.run").read_text().splitlines()
    assert run_lines[:3] == [
        "2:1 Q0 2:1 1 1.000000 mbeir_webqa_task1_single_pool_test_k10 1",
        "2:1 Q0 2:2 2 0.000000 mbeir_webqa_task1_single_pool_test_k10 1",
        "2:1 Q0 2:3 3 0.000000 mbeir_webqa_task1_single_pool_test_k10 1",
    ]
    assert len(run_lines) == 10 * 10
