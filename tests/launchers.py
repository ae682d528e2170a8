"""How multi-process tests start `python -m uniir_cli` on 2 ranks (gloo on the CPU when
CUDA_VISIBLE_DEVICES is empty), each launch on a free port so parallel test runs never meet."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_ranks(launcher: str) -> list[str]:
    """The command prefix up to and including `-m uniir_cli`: `accelerate` or `torchrun`."""
    port = str(free_port())
    if launcher == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--main_process_port", port, "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "uniir_cli"]
    assert launcher == "torchrun", launcher
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, "-m", "uniir_cli"]


LAUNCHERS = ("accelerate", "torchrun")
