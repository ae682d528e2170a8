"""What `uniir serve` loads once at start-up: for each served run (the run, and optionally a
second one to compare with) its settings and data tree, its results reader and its search
(model, candidate vectors, pool searchers, pool lookups).

A run that cannot be searched or browsed yet does not stop the server: the problem (which
names the step to run) is kept and shown on the page and in the API.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uniir_cli.errors import UniirError
from uniir_cli.serve.images import DEFAULT_MAX_PIXELS
from uniir_cli.serve.results import RunResults

log = logging.getLogger(__name__)

SIDES = ("a", "b")  # the served run, the run it is compared with


@dataclass
class ServedRun:
    side: str
    root: Path
    label: str
    ctx: Any = None  # evaluation.pipeline.Context; None when the run cannot be read at all
    results: RunResults | None = None
    search: Any = None  # evaluation.interactive_search.RunSearch; None when it cannot search
    problem: str | None = None  # why the run cannot be browsed (and so not searched)
    search_problem: str | None = None  # why it cannot be searched
    instructions: tuple[str, ...] = ()  # the data tree's instruction prompts, offered on the search page
    # Held for each search and each record lookup: the pool files' lookups share a file handle.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def record(self, did: str) -> Any:
        """A candidate's record (`data.mbeir.CandidateRecord`) from the run's pool files."""
        with self.lock:
            return self.ctx.candidate_record(did)

    @property
    def image_roots(self) -> list[Path]:
        """The folders its images may be served from: the data root, and the resolved image
        folder (often a symlink to another disk)."""
        if self.ctx is None:
            return []
        return [self.ctx.layout.root, self.ctx.layout.images_dir]

    @property
    def pools(self) -> tuple[str, ...]:
        return self.search.pools if self.search is not None else ()


@dataclass
class ServeState:
    runs: list[ServedRun]
    k: int = 10
    max_upload_bytes: int = 10_000_000
    max_pixels: int = DEFAULT_MAX_PIXELS
    load_seconds: float = 0.0

    def run(self, side: str) -> ServedRun | None:
        return next((run for run in self.runs if run.side == side), None)


def instruction_prompts(path: Path) -> tuple[str, ...]:
    """Every prompt of the instructions file, once each (none when it cannot be read)."""
    from uniir_cli.data.instructions import read_instructions

    try:
        prompts = read_instructions(path).prompts.values()
    except UniirError as exc:
        log.warning("no instructions to offer: %s", exc)
        return ()
    return tuple(dict.fromkeys(prompt for row in prompts for prompt in row))


def load_run(side: str, run_dir: Path, data_dir: Path | None, device: str, label: str | None = None) -> ServedRun:
    """Open one run for serving; problems are kept, not raised."""
    from uniir_cli.evaluation.interactive_search import RunSearch, open_context

    served = ServedRun(side, Path(run_dir), label or Path(run_dir).resolve().name)
    try:
        served.ctx = open_context(Path(run_dir), data_dir)
    except UniirError as exc:
        served.problem = str(exc)
        served.search_problem = served.problem
        log.info("%s", exc)
        return served
    served.results = RunResults(served.ctx)
    served.instructions = instruction_prompts(served.ctx.layout.instructions_file)
    if not served.results.query_sets:
        served.problem = f"{run_dir} has no retrieval results yet; run `uniir eval --run-dir {run_dir}`"
    try:
        served.search = RunSearch(served.ctx, device, served.lock)
        served.search.load_all()
    except UniirError as exc:
        served.search, served.search_problem = None, str(exc)
        log.info("%s", exc)
    return served


def load_state(run_dirs: list[Path], data_dir: Path | None = None, device: str = "cpu", **limits: Any) -> ServeState:
    """The served runs (the first one, then the one to compare with) and the request limits."""
    import time

    start = time.perf_counter()
    runs = [load_run(side, Path(path), data_dir, device) for side, path in zip(SIDES, run_dirs)]
    if len(runs) == 2 and runs[0].label == runs[1].label:
        for run in runs:
            run.label = str(run.root)
    return ServeState(runs, load_seconds=time.perf_counter() - start, **limits)
