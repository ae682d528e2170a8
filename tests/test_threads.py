"""torch gets the cores left free: all of them when the machine is idle, fewer beside a busy process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = ("import os; from uniir_cli.threads import choose_torch_threads; choose_torch_threads(); "
        "print(os.environ.get('OMP_NUM_THREADS', 'all'))")
ENV = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_beside_busy_processes_torch_takes_the_free_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores - 1)]
    try:
        chosen = subprocess.run([sys.executable, "-c", CODE], env=ENV, capture_output=True, text=True, check=True).stdout.strip()
    finally:
        for loop in loops:
            loop.kill()
    assert chosen == "1"


def test_a_set_omp_num_threads_is_respected() -> None:
    chosen = subprocess.run([sys.executable, "-c", CODE], env={**ENV, "OMP_NUM_THREADS": "3"}, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert chosen == "3"
