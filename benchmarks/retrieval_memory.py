"""Peak memory of `uniir retrieve --pool both` at M-BEIR size (issue #4 goal: <= embeddings + 25%).

    python benchmarks/retrieval_memory.py                # 5.6M x 768 pool (8.6 GB of shards), 190K queries
    python benchmarks/retrieval_memory.py --scale 0.02   # 2% of every count: a quick check

Writes a run directory the way `uniir embed` and `uniir index` leave it: the union pool as
fp16 embedding shards (the 16 local pools with the test-set sizes of spec 11.4, disjoint,
sorted by hashed id), the 16 query sets (paper Table 1 sizes, 189,700 queries x 768) and each
local pool's ids. Then a fresh process runs the real `uniir_cli.evaluation.retrieval.retrieve` over
it on the CPU (`--pool both` by default: global pass, then the 16 local pools) and reports
its peak RSS against the size of the fp16 pool, also net of the process's RSS after its
imports (torch, faiss: `baseline_rss_mib`).

What is measured: every array of the real path is materialised at full size - the
memory-mapped pool (each chunk is read and normalised), the stacked fp16 queries, each
normalised query tile, the [Q, depth] results, the local pools gathered block by block,
the result files. Only the compute is bounded, as 190K x 5.6M x 768 would take hours on two
cores: the tile kernel scores the first `--rows-per-tile` rows of each query tile (16,384
rows with faiss's kernel, 1,024 with torch's) and returns empty results (-inf, no id) of
the real shape for the other rows; so the run files hold those rows only. The kernel's
own scratch memory (faiss: a few MB; torch: a [1024, 65536] fp32 score tile) is that of
the scored rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mib, report  # noqa: E402
from scoring import QUERIES  # noqa: E402  (test queries per pair, paper Table 1)

from uniir_cli.data.benchmark import EVAL_PAIRS  # noqa: E402
from uniir_cli.data.ids import hash_dids, hash_qids  # noqa: E402

# Local pool sizes per pair (spec 11.4), in EVAL_PAIRS order: 5.6M in all.
POOLS = [542_246, 5_000, 201_824, 544_457, 1_047_067, 403_000, 537_568, 24_809,
         61_700, 40_038, 676_667, 611_651, 74_400, 21_551, 335_135, 481_782]

RETRIEVE = """
import json, sys
sys.path.insert(0, {bench!r})
import numpy as np
from common import peak_rss_mib
from uniir_cli.ranking import knn
from uniir_cli.config import Config
from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.evaluation.pipeline import pool_ids
from uniir_cli.evaluation.retrieval import retrieve
from uniir_cli.rundir import RunDir

ROWS = {rows}

def bounded(kernel):
    # score the tile's first ROWS queries; the rest get empty results of the real shape
    def tile(queries, chunk, ids, k):
        scores, found = kernel(queries[:ROWS], chunk, ids, k)
        out_scores = np.full((len(queries), scores.shape[1]), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), found.shape[1]), knn.PAD_ID, dtype=np.int64)
        out_scores[:ROWS], out_ids[:ROWS] = scores, found
        return out_scores, out_ids
    return tile

knn._tile_topk_faiss = bounded(knn._tile_topk_faiss)
knn._tile_topk_torch = bounded(knn._tile_topk_torch)
import torch  # noqa: F401  (imported by the search anyway: part of the baseline)
try:
    import faiss  # noqa: F401
except ImportError:
    pass
baseline = peak_rss_mib()
config = Config()
config.retrieve.pool = {pool!r}
config.index.backend = {backend!r}
run = RunDir({run!r})
start = __import__("time").perf_counter()
retrieve(run, config, list(EVAL_PAIRS), "test", lambda pair: pool_ids(run, pair.pool_name("test")))
print(json.dumps({{"retrieve_s": __import__("time").perf_counter() - start, "peak_rss_mib": peak_rss_mib(),
                  "baseline_rss_mib": baseline}}))
"""


def write_set(directory: Path, name: str, kind: str, ids: np.ndarray, dim: int, shard: int, rng: np.random.Generator) -> None:
    """An embedded set as `uniir embed` writes it: fp16 shards + ids + done markers."""
    from uniir_cli.evaluation.shards import ShardPlan, ShardStore

    store = ShardStore(directory / name)
    plan = ShardPlan(name, kind, len(ids), shard, "bench")
    store.write_plan(plan)
    for number in range(plan.num_shards):
        rows = plan.shard_range(number)
        vectors = rng.standard_normal((len(rows), dim), dtype=np.float32).astype(np.float16)
        store.write_shard(number, vectors, ids[rows.start : rows.stop], "bench")


def numbered(counts: list[int], dataset_ids: list[int]) -> list[list[str]]:
    """Ids "d:n" per set, numbered on within each dataset so that sets never share one."""
    used: dict[int, int] = {}
    out = []
    for count, dataset in zip(counts, dataset_ids):
        start = used.get(dataset, 0) + 1
        out.append([f"{dataset}:{n}" for n in range(start, start + count)])
        used[dataset] = start + count - 1
    return out


def build_run(root: Path, scale: float, dim: int, shard: int) -> dict[str, int]:
    """The run directory `uniir retrieve` reads; returns its sizes."""
    from uniir_cli.rundir import RunDir

    run = RunDir(root)
    rng = np.random.default_rng(0)
    datasets = [p.dataset.id for p in EVAL_PAIRS]
    pools = numbered([max(1, round(n * scale)) for n in POOLS], datasets)
    queries = numbered([max(1, round(n * scale)) for n in QUERIES], datasets)
    for pair, dids in zip(EVAL_PAIRS, pools):
        directory = run.index_dir(pair.pool_name("test"))
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "ids.npy", hash_dids(dids))
    union = np.sort(np.concatenate([hash_dids(d) for d in pools]))
    write_set(root / "embeddings", "candidates_test", "candidates", union, dim, shard, rng)
    for pair, qids in zip(EVAL_PAIRS, queries):
        write_set(root / "embeddings", f"{pair.name}_test", "queries", hash_qids(qids), dim, shard, rng)
    return {"pool": len(union), "queries": sum(len(q) for q in queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of every pool and query count")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--shard", type=int, default=65536, help="rows per embedding shard (embed.shard_size)")
    parser.add_argument("--pool", default="both", choices=("local", "global", "both"))
    parser.add_argument("--backend", default="auto", choices=("auto", "torch"), help="index.backend of the exact search")
    parser.add_argument("--rows-per-tile", type=int, default=64, help="query rows scored per tile (compute bound)")
    parser.add_argument("--dir", default=".", help="where the temporary run directory goes (8.6 GB at full size)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "run"
        start = time.perf_counter()
        sizes = build_run(root, args.scale, args.dim, args.shard)
        write_s = time.perf_counter() - start
        code = RETRIEVE.format(bench=str(Path(__file__).resolve().parent), rows=args.rows_per_tile, pool=args.pool,
                               backend=args.backend, run=str(root))
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        measured = json.loads(out.strip().splitlines()[-1])
    pool_mib = sizes["pool"] * args.dim * 2 / 2**20
    queries_mib = sizes["queries"] * args.dim * 2 / 2**20
    results = {
        **sizes, "dim": args.dim, "pool_setting": args.pool, "backend": args.backend, "rows_per_tile": args.rows_per_tile,
        "write_run_s": write_s, "pool_embeddings_mib": pool_mib, "query_embeddings_mib": queries_mib, **measured,
        "peak_rss_over_pool_embeddings": measured["peak_rss_mib"] / pool_mib,
        "peak_rss_over_all_embeddings": measured["peak_rss_mib"] / (pool_mib + queries_mib),
        "peak_rss_above_baseline_over_pool": (measured["peak_rss_mib"] - measured["baseline_rss_mib"]) / pool_mib,
        "writer_peak_rss_mib": peak_rss_mib(),
    }
    report("retrieval_memory", results, args.json)


if __name__ == "__main__":
    main()
