"""`uniir retrieve`: Retrieve the top-k candidates of every query set from its local pool and/or the global pool."""

from __future__ import annotations

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
    rag: options.Rag = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Retrieve the top-k candidates of every query set from its local pool and/or the global pool.

    The search follows index.backend (auto: exact chunked search for the Flat factory, faiss for
    others; torch; faiss, sharded over all GPUs with faiss-gpu). On a GPU, index.precision =
    "fp16" or "bf16" speeds up the torch search at that precision of scores.

    Example: uniir retrieve --run-dir runs/clip-sf-large --pool both
    """
    run = run_steps(
        "retrieve", ("retrieve",), preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks, "retrieve.rag": rag},
    ).run
    console.print(f"retrieve: done ({run.root})")
