"""End-to-end `uniir eval` wall time on the synthetic M-BEIR, split into its steps.

    python benchmarks/eval_synthetic.py                         # demo size, tiny CLIP-SF, local + global
    python benchmarks/eval_synthetic.py --size 80 --preset demo

Generates the synthetic M-BEIR, then runs embed -> index -> retrieve -> score -> report on a
fresh run directory in this process, timing each step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.config_toml import resolve_config  # noqa: E402
from uniir_cli.data.layout import MBeirLayout  # noqa: E402
from uniir_cli.data.synthetic import generate_synthetic_mbeir  # noqa: E402
from uniir_cli.evaluation.pipeline import (  # noqa: E402
    Context,
    step_embed,
    step_index,
    step_report,
    step_retrieve,
    step_score,
)
from uniir_cli.rundir import RunDir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = generate_synthetic_mbeir(Path(tmp) / "data", size=args.size)
        timings["generate_data_s"] = time.perf_counter() - start
        resolved = resolve_config(args.preset, flags={"retrieve.pool": "both"})
        run = RunDir(Path(tmp) / "run")
        ctx = Context(run, resolved.config, MBeirLayout(summary.root), None)
        with run.command("eval"):
            run.bind_config(resolved, "eval")
            for name, step in (("embed", step_embed), ("index", step_index), ("retrieve", step_retrieve)):
                start = time.perf_counter()
                out = step(ctx)
                timings[f"{name}_s"] = time.perf_counter() - start
            start = time.perf_counter()
            scored = step_score(ctx, out)
            timings["score_s"] = time.perf_counter() - start
            start = time.perf_counter()
            step_report(ctx, scored)
            timings["report_s"] = time.perf_counter() - start
    queries = summary.records("query/test/")
    candidates = summary.records("cand_pool/global/mbeir_union_test")
    report("eval_synthetic", {"size": args.size, "preset": args.preset, "test_queries": queries,
                              "candidates": candidates, **timings, "total_s": sum(timings.values())}, args.json)


if __name__ == "__main__":
    main()
