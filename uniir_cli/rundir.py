"""The run directory: the only module that knows paths and file names inside a run.

```
runs/<name>/
  run.toml  manifest.json  run.lock  logs/<command>.log
  checkpoints/<step>/  embeddings/<set>/  index/<pool>/  retrieval/  metrics/
  report.md  report.png
```

Every artefact is written atomically; each step records the hash of its inputs in the
manifest so an unchanged step is skipped (`--force` redoes it); a lock file stops two
processes from writing one run at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.config import Config
from uniir_cli.config_toml import (
    ResolvedConfig,
    build_config,
    load_config_file,
    resolve_config,
    to_toml,
)
from uniir_cli.dir_lock import DirLock
from uniir_cli.errors import ConfigError, RunDirError
from uniir_cli.version import __version__

log = logging.getLogger(__name__)

# Settings whose change invalidates what a run has produced (model and data definition);
# which split or pairs to evaluate may change between commands.
FROZEN_SECTIONS = ("model", "data")
MUTABLE_DATA_KEYS = ("split", "tasks")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_run_dir(preset_name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{preset_name}-{stamp}"


def hash_inputs(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable step inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> list[Any]:
    """Identity of an input file for step hashes: path, size and modification time."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _git_sha() -> str | None:
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


class RunDir:
    """Paths, config, manifest, lock and step bookkeeping of one run directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._pending_toml: str | None = None
        self._lock = DirLock(self.lock_file, lambda holder: RunDirError(
            f"run directory {self.root} is in use by {holder}; wait for it to finish or pass another --run-dir"
        ))

    # ------------------------------------------------------------------ paths
    @property
    def run_toml(self) -> Path:
        return self.root / "run.toml"

    @property
    def manifest_json(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "run.lock"

    def log_file(self, command: str) -> Path:
        return self.root / "logs" / f"{command}.log"

    @property
    def demo_data_dir(self) -> Path:
        """Where `uniir demo` writes its synthetic M-BEIR."""
        return self.root / "data"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint_dir(self, step: int) -> Path:
        """A checkpoint folder; its contents are written by the trainer and `save_pretrained`."""
        return self.checkpoints_dir / f"{step:08d}"

    def checkpoint_staging_dir(self, step: int) -> Path:
        """Where a checkpoint is written before it is renamed to `checkpoint_dir(step)`."""
        return self.checkpoints_dir / ".partial" / self.checkpoint_dir(step).name

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (a folder with model.json), or None."""
        if not self.checkpoints_dir.is_dir():
            return None
        done = sorted(p for p in self.checkpoints_dir.iterdir() if (p / "model.json").is_file())
        return done[-1] if done else None

    def embeddings_dir(self, set_name: str) -> Path:
        """A set's shard store; the shard file names inside are `uniir_cli.evaluation.shards`' format."""
        return self.root / "embeddings" / set_name

    def baseline_run_dir(self) -> Path:
        """The nested run `uniir demo` evaluates its untrained model in."""
        return self.root / "untrained"

    def index_dir(self, pool: str) -> Path:
        return self.root / "index" / pool

    def faiss_index_file(self, pool: str) -> Path:
        return self.index_dir(pool) / "faiss.index"

    def pool_ids_file(self, pool: str) -> Path:
        """The pool's member candidate ids (int64 hashes)."""
        return self.index_dir(pool) / "ids.npy"

    def pool_info_file(self, pool: str) -> Path:
        return self.index_dir(pool) / "pool.json"

    def indexed_pools(self) -> list[str]:
        """Names of the pools the index step wrote (those with an ids file), sorted."""
        root = self.root / "index"
        return sorted(p.name for p in root.iterdir() if self.pool_ids_file(p.name).is_file()) if root.is_dir() else []

    @property
    def retrieval_dir(self) -> Path:
        return self.root / "retrieval"

    def run_file(self, query_set: str, pool: str) -> Path:
        return self.retrieval_dir / f"{query_set}__{pool}.run"

    def results_file(self, query_set: str, pool: str) -> Path:
        """The binary top-k results that `score` reads (the `.run` file is for other tools)."""
        return self.retrieval_dir / f"{query_set}__{pool}.npz"

    def retrieved(self) -> list[tuple[str, str]]:
        """(query set, pool) of every binary results file the retrieve step wrote, sorted."""
        if not self.retrieval_dir.is_dir():
            return []
        found = (p.name[: -len(".npz")].rpartition("__") for p in self.retrieval_dir.glob("*__*.npz"))
        return sorted((query_set, pool) for query_set, _, pool in found)

    def rag_file(self, query_set: str, pool: str) -> Path:
        return self.retrieval_dir / f"{query_set}__{pool}_retrieved.jsonl"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def metrics_json(self) -> Path:
        return self.metrics_dir / "metrics.json"

    @property
    def train_log(self) -> Path:
        """Append-only, one JSON line per optimizer step: the loss curve."""
        return self.metrics_dir / "train.jsonl"

    @property
    def val_log(self) -> Path:
        """Append-only, one JSON line per validation."""
        return self.metrics_dir / "val.jsonl"

    @property
    def eval_results_tsv(self) -> Path:
        return self.metrics_dir / "eval_results.tsv"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_png(self) -> Path:
        return self.root / "report.png"

    # ------------------------------------------------------------------ lock
    def lock(self, command: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock (re-entrant within one process; see `dir_lock`)."""
        return self._lock.hold(command)

    def _require_lock(self) -> None:
        assert self._lock.held, "run directory written without holding its lock"

    # ------------------------------------------------------------------ config
    def exists(self) -> bool:
        return self.run_toml.is_file()

    def stored_config(self) -> Config:
        if not self.exists():
            raise RunDirError(
                f"{self.root} is not a uniir run directory (no run.toml); start one with "
                "`uniir train` or `uniir eval --preset NAME --run-dir DIR`"
            )
        return build_config(load_config_file(self.run_toml), source=str(self.run_toml))

    def resolve(
        self,
        preset: str | None,
        overrides: list[str] | None = None,
        flags: dict[str, Any] | None = None,
    ) -> ResolvedConfig:
        """Resolve a command's config on top of the run's stored config (if any)."""
        base = load_config_file(self.run_toml) if self.exists() else None
        if base is None and not preset:
            raise RunDirError(
                f"{self.root} has no run.toml yet: pass --preset NAME to start this run"
            )
        return resolve_config(preset, overrides, flags, base=base)

    def bind_config(self, resolved: ResolvedConfig, command: str) -> None:
        """Check that model/data settings did not change, and keep the settings to freeze in
        run.toml once the command has completed (`freeze`): a command that fails leaves the
        run's settings as they were, and one-off requests (`--rag`: `config_toml.ONE_OFF`) are not
        kept in run.toml."""
        self._require_lock()
        config = resolved.config
        if self.exists():
            stored = self.stored_config()
            changed = [
                f"{section}.{key}: {old!r} -> {new!r}"
                for section in FROZEN_SECTIONS
                for key, old in stored.section(section).items()
                if (new := config.section(section)[key]) != old
                and not (section == "data" and key in MUTABLE_DATA_KEYS)
            ]
            if changed:
                raise RunDirError(
                    f"{self.run_toml} was made with other model/data settings ({'; '.join(changed)}); "
                    "results would mix; start a new run directory with --run-dir"
                )
        self._pending_toml = to_toml(resolved.persisted or config)
        manifest = self.read_manifest()
        for key, value in (
            ("uniir_version", __version__),
            ("git_sha", _git_sha()),
            ("created", now()),
            ("steps", {}),
            ("commands", []),
        ):
            manifest.setdefault(key, value)
        if resolved.chain:
            manifest["preset_chain"] = resolved.chain
        self._write_manifest(manifest)

    def freeze(self) -> None:
        """Write the settings `bind_config` kept (after a completed command or checkpoint)."""
        if self._pending_toml is not None:
            self._require_lock()
            atomic.write_text(self.run_toml, self._pending_toml)
            self._pending_toml = None

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_json.is_file():
            return {}
        try:
            return json.loads(self.manifest_json.read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(
                f"{self.manifest_json} is damaged ({exc}); delete it to start the run's bookkeeping afresh"
            ) from None

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        self._require_lock()
        atomic.write_json(self.manifest_json, manifest)

    def recorded(self, key: str) -> Any:
        """A run-level fact an earlier command stored with `record`, or None."""
        return self.read_manifest().get(key)

    def data_dir_or_recorded(self, given: Path | None) -> Path:
        """The data directory given, else the one an earlier command of this run used."""
        if given is not None:
            return Path(given)
        stored = self.recorded("data_dir")
        if stored is None:
            raise ConfigError("no data directory: pass --data-dir (or set UNIIR_DATA_DIR)")
        return Path(stored)

    def default_checkpoint(self, given: Path | None) -> Path | None:
        """An explicit checkpoint, else the run's latest training checkpoint, else the one an
        earlier command of this run evaluated, else None (the configured pretrained model)."""
        if given is not None:
            return given
        recorded = self.recorded("checkpoint")
        return self.latest_checkpoint() or (Path(recorded) if recorded else None)

    def record(self, key: str, value: Any) -> None:
        """Store a run-level fact in the manifest (e.g. the data directory used)."""
        manifest = self.read_manifest()
        manifest[key] = value
        self._write_manifest(manifest)

    @contextlib.contextmanager
    def command(self, name: str) -> Iterator[None]:
        """Lock the run, remove the temporary files killed commands left, log to
        logs/<name>.log, and record the command in the manifest."""
        with self.lock(name):
            swept = atomic.sweep_orphans(self.root)
            entry = {"command": name, "argv": sys.argv[1:], "started": now(), "status": "running"}
            manifest = self.read_manifest()
            manifest.setdefault("commands", []).append(entry)
            self._write_manifest(manifest)
            self.log_file(name).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.log_file(name))
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            if swept:
                log.info("removed %d temporary file(s) left by killed commands", swept)
            status = "failed"
            try:
                yield
                self.freeze()
                status = "done"
            finally:
                logging.getLogger().removeHandler(handler)
                handler.close()
                manifest = self.read_manifest()
                manifest["commands"][-1].update(status=status, ended=now())
                self._write_manifest(manifest)

    # ------------------------------------------------------------------ steps
    def step_hash(self, step: str) -> str:
        """The input hash `step` last ran with ("" if it never ran); a later step's inputs
        include it, so redoing a step invalidates the steps after it."""
        return self.read_manifest().get("steps", {}).get(step, {}).get("input_hash", "")

    def is_fresh(self, step: str, input_hash: str) -> bool:
        """True if `step` finished earlier with the same inputs (so it can be skipped)."""
        entry = self.read_manifest().get("steps", {}).get(step)
        return bool(entry) and entry.get("status") == "done" and entry.get("input_hash") == input_hash

    @contextlib.contextmanager
    def step(self, step: str, input_hash: str) -> Iterator[None]:
        """Record a step's start, end, status and input hash around its work."""
        self._set_step(step, {"input_hash": input_hash, "argv": sys.argv[1:], "started": now(), "status": "running"})
        status = "failed"
        try:
            yield
            status = "done"
        finally:
            self._set_step(step, {"status": status, "ended": now()}, update=True)

    def _set_step(self, step: str, values: dict[str, Any], update: bool = False) -> None:
        manifest = self.read_manifest()
        steps = manifest.setdefault("steps", {})
        steps[step] = {**steps.get(step, {}), **values} if update else values
        self._write_manifest(manifest)
