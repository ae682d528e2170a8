"""`uniir serve` in a subprocess on a free port, for the browser test, the latency benchmark's
cold start and the README screenshot: started, waited for until it answers, stopped."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serving(run_dir: Path, *args: str, log: Path | None = None, timeout: float = 120.0) -> Iterator[str]:
    """Runs `uniir serve --run-dir run_dir *args` and yields its base URL once /api/status
    answers; the server's output goes to `log` (shown when it exits early)."""
    port = free_port()
    with open(log or os.devnull, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uniir_cli", "serve", "--run-dir", str(run_dir), "--port", str(port), "--device", "cpu", *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"uniir serve exited with {process.returncode}: {log.read_text() if log else ''}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"uniir serve did not answer within {timeout:g} s")
                try:
                    get_json(f"{base}/api/status")
                    break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.05)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
