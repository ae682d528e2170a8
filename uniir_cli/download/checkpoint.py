"""The released UniIR checkpoints (`uniir download checkpoint`): download, then convert.

The `.pth` files live in the Hub model repo ``TIGER-Lab/UniIR`` and are fetched into the
Hugging Face cache (resumable, honouring the HF_* variables); conversion into a uniir
checkpoint folder (safetensors, no optimizer state) is done by the model family's
converter, called from exactly one place (`convert_released`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from uniir_cli.download.disk import check_free_space
from uniir_cli.download.hub import (
    CACHE_HINT,
    RemoteFile,
    cached_path,
    hub_cache_dir,
    hub_download,
    hub_listing,
)
from uniir_cli.download.parts import ProgressCallback
from uniir_cli.errors import ConfigError, NotImplementedYetError

log = logging.getLogger(__name__)

UNIIR_REPO = "TIGER-Lab/UniIR"


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A released UniIR checkpoint and what it reproduces (M-BEIR average Recall, x100)."""

    name: str
    filename: str  # in the Hub model repo UNIIR_REPO
    model: str  # uniir registry name
    size_bytes: int  # approximate (spec section 6)
    global_avg: float  # reproduced with the released weights (third-party, pyserini 2cr)
    local_avg: float
    paper_global: float  # the paper's numbers (weights since lost and retrained)
    paper_local: float
    convertible: bool  # False until its model family can be converted


# Averages from reference/mbeir_released_checkpoints_reproduction.csv and the paper (spec 11.3).
CHECKPOINTS: dict[str, ReleasedCheckpoint] = {
    c.name: c
    for c in (
        ReleasedCheckpoint("clip-sf-large", "checkpoint/CLIP_SF/clip_sf_large.pth", "clip_sf", 5_130_000_000, 47.5, 50.2, 48.9, 50.6, True),
        ReleasedCheckpoint("blip-ff-large", "checkpoint/BLIP_FF/blip_ff_large.pth", "blip_ff", 7_490_000_000, 44.3, 46.5, 45.5, 46.8, True),
    )
}


@dataclass
class CheckpointReport:
    spec: ReleasedCheckpoint
    pth: Path
    checkpoint_dir: Path | None = None
    converted_now: bool = False


def get_checkpoint_spec(name: str) -> ReleasedCheckpoint:
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise ConfigError(f"unknown checkpoint {name!r}: choose from {', '.join(CHECKPOINTS)} (see --list)") from None


def download_checkpoint(
    name: str,
    *,
    out_dir: Path | None = None,
    revision: str | None = None,
    check_disk: bool = True,
    force: bool = False,
    progress: ProgressCallback | None = None,
    keep_training_state: bool = False,
) -> CheckpointReport:
    """Download a released `.pth` into the Hub cache and convert it to a uniir checkpoint folder.

    A checkpoint whose model family cannot be loaded yet raises `NotImplementedYetError`
    after the download, naming the kept `.pth`. An existing converted folder is kept unless `force`.
    `keep_training_state` keeps BLIP's momentum encoders and queues (for fine-tuning).
    """
    spec = get_checkpoint_spec(name)
    out_dir = Path(out_dir) if out_dir is not None else Path("checkpoints") / spec.name
    if check_disk:
        listing = hub_listing(UNIIR_REPO, "model", revision, paths=[spec.filename]) or {}
        size = (listing.get(spec.filename) or RemoteFile(spec.filename, spec.size_bytes, None)).size or spec.size_bytes
        cached = cached_path(UNIIR_REPO, spec.filename, "model", revision) is not None
        done = (out_dir / "model.json").is_file() and not force
        check_free_space({
            hub_cache_dir(): (0 if cached else size, "checkpoint download"),
            # weights only: the .pth also holds two AdamW moments per weight
            out_dir: (0 if done or not spec.convertible else size // 3, "converted checkpoint"),
        })
    pth = hub_download(UNIIR_REPO, spec.filename, repo_type=None, revision=revision, progress=progress, hint=CACHE_HINT)
    report = CheckpointReport(spec, pth)
    if not spec.convertible:
        raise NotImplementedYetError(
            f"downloaded {spec.name} to {pth}, but its model family cannot be converted or loaded yet; "
            "the .pth is kept in the Hugging Face cache"
        )
    if (out_dir / "model.json").is_file() and not force:
        report.checkpoint_dir = out_dir
        return report
    report.checkpoint_dir = convert_released(pth, out_dir, keep_training_state=keep_training_state)
    report.converted_now = True
    return report


def convert_released(pth: Path, out_dir: Path, *, keep_training_state: bool = False) -> Path:
    """THE call site of the released-checkpoint conversion (issue #3), the steps of `uniir convert`.

    `uniir_cli.registry.load_model` reads the `.pth` without executing pickled code and maps
    its weights strictly; `save_pretrained` writes model.safetensors + model.json only.
    """
    from uniir_cli.registry import load_model

    log.info("converting %s -> %s", pth, out_dir)
    return Path(load_model(pth, keep_training_state=keep_training_state).save_pretrained(out_dir))
