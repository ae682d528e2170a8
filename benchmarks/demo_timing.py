"""Benchmark: how long `uniir demo` takes, idle and beside other work (the README's figures).

Runs the real command in a fresh process and a fresh run directory; `--busy N` first starts
N busy-loop processes (each keeps one core at 100%) to stand in for "another job running".
Reports wall time, the command's user+system CPU, and the demo's averages.

    python benchmarks/demo_timing.py [--preset demo|blip-ff-tiny] [--busy 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

BUSY_LOOP = "import time\nend = time.time() + 900\nwhile time.time() < end: pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside the demo")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "uniir_cli", "demo", "--preset", args.preset, "--run-dir", str(run)],
                           check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            trained = json.loads((run / "metrics/metrics.json").read_text())["average"]
            untrained = json.loads((run / "untrained/metrics/metrics.json").read_text())["average"]
    finally:
        for process in busy:
            process.kill()
    report("demo_timing", {
        "preset": args.preset, "busy_processes": args.busy, "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
        "local": [round(100 * trained["local"]["value"], 1), round(100 * untrained["local"]["value"], 1)],
        "global": [round(100 * trained["global"]["value"], 1), round(100 * untrained["global"]["value"], 1)],
    })


if __name__ == "__main__":
    main()
