"""The one training loop (every model), on Accelerate: 1 CPU, 1..N GPUs, several nodes.

Runs unchanged under `uniir train`, `accelerate launch -m uniir_cli train`, torchrun and
SLURM. Upstream recipe: AdamW with UniIR's parameter groups, a cosine schedule stepped per
optimizer step (optional linear warmup), one random positive per query per epoch, positives
gathered across ranks for the loss.

Checkpoints (`checkpoints/<step>/`): `model.safetensors` + `model.json` + `resume/`
(optimizer, scheduler and RNG state as safetensors and JSON: `resume_state`, never a pickle)
+ `trainer_state.json`, written under
`checkpoints/.partial/<step>/` and renamed into place once every rank has written its part,
so a run killed mid-save never leaves a folder that looks complete. `--resume` continues
from the latest one, skipping the batches already seen in its epoch; the data order and
every random draw are functions of (seed, epoch, index), so a resumed run's losses and
weights equal an uninterrupted run's.

`metrics/train.jsonl` and `metrics/val.jsonl` are append-only (see `uniir_cli.training.metrics_log`);
a (resumed) run rewrites both up to its checkpoint's step before appending. Validation is in
`uniir_cli.training.val_recall`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uniir_cli import atomic
from uniir_cli.config import Config
from uniir_cli.data.instructions import prompt_picker
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.errors import ConfigError, RunDirError
from uniir_cli.models.checkpoint_io import read_folder
from uniir_cli.run_session import RunSession, resolve_run_config, run_session
from uniir_cli.rundir import RunDir
from uniir_cli.training.metrics_log import append_record, truncate_log
from uniir_cli.training.resume_state import load_resume_state, save_resume_state
from uniir_cli.training.val_recall import log_val_recall

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
Progress = Callable[[dict[str, Any]], None]


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch to continue in
    batch_in_epoch: int = 0  # loader batches of `epoch` already consumed
    # CPU threads the run computed with: float sums depend on it, so a resumed run uses the same
    # (0: not recorded, or trained on a GPU)
    torch_threads: int = 0


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine from each group's lr to 0 at `total_steps` (upstream: no warmup)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    from uniir_cli.models.optim import adamw_param_groups

    t = config.train
    unknown = sorted(set(t.param_group_lr) - {"t5"})
    if unknown:
        raise ConfigError(f"train.param_group_lr: no parameter group {', '.join(unknown)}; the groups with their own lr are: t5")
    custom = getattr(model, "optimizer_param_groups", None)
    if custom is not None:  # a model whose recipe groups parameters its own way (BLIP)
        groups = custom(lr=t.lr, weight_decay=t.weight_decay)
    else:
        groups = adamw_param_groups(model, lr=t.lr, weight_decay=t.weight_decay, t5_lr=t.param_group_lr.get("t5"))
    return torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps)


def _mixed_precision(config: Config) -> str:
    wanted = config.train.mixed_precision
    if wanted != "no" and not torch.cuda.is_available():
        log.warning("train.mixed_precision = %r needs a GPU; training in fp32 on the CPU", wanted)
        return "no"
    return wanted


def build_dataset(config: Config, layout: MBeirLayout, processor: Any) -> Any:
    """The training samples: M-BEIR's training queries, or the mixture of `data.train_sources`."""
    sources = config.data.train_sources
    if not sources:
        return _mbeir_pairs(config, layout, processor)
    from uniir_cli.data.pair_sources import PairItems, WeightedMixture, check_source, read_source

    parts = []
    checked = [check_source(i, s) for i, s in enumerate(sources)]
    for source in checked:
        if source["format"] == "mbeir":
            parts.append(_mbeir_pairs(config, layout, processor))
        else:
            parts.append(PairItems(layout, processor, read_source(layout, source), instruction=source["instruction"],
                                   hard_neg_num=config.train.hard_neg_num))
    return WeightedMixture(parts, [s["weight"] for s in checked], config.run.seed)


def _mbeir_pairs(config: Config, layout: MBeirLayout, processor: Any) -> Any:
    from uniir_cli.data.mbeir import read_queries
    from uniir_cli.data.pool_reader import PoolReader
    from uniir_cli.data.train_pairs import TrainPairs

    data = config.data
    if data.train_datasets:
        from uniir_cli.data.train_pairs import upsampled_union

        layout.catalog.datasets_named(data.upsample, "data.upsample")
        datasets = layout.catalog.datasets_named(data.train_datasets, "data.train_datasets")
        files = {d.slug: layout.require(layout.train_query_file(d), f"train queries of {d.slug}") for d in datasets}
        queries = upsampled_union({slug: read_queries(path, unique=False) for slug, path in files.items()}, data.upsample, config.run.seed)
    else:
        queries_file = layout.require(layout.path(data.train_queries), "training queries (data.train_queries)")
        queries = read_queries(queries_file, unique=False)
    pool_file = layout.require(layout.path(data.train_pool), "training pool (data.train_pool)")
    return TrainPairs(
        layout, processor, queries, PoolReader.build(pool_file),
        prompt_picker(config, layout),
        seed=config.run.seed, hard_neg_num=config.train.hard_neg_num,
    )


def _latest_state(run: RunDir) -> tuple[Path, TrainerState] | None:
    checkpoint = run.latest_checkpoint()
    if checkpoint is None or not (checkpoint / STATE_FILE).is_file():
        return None
    path = checkpoint / STATE_FILE
    try:
        state = TrainerState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}); this checkpoint cannot be resumed") from None
    if not all(type(value) is int and value >= 0 for value in asdict(state).values()):
        raise RunDirError(f"{path}: step, epoch and batch_in_epoch must be counts; this checkpoint cannot be resumed")
    return checkpoint, state


def steps_per_epoch(batches: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of `batches` micro-batches: Accelerate also steps on an
    epoch's last, incomplete accumulation window."""
    return math.ceil(batches / accumulation)


def _prune(run: RunDir, keep: int) -> None:
    if keep <= 0:
        return
    complete = sorted(p for p in run.checkpoints_dir.iterdir() if (p / "model.json").is_file())
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, run: RunDir, state: TrainerState, keep: int) -> Path:
    """Write `checkpoints/<step>/` (see the module docstring) and prune to the `keep` newest.

    Every rank writes its part under `checkpoints/.partial/<step>/`; the main process then
    adds the trainer state and model files and renames the folder into place."""
    directory = run.checkpoint_dir(state.step)
    staging = run.checkpoint_staging_dir(state.step)
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed mid-save
    accelerator.wait_for_everyone()
    save_resume_state(staging, optimizer=optimizer, scheduler=scheduler, scaler=accelerator.scaler,
                      rank=accelerator.process_index, is_main=accelerator.is_main_process)
    accelerator.wait_for_everyone()  # every rank's RNG state is on disk
    if accelerator.is_main_process:
        run.freeze()  # a checkpoint exists: the run's settings are fixed from here on
        atomic.write_json(staging / STATE_FILE, asdict(state))
        accelerator.unwrap_model(model).save_pretrained(staging)
        shutil.rmtree(directory, ignore_errors=True)  # an incomplete folder of an older run
        os.replace(staging, directory)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when empty
        _prune(run, keep)
    accelerator.wait_for_everyone()
    log.info("checkpoint %s", directory)
    return directory


def train(
    preset: str | None = None,
    *,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    on_open: Callable[[RunSession], None] | None = None,
) -> Path | None:
    """Train a retriever in a run directory with the recipe of its settings; returns the
    final checkpoint folder (None on the other ranks of a multi-process launch).

    `checkpoint`: initial weights (default: `model.pretrained`); `resume` continues from the
    run's latest checkpoint; `settings` maps `section.key` to a value as the command-line
    flags do. `on_open` sees the session once the run is locked.
    """
    run_dir, data_dir, checkpoint = (Path(p) if p is not None else None for p in (run_dir, data_dir, checkpoint))
    resolved = resolve_run_config(preset, list(overrides), run_dir, dict(settings or {}))
    with run_session("train", resolved, preset=preset, run_dir=run_dir, data_dir=data_dir, checkpoint=checkpoint) as session:
        if not session.is_main_process:
            fit(session.run, session.config, session.layout, resume=resume, init_checkpoint=checkpoint)
            return None
        if on_open is not None:
            on_open(session)
        return fit(session.run, session.config, session.layout, resume=resume, init_checkpoint=checkpoint, progress=progress)


def fit(
    run: RunDir,
    config: Config,
    layout: MBeirLayout,
    *,
    resume: bool = False,
    init_checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """The training loop: train `config.model` on `config.data` in `run`; returns the final
    checkpoint folder."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        DistributedDataParallelKwargs,
        set_seed,
    )
    from torch.utils.data import DataLoader

    from uniir_cli.data.train_pairs import collate_triples
    from uniir_cli.registry import load_retriever
    from uniir_cli.training.grad_cache import check_supported, chunked_collate, grad_cache_step

    t = config.train
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config),
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
        log_with=t.trackers or None,
        project_dir=str(run.root),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # Buffers are never re-broadcast: they are constant (CLIP, BERT position ids) or
        # updated identically on every rank from gathered data (BLIP's queues, 2 x 178 MB).
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    set_seed(config.run.seed)
    if config.data.train_sources:  # settings errors before a model of gigabytes loads
        from uniir_cli.data.pair_sources import check_source

        for i, source in enumerate(config.data.train_sources):
            check_source(i, source)
    model = load_retriever(config, init_checkpoint)
    model.train()
    if t.gradient_checkpointing:
        model.set_grad_checkpointing(True)
    if t.grad_cache_chunk:
        check_supported(model)
    dataset = build_dataset(config, layout, model.processor)
    global_batch = t.batch_size * accelerator.num_processes
    if len(dataset) < global_batch:
        raise ConfigError(
            f"{len(dataset)} training queries are fewer than one global batch ({t.batch_size} x "
            f"{accelerator.num_processes} processes); lower train.batch_size"
        )
    loader = DataLoader(
        dataset, batch_size=t.batch_size, shuffle=True, drop_last=True, num_workers=t.num_workers,
        collate_fn=collate_triples(model.processor) if not t.grad_cache_chunk
        else chunked_collate(collate_triples(model.processor), t.grad_cache_chunk),
        pin_memory=torch.cuda.is_available(),
        # Starting an epoch's iterator draws a seed: from its own generator, not the global one
        # that dropout uses, so a run resumed mid-epoch sees the same dropout masks.
        generator=torch.Generator().manual_seed(config.run.seed),
    )
    optimizer = make_optimizer(model, config)
    with warnings.catch_warnings():
        # torch 2.14 deprecates broadcast_buffers=False, but its replacement still syncs at init
        # and the warning itself advises keeping it until `init_sync_buffers` exists
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total_steps = steps_per_epoch(len(loader), t.gradient_accumulation_steps) * t.epochs
    if t.max_steps > 0:
        total_steps = min(total_steps, t.max_steps)
    scheduler = cosine_schedule(optimizer, total_steps, t.warmup_steps)

    state = TrainerState()
    if resume:
        latest = _latest_state(run)
        if latest is None:
            raise RunDirError(f"{run.root} has no training checkpoint to resume from; drop --resume to start afresh")
        checkpoint, state = latest
        _, weights = read_folder(checkpoint)
        accelerator.unwrap_model(model).load_checkpoint_state_dict(weights, str(checkpoint))
        load_resume_state(checkpoint, optimizer=optimizer, scheduler=scheduler, scaler=accelerator.scaler,
                          rank=accelerator.process_index)
        log.info("resumed from %s (step %d, epoch %d, batch %d)", checkpoint, state.step, state.epoch, state.batch_in_epoch)
        if state.torch_threads and accelerator.device.type == "cpu" and torch.get_num_threads() != state.torch_threads:
            log.info("torch threads: %d, as before the interruption (the same float sums)", state.torch_threads)
            torch.set_num_threads(state.torch_threads)
    elif run.latest_checkpoint() is not None:
        raise RunDirError(f"{run.root} already has training checkpoints; pass --resume to continue, or use another --run-dir")
    if accelerator.is_main_process:
        run.metrics_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(run.train_log, state.step)
        truncate_log(run.val_log, state.step)
    if t.trackers:
        accelerator.init_trackers("uniir", config={f"{s}.{k}": str(v) for s in ("model", "train", "data") for k, v in config.section(s).items()})

    def save(epoch: int, batch_in_epoch: int) -> Path:
        threads = torch.get_num_threads() if accelerator.device.type == "cpu" else 0
        return save_checkpoint(accelerator, model, optimizer, scheduler, run, TrainerState(state.step, epoch, batch_in_epoch, threads),
                               t.keep_checkpoints)

    final = run.latest_checkpoint()
    started = time.monotonic()
    samples = 0
    done = state.step >= total_steps
    for epoch in range(state.epoch, t.epochs):
        if done:
            break
        dataset.set_epoch(epoch)
        loader.set_epoch(epoch)
        skip = state.batch_in_epoch if epoch == state.epoch else 0
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        consumed = skip
        for queries, positives, negatives in batches:
            consumed += 1
            with accelerator.accumulate(model):
                loss_kwargs = {"hard_neg_num": t.hard_neg_num, "in_batch_neg_num": t.in_batch_neg_num,
                               "hard_negatives": t.hard_negatives, "loss_average": t.loss_average,
                               "gather": t.gather_embeddings, "progress": epoch + (consumed - 1) / len(loader)}
                if t.grad_cache_chunk:
                    out = grad_cache_step(model, accelerator, queries, positives, negatives, **loss_kwargs)
                else:
                    out = model(queries, positives, negatives, **loss_kwargs)
                    accelerator.backward(out.loss)
                if accelerator.sync_gradients and t.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            samples += len(queries) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state.step += 1
            record = {
                "step": state.step,
                "epoch": epoch,
                "loss": accelerator.reduce(out.loss.detach(), "mean").item(),
                "accuracy": accelerator.reduce(out.accuracy.detach().float(), "mean").item(),
                "lr": scheduler.get_last_lr()[0],
                "logit_scale": float(out.logit_scale),
                "samples_per_s": samples / max(1e-9, time.monotonic() - started),
                "total_steps": total_steps,
            }
            if accelerator.is_main_process:
                append_record(run.train_log, record)
                if progress:
                    progress(record)
                if state.step % t.log_every_steps == 0 or state.step == 1:
                    log.info("step %d/%d loss %.4f acc %.3f lr %.3g", state.step, total_steps,
                             record["loss"], record["accuracy"], record["lr"])
            if t.trackers:
                accelerator.log({k: v for k, v in record.items() if k != "total_steps"}, step=state.step)
            if t.eval_every_steps and state.step % t.eval_every_steps == 0:
                log_val_recall(accelerator, model, config, layout, run, state.step)
            done = state.step >= total_steps
            if done:
                break
            if t.save_every_steps and state.step % t.save_every_steps == 0 and consumed < len(loader):
                final = save(epoch, consumed)  # the epoch's last step is saved below, once
        # Epoch end (or the last step): where a resumed run would continue.
        final = save(epoch + 1, 0) if consumed >= len(loader) else save(epoch, consumed)
    if t.trackers:
        accelerator.end_training()
    if final is None:
        raise RunDirError(f"{run.root}: nothing to train (total steps {total_steps})")
    return final
