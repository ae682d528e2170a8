"""Shared helpers of the benchmark scripts: machine description and peak memory."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
from typing import Any


def machine() -> dict[str, Any]:
    """Date, CPU model, core count, torch version and threads, GPU name if any."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": cpu, "nproc": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name: str, results: Any, path: str = "") -> None:
    """Print the results as JSON (and write them to `path`)."""
    text = json.dumps({"benchmark": name, "machine": machine(), "results": results}, indent=2)
    print(text)
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
