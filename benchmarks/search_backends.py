"""Exact search of Q queries over an N x D pool on this machine: uniir's backend vs faiss vs numpy.

    python benchmarks/search_backends.py                     # 2,000 x 1M x 768 (issue #4)
    python benchmarks/search_backends.py --pool 200000       # quicker

All three return the exact top-k of cosine similarity from the same fp16 pool: uniir's
`exact_search` (chunked fp32 matmul from the fp16 arrays, ties by id), faiss `IndexFlatIP`
over the normalised fp32 copy (as upstream; index build timed separately), and numpy
(one fp32 matmul per query batch + argpartition). The fraction of identical top-k ids is
reported: random Gaussian data has many near-ties that summation order decides.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.indexing import PoolBlock, exact_search, normalize_rows  # noqa: E402


def numpy_search(pool32: np.ndarray, queries: np.ndarray, k: int, batch: int = 256) -> np.ndarray:
    q = normalize_rows(queries)
    out = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), batch):
        scores = q[start : start + batch] @ pool32.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
        out[start : start + batch] = np.take_along_axis(part, order, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (faiss then runs on all GPUs if faiss-gpu is installed)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((args.pool, args.dim), dtype=np.float32).astype(np.float16)
    ids = np.arange(args.pool, dtype=np.int64)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    results: dict = {"pool": args.pool, "queries": args.queries, "dim": args.dim, "k": args.k, "device": args.device}

    start = time.perf_counter()
    _, uniir_ids = exact_search([PoolBlock(pool, ids)], queries, args.k, device=args.device)
    results["uniir_exact_s"] = time.perf_counter() - start

    start = time.perf_counter()
    pool32 = normalize_rows(pool)
    results["normalise_fp32_copy_s"] = time.perf_counter() - start
    start = time.perf_counter()
    numpy_ids = numpy_search(pool32, queries, args.k)
    results["numpy_s"] = time.perf_counter() - start
    results["numpy_same_ids_fraction"] = float((numpy_ids == uniir_ids).mean())

    try:
        import faiss
    except ImportError:
        results["faiss"] = "not installed"
    else:
        start = time.perf_counter()
        index = faiss.IndexFlatIP(args.dim)
        if args.device == "cuda" and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True
            index = faiss.index_cpu_to_all_gpus(index, co=options)
        index.add(pool32)
        results["faiss_build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        _, faiss_ids = index.search(normalize_rows(queries), args.k)
        results["faiss_search_s"] = time.perf_counter() - start
        results["faiss_same_ids_fraction"] = float((faiss_ids == uniir_ids).mean())
        results["uniir_vs_faiss_search"] = results["faiss_search_s"] / results["uniir_exact_s"]
    results["uniir_vs_numpy"] = results["numpy_s"] / results["uniir_exact_s"]
    report("search_backends", results, args.json)


if __name__ == "__main__":
    main()
