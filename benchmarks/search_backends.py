"""Exact search of Q queries over an N x D pool on this machine: uniir's backend vs faiss vs numpy.

    python benchmarks/search_backends.py                     # 2,000 x 1M x 768 on the CPU (issue #4)
    python benchmarks/search_backends.py --pool 200000       # quicker
    python benchmarks/search_backends.py --device cuda --pool 5600000 --queries 10000 \\
        --precisions no,fp16,bf16 --numpy-pool 200000        # GPU: torch (3 precisions) vs faiss-gpu
    python benchmarks/search_backends.py --device cuda --dry-run   # that code path, tiny, on the CPU

All return the exact top-k of cosine similarity from the same fp16 pool: uniir's
`exact_search` (chunked matmul from the fp16 arrays, ties by id; faiss kNN tiles on the
CPU, torch on a GPU, once per `--precisions` entry), faiss `IndexFlatIP` over the
normalised fp32 copy (as upstream; sharded over all GPUs with faiss-gpu; build timed
separately), and numpy (one fp32 matmul per query batch + argpartition, CPU). numpy runs on
the first `--numpy-pool` rows only (default: all) and its ratio compares it with uniir on
those same rows: at 5.6M the numpy baseline alone would take many minutes. The fraction of
identical top-k ids is reported: random Gaussian data has many near-ties that summation
order (or a lower precision) decides.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.ranking.knn import PoolBlock, exact_search, normalize_rows, to_gpus  # noqa: E402

DRY_RUN = {"pool": 20_000, "queries": 200, "numpy_pool": 5_000}


def numpy_search(pool32: np.ndarray, queries: np.ndarray, k: int, batch: int = 256) -> np.ndarray:
    q = normalize_rows(queries)
    out = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), batch):
        scores = q[start : start + batch] @ pool32.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
        out[start : start + batch] = np.take_along_axis(part, order, 1)
    return out


def random_pool(rows: int, dim: int, device: str) -> np.ndarray:
    """Gaussian fp16 rows, made on the GPU when there is one (numpy needs ~40 s for 5.6M x 768)."""
    out = np.empty((rows, dim), dtype=np.float16)
    step = 1 << 20
    if device.startswith("cuda"):
        import torch

        generator = torch.Generator(device=device).manual_seed(0)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            out[start : start + n] = torch.randn(n, dim, device=device, generator=generator).half().cpu().numpy()
        return out
    rng = np.random.default_rng(0)
    for start in range(0, rows, step):
        n = min(step, rows - start)
        out[start : start + n] = rng.standard_normal((n, dim), dtype=np.float32)
    return out


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def faiss_skipped(device: str) -> str:
    """Why faiss is left out here, or "" when it runs: on a GPU run, a faiss without GPUs
    would search 5.6M x 10K on the CPU for minutes."""
    try:
        import faiss
    except ImportError:
        return "not installed"
    if device.startswith("cuda") and not (hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0):
        return "skipped: this faiss sees no GPU (faiss-cpu)"
    return ""


def faiss_flat(pool32: np.ndarray, queries: np.ndarray, k: int, device: str, results: dict[str, Any]) -> np.ndarray:
    """faiss `IndexFlatIP` top-k ids (upstream's exact index; sharded over all GPUs on a GPU
    run); build and search times go into `results`."""
    import faiss

    start = time.perf_counter()
    index = faiss.IndexFlatIP(pool32.shape[1])
    if device.startswith("cuda"):
        index = to_gpus(index)  # sharded over all GPUs when faiss-gpu sees them
    results["faiss_index"] = type(index).__name__
    index.add(pool32)
    results["faiss_build_s"] = time.perf_counter() - start
    (_, ids), results["faiss_search_s"] = timed(lambda: index.search(normalize_rows(queries), k))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (faiss then runs on all GPUs if faiss-gpu is installed)")
    parser.add_argument("--precisions", default="no", help="uniir's torch matmul precisions to time on a GPU: no (fp32), fp16, bf16")
    parser.add_argument("--numpy-pool", type=int, default=0, help="numpy baseline over this many pool rows (0: all)")
    parser.add_argument("--dry-run", action="store_true", help=f"the same code on the CPU at a tiny size {DRY_RUN}")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.pool, args.queries = "cpu", min(args.pool, DRY_RUN["pool"]), min(args.queries, DRY_RUN["queries"])
        args.numpy_pool = min(args.numpy_pool or DRY_RUN["numpy_pool"], args.pool)
    numpy_rows = min(args.numpy_pool or args.pool, args.pool)
    precisions = [p for p in args.precisions.split(",") if p]
    results: dict[str, Any] = {"pool": args.pool, "queries": args.queries, "dim": args.dim, "k": args.k,
                               "device": args.device, "dry_run": args.dry_run}
    pool, results["generate_s"] = timed(lambda: random_pool(args.pool, args.dim, args.device))
    ids = np.arange(args.pool, dtype=np.int64)
    queries = np.random.default_rng(1).standard_normal((args.queries, args.dim), dtype=np.float32)

    uniir_ids: dict[str, np.ndarray] = {}
    for precision in precisions:  # warm-up: imports, CUDA context, kernels
        exact_search([PoolBlock(pool[:1000], ids[:1000])], queries[:8], args.k, device=args.device, precision=precision)
    for precision in precisions:
        (_, uniir_ids[precision]), seconds = timed(
            lambda p=precision: exact_search([PoolBlock(pool, ids)], queries, args.k, device=args.device, precision=p)
        )
        results[f"uniir_exact_{precision}_s"] = seconds
        print(f"uniir exact search, precision {precision}: {seconds:.2f} s", flush=True)
    reference = uniir_ids[precisions[0]]
    for precision in precisions[1:]:
        results[f"uniir_{precision}_same_ids_as_{precisions[0]}"] = float((uniir_ids[precision] == reference).mean())
    first_s = results[f"uniir_exact_{precisions[0]}_s"]

    skipped = faiss_skipped(args.device)
    if skipped:
        results["faiss"] = skipped
        pool32 = normalize_rows(pool[:numpy_rows])  # numpy's rows only
    else:
        pool32, results["normalise_fp32_copy_s"] = timed(lambda: normalize_rows(pool))
        faiss_ids = faiss_flat(pool32, queries, args.k, args.device, results)
        results["faiss_same_ids_fraction"] = float((faiss_ids == reference).mean())
        results["uniir_vs_faiss_search"] = results["faiss_search_s"] / first_s

    # numpy on the first `numpy_rows` rows, against uniir on the same rows
    if numpy_rows == args.pool:
        subset_ids, subset_s = reference, first_s
    else:
        (_, subset_ids), subset_s = timed(
            lambda: exact_search([PoolBlock(pool[:numpy_rows], ids[:numpy_rows])], queries, args.k, device=args.device,
                                 precision=precisions[0])
        )
    numpy_ids, numpy_s = timed(lambda: numpy_search(pool32[:numpy_rows], queries, args.k))
    results["numpy"] = {"pool": numpy_rows, "numpy_s": numpy_s, "uniir_s": subset_s, "uniir_vs_numpy": numpy_s / subset_s,
                        "same_ids_fraction": float((numpy_ids == subset_ids).mean())}
    report("search_backends", results, args.json)


if __name__ == "__main__":
    main()
