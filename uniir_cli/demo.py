"""The demo loop as a library function: synthetic M-BEIR -> untrained baseline -> train ->
evaluate -> comparison report, all in one run directory.

`uniir demo` only calls `run_demo` and prints; a script gets the same numbers from Python.
A killed demo reruns to the same result: the data tree is kept when identical, the
evaluation steps skip what is done and training resumes from its latest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.data.synthetic import SyntheticSummary, generate_synthetic_mbeir
from uniir_cli.evaluation.pipeline import STEPS, Evaluation, evaluate
from uniir_cli.evaluation.reporting import build_tables, to_markdown
from uniir_cli.rundir import RunDir, default_run_dir
from uniir_cli.training.loop import train

DEMO_SETTINGS = {"retrieve.pool": "both"}  # the demo reports the local and the global pool


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    data_dir: Path
    trained: dict[str, Any]  # metrics summary of the trained model
    untrained: dict[str, Any]  # the same model before training (the baseline)
    report: str  # the comparison as Markdown, also in <run_dir>/report.md
    tables: list[Any]  # the same as `reporting.Table`s


def _ignore(_: Any) -> None:
    return None


def run_demo(
    preset: str = "demo",
    *,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    seed: int = 0,
    size: str = "demo",
    image_size: int = 64,
    force: bool = False,
    stage: Callable[[str], None] = _ignore,
    generated: Callable[[SyntheticSummary], None] = _ignore,
    evaluate_run: Callable[..., Evaluation] = evaluate,
    train_run: Callable[..., Path | None] = train,
) -> DemoResult:
    """The whole loop on a synthetic M-BEIR (written to `<run_dir>/data` unless `data_dir`).

    `stage` is told each stage's title and `generated` the data tree's summary; the CLI
    passes `evaluate_run` / `train_run` wrappers of the library's `evaluate` / `train` that
    draw progress bars.
    """
    run = RunDir(run_dir or default_run_dir(Path(preset).stem if preset.endswith(".toml") else preset))
    data = Path(data_dir) if data_dir is not None else run.demo_data_dir
    stage("1/4 synthetic M-BEIR")
    generated(generate_synthetic_mbeir(data, seed=seed, size=size, image_size=image_size, force=force))
    common = {"data_dir": data, "overrides": overrides, "settings": DEMO_SETTINGS}
    stage("2/4 evaluate the untrained model (baseline)")
    untrained = evaluate_run(preset, run_dir=run.baseline_run_dir(), steps=STEPS, **common).metrics
    stage("3/4 train")
    train_run(preset, run_dir=run.root, resume=run.latest_checkpoint() is not None, **common)
    stage("4/4 evaluate the trained model")
    trained = evaluate_run(preset, run_dir=run.root, steps=STEPS, **common).metrics
    assert trained is not None and untrained is not None, "the demo runs in one process"
    tables = build_tables([("trained", trained), ("untrained", untrained)], None)
    report = to_markdown(tables)
    with run.lock("demo"):
        atomic.write_text(run.report_md, report)
    return DemoResult(run.root, data, trained, untrained, report, tables)
