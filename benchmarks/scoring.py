"""The score step at M-BEIR size: 16 query sets, 190K queries, depth 10/50 (issue #4 goal < 5 s).

    python benchmarks/scoring.py

Writes qrels files (1-18 positives per query) and retrieval results (`.npz`, as `uniir
retrieve` does) for the 16 pairs with the paper's test-set sizes into a temporary run, then
times `uniir_cli.evaluation.scoring.score` end to end: reading qrels, Recall@k (hit rate), true recall,
MRR@10, nDCG@10, metrics.json and eval_results.tsv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.data.benchmark import EVAL_PAIRS  # noqa: E402
from uniir_cli.data.ids import hash_qids, unhash_dids  # noqa: E402
from uniir_cli.data.mbeir import read_qrels  # noqa: E402
from uniir_cli.evaluation.retrieval import Results, results_file  # noqa: E402
from uniir_cli.evaluation.scoring import score  # noqa: E402
from uniir_cli.rundir import RunDir  # noqa: E402

# Test queries per pair (paper Table 1): 190K in all.
QUERIES = [20_000, 24_800, 1_700, 2_400, 3_200, 2_500, 20_000, 5_000, 4_800, 2_000, 50_000, 11_000, 6_000, 4_000, 14_700, 17_600]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        qrels_files = {}
        for pair, count in zip(EVAL_PAIRS, QUERIES):
            d = pair.dataset.id
            qids = [f"{d}:{n}" for n in range(1, count + 1)]
            positives = [d * 10_000_000 + rng.integers(1, 1_000_000, size=rng.integers(1, 19)) for _ in qids]
            path = Path(tmp) / f"{pair.name}_qrels.txt"
            with open(path, "w") as out:
                for qid, pos in zip(qids, positives):
                    out.writelines(f"{qid} 0 {did} 1 {pair.task_id}\n" for did in unhash_dids(pos))
            qrels_files[pair.name] = path
            ranked = d * 10_000_000 + rng.integers(1, 1_000_000, size=(count, pair.depth))
            for row, pos in zip(ranked[::3], positives[::3]):
                row[rng.integers(0, pair.depth)] = pos[0]
            results = Results(hash_qids(qids), ranked, np.sort(rng.random((count, pair.depth)).astype(np.float32))[:, ::-1])
            path = results_file(run, pair, "test", "global")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, qids=results.qids, ids=results.ids, scores=results.scores)
        run.metrics_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        summary = score(run, [(p, "global") for p in EVAL_PAIRS], "test", lambda p: read_qrels(qrels_files[p.name]))
        seconds = time.perf_counter() - start
    results = {"queries": sum(QUERIES), "pairs": len(EVAL_PAIRS), "score_step_s": seconds,
               "average_reported": summary["average"]["global"]["value"]}
    report("scoring", results, args.json)


if __name__ == "__main__":
    main()
