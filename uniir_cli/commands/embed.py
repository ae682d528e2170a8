"""`uniir embed`: Embed query sets and the candidate pool into sharded fp16 files, resumably (1..N processes via accelerate launch)."""

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
    on_bad_image: options.OnBadImage = None,
    force: options.Force = False,
    show_config: options.ShowConfig = False,
) -> None:
    """Embed query sets and the candidate pool into sharded fp16 files, resumably (1..N processes via accelerate launch).

    Example: uniir embed --preset clip-sf-large --data-dir /data/M-BEIR --checkpoint ckpt/clip-sf-large
    """
    run = run_steps(
        "embed", ("embed",), preset, overrides, run_dir, data_dir, checkpoint, force, show_config,
        {"retrieve.pool": pool, "data.tasks": tasks, "embed.on_bad_image": on_bad_image},
    ).run
    console.print(f"embed: done ({run.root})")
