"""Benchmark: `uniir serve` start-up time and search latency, in-process (FastAPI's test client).

    python benchmarks/serve_latency.py                        # builds the demo-size synthetic M-BEIR and evaluates the demo's tiny CLIP
    python benchmarks/serve_latency.py --run-dir runs/demo    # an existing evaluated run (e.g. from `uniir demo`)
    python benchmarks/serve_latency.py --queries 200 --json out.json
    python benchmarks/serve_latency.py --model large          # CLIP-SF large's ViT-L-14 (random weights) on the tiny tree

`--model large` shows what a real model's query encoding costs: the demo's tiny CLIP is
cheap to encode, ViT-L-14 (CLIP-SF large, 428M parameters) is not. Its weights are random
(speed does not depend on them), and the tree is the tiny synthetic M-BEIR so that embedding
its candidates with ViT-L-14 on a CPU takes minutes, not an hour.

Start-up is what `uniir serve` does before it answers: read the run, load the model, the
candidate vectors, every pool's searcher and the pool lookups, and build the app; measured
in this process (libraries already imported) and as a cold start (a new `uniir serve`
process until its first answer). Each query
is one request through the whole stack: form parsing, image decoding (uploads), encoding
on the CPU, exact search of the pool, the candidates' records, JSON. Text queries are the
query texts of the data tree; image queries upload candidate JPEGs of the tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]
from common import report  # noqa: E402

from tests.serve.process import serving  # noqa: E402

# --model: (synthetic tree size, settings over the demo preset)
MODELS = {"demo": ("demo", {}), "large": ("tiny", {"model.size": "large"})}


def build_run(root: Path, model: str) -> Path:
    """A synthetic M-BEIR and an evaluation of the demo preset's untrained CLIP-SF (tiny, or
    large with random weights)."""
    from uniir_cli.data.synthetic import generate_synthetic_mbeir
    from uniir_cli.evaluation.pipeline import evaluate

    size, settings = MODELS[model]
    data = root / "data"
    generate_synthetic_mbeir(data, seed=0, size=size)
    evaluate("demo", run_dir=root / "run", data_dir=data, settings={"retrieve.pool": "both", **settings})
    return root / "run"


def cold_start(run_dir: Path) -> float:
    """Seconds from starting `uniir serve` in a new process to its first answer (imports, the
    model, the vectors, the pool lookups, the server)."""
    start = time.perf_counter()
    with serving(run_dir, timeout=300):
        return time.perf_counter() - start


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(1000 * statistics.median(ordered), 2), "p95_ms": round(1000 * p95, 2),
            "max_ms": round(1000 * ordered[-1], 2), "queries": len(ordered)}


def timed(client: Any, count: int, request: Any) -> list[float]:
    request(0)  # warm-up (first-call allocations)
    out = []
    for i in range(count):
        start = time.perf_counter()
        response = request(i)
        out.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="an evaluated run (default: build one in a temporary folder)")
    parser.add_argument("--model", choices=sorted(MODELS), default="demo",
                        help="the model of the run built when no --run-dir is given (default: demo)")
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from uniir_cli.serve.app import create_app
    from uniir_cli.serve.state import load_state

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or build_run(Path(tmp), args.model)
        start = time.perf_counter()
        state = load_state([run_dir], device="cpu")
        client = TestClient(create_app(state))
        startup = time.perf_counter() - start
        served = state.runs[0]
        assert served.search is not None, served.search_problem
        layout, split = served.ctx.layout, served.ctx.split
        pair = next(s.pair for s in served.results.query_sets if s.pair.name == "mscoco_task0")  # text -> image
        texts = [json.loads(line)["query_txt"] for line in layout.query_file(pair, split).read_text().splitlines()]
        local_pool = pair.pool_name(split)
        images = [(layout.root / json.loads(line)["img_path"]).read_bytes()
                  for line in layout.pool_file(pair, split).read_text().splitlines()]
        results: dict[str, Any] = {"run_dir": str(run_dir), "model": "the run's" if args.run_dir else args.model,
                                   "candidates": int(sum(len(b.ids) for b in served.search.candidates)),
                                   "pools": len(served.pools), "startup_in_process_s": round(startup, 2),
                                   "cold_start_s": round(cold_start(run_dir), 2), "k": args.k}
        for pool in ("global", local_pool):
            def text_query(i: int, pool: str = pool) -> Any:
                return client.get("/api/search", params={"text": texts[i % len(texts)], "pool": pool, "k": args.k})

            def image_query(i: int, pool: str = pool) -> Any:
                return client.post("/api/search", data={"pool": pool, "k": str(args.k)},
                                   files={"image": ("q.jpg", images[i % len(images)], "image/jpeg")})

            results[f"text_{pool}"] = percentiles(timed(client, args.queries, text_query))
            results[f"image_{pool}"] = percentiles(timed(client, args.queries, image_query))
        results["local_pool"] = local_pool
        report("serve_latency", results, args.json)


if __name__ == "__main__":
    main()
