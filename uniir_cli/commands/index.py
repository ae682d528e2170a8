"""`uniir index`: Write each pool's membership (local pools out of the embedded candidates; global = all of them) and any faiss index."""

from __future__ import annotations

import json
import time

from uniir_cli.commands import options
from uniir_cli.commands.steps import console, run_steps


def run(
    preset: options.Preset = None,
    overrides: options.Overrides = None,
    run_dir: options.RunDir = None,
    data_dir: options.DataDir = None,
    checkpoint: options.Checkpoint = None,
    pool: options.Pool = None,
    tasks: options.Tasks = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Write each pool's membership (local pools out of the embedded candidates; global = all of them).

    With a faiss backend (index.backend = "faiss", or "auto" with a factory other than Flat), also
    build and save each pool's faiss index; the exact search needs none.

    Example: uniir index --run-dir runs/clip-sf-large --set 'index.factory="IVF4096,Flat"' --set index.nprobe=64
    """
    started = time.time()
    run = run_steps(
        "index", ("index",), preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks},
    ).run
    for info_file in sorted(run.root.glob("index/*/pool.json")):
        info = json.loads(info_file.read_text())
        if "recall_at_10_vs_exact" in info and info_file.stat().st_mtime >= started:
            console.print(f"{info_file.parent.name}: {info['factory']} recall@10 vs exact {info['recall_at_10_vs_exact']:.1%} "
                          f"on {info['recall_sample']} queries (nprobe {info['nprobe']}, ef_search {info['ef_search']})")
    console.print(f"index: done ({run.root})")
