"""Peak memory of global retrieval over a 5.6M x 768 fp16 pool (issue #4 goal: <= embeddings + 25%).

    python benchmarks/retrieval_memory.py                  # 5.6M x 768: writes 8.6 GB of shards
    python benchmarks/retrieval_memory.py --pool 1000000   # quicker

Writes the pool as uniir embedding shards (fp16 + ids) into a temporary folder, then, in a
fresh process, memory-maps them like `uniir retrieve` does and searches Q queries exactly;
reports that process's peak RSS against the size of the fp16 embeddings.
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

SEARCH = """
import json, sys, time
sys.path.insert(0, {bench!r})
from common import peak_rss_mib
import numpy as np
from uniir_cli.indexing import exact_search
from uniir_cli.shards import ShardStore
start = time.perf_counter()
blocks = ShardStore({store!r}).blocks()
queries = np.random.default_rng(1).standard_normal(({queries}, {dim}), dtype=np.float32)
scores, ids = exact_search(blocks, queries, 10)
print(json.dumps({{"search_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=5_600_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--shard", type=int, default=65536)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    from uniir_cli.shards import ShardPlan, ShardStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        store = ShardStore(Path(tmp) / "candidates_test")
        plan = ShardPlan("candidates_test", "candidates", args.pool, args.shard, "bench")
        store.write_plan(plan)
        start = time.perf_counter()
        for shard in range(plan.num_shards):
            rows = plan.shard_range(shard)
            vectors = rng.standard_normal((len(rows), args.dim), dtype=np.float32).astype(np.float16)
            store.write_shard(shard, vectors, np.arange(rows.start, rows.stop, dtype=np.int64), "bench")
        write_s = time.perf_counter() - start
        embeddings_mib = args.pool * args.dim * 2 / 2**20
        code = SEARCH.format(bench=str(Path(__file__).resolve().parent), store=str(store.directory), queries=args.queries, dim=args.dim)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        searched = json.loads(out.strip().splitlines()[-1])
    results = {
        "pool": args.pool, "dim": args.dim, "queries": args.queries, "write_shards_s": write_s,
        "embeddings_mib": embeddings_mib, **searched,
        "peak_rss_over_embeddings": searched["peak_rss_mib"] / embeddings_mib,
        "writer_peak_rss_mib": peak_rss_mib(),
    }
    report("retrieval_memory", results, args.json)


if __name__ == "__main__":
    main()
