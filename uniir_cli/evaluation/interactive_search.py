"""One interactive query against a run's embedded candidates (`uniir search`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from uniir_cli.data.eval_sets import candidate_set_name
from uniir_cli.data.ids import unhash_dids
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.errors import RunDirError
from uniir_cli.evaluation.pipeline import Context, pool_ids
from uniir_cli.evaluation.retrieval import LocalPool
from uniir_cli.evaluation.shards import ShardStore
from uniir_cli.models.encode import encode_items
from uniir_cli.ranking.knn import PAD_ID, PoolBlock, exact_kernel, exact_search
from uniir_cli.registry import load_retriever
from uniir_cli.rundir import RunDir


def search_one(
    run_dir: Path,
    text: str | None,
    image: Path | None,
    instruction: str | None,
    pool: str,
    k: int,
    data_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Top-k candidate records (with rank and cosine score) for one query."""
    run = RunDir(run_dir)
    config = run.stored_config()
    data_dir = run.data_dir_or_recorded(data_dir)
    candidates: Iterable[PoolBlock] = ShardStore(run.embeddings_dir(candidate_set_name(config.data.split))).blocks()
    checkpoint = run.default_checkpoint(None)
    model = load_retriever(config, checkpoint).eval()  # after the checks: loading may try the Hub
    vector = encode_items(model, [(text, image)], instruction=instruction, queries=True)

    if pool != "global":
        if not run.pool_ids_file(pool).is_file():
            raise RunDirError(f"pool {pool!r} is not indexed in {run.root}; use 'global' or a pool listed under {run.root / 'index'}")
        candidates = LocalPool(candidates, pool_ids(run, pool), f"pool {pool}")
    scores, ids = exact_search(candidates, vector, k, kernel=exact_kernel(config.index.backend))
    valid = ids[0] != PAD_ID
    dids = unhash_dids(ids[0][valid])
    ctx = Context(run, config, MBeirLayout(data_dir), checkpoint)
    hits = []
    for rank, (did, score) in enumerate(zip(dids, scores[0][valid].tolist()), start=1):
        record = ctx.candidate_record(did)
        hits.append({"rank": rank, "did": did, "score": float(score), "modality": record.modality,
                     "txt": record.txt, "img_path": record.img_path})
    return hits
