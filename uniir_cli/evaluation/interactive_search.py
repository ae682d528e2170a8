"""Interactive queries against a run's embedded candidates (`uniir search`, `uniir serve`).

What is expensive (the model, the candidate vectors, each pool's searcher and the pool files'
id -> record lookups) is loaded once by `RunSearch`; a query then only encodes and searches.
`uniir search` opens one for a single query, `uniir serve` keeps one for its lifetime.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from uniir_cli.data.eval_sets import candidate_set_name, global_pool_name
from uniir_cli.data.ids import unhash_dids
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.errors import RunDirError
from uniir_cli.evaluation.pipeline import Context, pool_ids
from uniir_cli.evaluation.retrieval import LocalPool, Searcher, make_searcher
from uniir_cli.evaluation.shards import ShardStore
from uniir_cli.models.encode import encode_items
from uniir_cli.ranking.knn import PAD_ID
from uniir_cli.registry import load_retriever
from uniir_cli.rundir import RunDir


def open_context(run_dir: Path, data_dir: Path | None = None) -> Context:
    """A read-only view of an existing run: its stored settings, data tree and checkpoint
    (no lock is taken and nothing is written)."""
    run = RunDir(run_dir)
    config = run.stored_config()
    layout = MBeirLayout(run.data_dir_or_recorded(data_dir))
    return Context(run, config, layout, run.default_checkpoint(None))


class RunSearch:
    """A run's model, embedded candidates and pool lookups, loaded once; `search` then only
    encodes the query and searches one pool. Queries run one at a time under `lock`, so one
    instance can serve a threaded web server; whoever else reads the context's pool files
    (their lookups share a file handle) passes the lock it holds for that."""

    def __init__(self, ctx: Context, device: str = "cpu", lock: threading.RLock | None = None) -> None:
        self.ctx = ctx
        self.device = device
        run = ctx.run
        # Checked before the model loads: loading may try the Hub, and the error says what to run.
        self.candidates = ShardStore(run.embeddings_dir(candidate_set_name(ctx.split))).blocks()
        self.pools = ("global", *(p for p in run.indexed_pools() if p != global_pool_name(ctx.split)))
        ctx.candidate_pools()  # scans the pool files now rather than at the first query
        self.model = load_retriever(ctx.config, ctx.checkpoint).to(device).eval()
        self._searchers: dict[str, Searcher] = {}
        self._lock = lock or threading.RLock()

    @classmethod
    def open(cls, run_dir: Path, data_dir: Path | None = None, device: str = "cpu") -> RunSearch:
        return cls(open_context(run_dir, data_dir), device)

    def searcher(self, pool: str) -> Searcher:
        """The search function of `pool` ('global' or a local pool name), made on first use."""
        if pool not in self._searchers:
            run, split = self.ctx.run, self.ctx.split
            if pool == "global":
                blocks: Any = self.candidates
                saved = run.faiss_index_file(global_pool_name(split))
            elif pool in self.pools:
                blocks = LocalPool(self.candidates, pool_ids(run, pool), f"pool {pool}")
                saved = run.faiss_index_file(pool)
            else:
                raise RunDirError(f"pool {pool!r} is not indexed in {run.root}; use 'global' or a pool listed under {run.root / 'index'}")
            self._searchers[pool] = make_searcher(blocks, self.ctx.config, self.device, saved)
        return self._searchers[pool]

    def load_all(self) -> None:
        """Make every pool's searcher now (a server pays this at start-up, not at a query)."""
        with self._lock:
            for pool in self.pools:
                self.searcher(pool)

    def search(self, text: str | None, image: Any, instruction: str | None, pool: str, k: int) -> list[dict[str, Any]]:
        """Top-k candidate records (with rank and cosine score) for one query; `image` is a
        path or a PIL image."""
        with self._lock:
            search = self.searcher(pool)
            vector = encode_items(self.model, [(text, image)], instruction=instruction, queries=True, device=self.device)
            scores, ids = search(vector, k)
            valid = ids[0] != PAD_ID
            dids = unhash_dids(ids[0][valid])
            hits = []
            for rank, (did, score) in enumerate(zip(dids, scores[0][valid].tolist()), start=1):
                record = self.ctx.candidate_record(did)
                hits.append({"rank": rank, "did": did, "score": float(score), "modality": record.modality,
                             "txt": record.txt, "img_path": record.img_path})
        return hits


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
    return RunSearch.open(run_dir, data_dir).search(text, image, instruction, pool, k)
