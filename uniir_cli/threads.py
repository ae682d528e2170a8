"""How many threads torch computes with: all cores when they are free, fewer beside other work.

On a busy machine torch's OpenMP threads spin-wait for cores another job holds: `uniir demo`
beside one busy process took 124 s with 2 threads and 71 s with 1 on the 2-core CI machine
(idle: 47 s with 2, 69 s with 1; `benchmarks/demo_timing.py`). So before torch starts, the
cores in use right now are measured (/proc/stat over a fifth of a second) and
`OMP_NUM_THREADS` is set to the cores left free, unless the user set it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger(__name__)
SAMPLE_S = 0.2


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def free_cores(cores: int) -> int:
    """Cores not in use by other processes right now (at least 1)."""
    before = _cpu_times()
    time.sleep(SAMPLE_S)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return cores
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    return max(1, min(cores, round(cores * (1 - busy_share))))


def choose_torch_threads() -> None:
    """Set `OMP_NUM_THREADS` for this process (and its workers) before torch is imported."""
    if "OMP_NUM_THREADS" in os.environ or "torch" in sys.modules:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2:
        return
    threads = free_cores(cores)
    if threads < cores:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        log.info("torch threads: %d of %d cores (the others are busy; set OMP_NUM_THREADS to choose)", threads, cores)
