"""`uniir download`: M-BEIR and the released UniIR checkpoints from the Hugging Face Hub.

Subcommands: `uniir download mbeir ...` and `uniir download checkpoint NAME`. The library
(`uniir_cli.download.mbeir`) reports progress through a callback; this module draws the bars and
prints the summary.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from uniir_cli.commands import options
from uniir_cli.commands.boundary import with_error_boundary
from uniir_cli.commands.options import DataDir, Force
from uniir_cli.errors import ConfigError

app = typer.Typer(
    help=(
        "Download M-BEIR and the released UniIR checkpoints from the Hugging Face Hub.\n\n"
        "Example: uniir download mbeir --data-dir /data/M-BEIR\n\n"
        "Example: uniir download checkpoint clip-sf-large"
    ),
    no_args_is_help=True,
)

out = Console(soft_wrap=True)  # long paths stay on one line, so they can be copied
err = Console(stderr=True)


def _say(text: str, style: str | None = None) -> None:
    """One line of the summary, verbatim: paths and messages may contain [brackets]."""
    out.print(text, style=style, markup=False, highlight=False)

_SMALL_FILE = 50_000_000  # finished download bars below this size are removed to keep the screen short


class What(str, Enum):
    metadata = "metadata"
    images = "images"
    all = "all"


class _Bars:
    """Rich progress bars (bytes, bytes/s, ETA), one per (stage, file)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.removed: set[tuple[str, str]] = set()
        self.started = False

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, event: Any) -> None:
        if not self.started:  # started on the first event: nothing drawn when nothing happens
            self.progress.start()
            self.started = True
        key = (event.stage, event.name)
        if key in self.removed:
            return
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = self.progress.add_task(escape(f"{event.stage:8} {event.name}"), total=event.total)
        self.progress.update(task, completed=event.done, total=event.total)
        if event.total is not None and event.done >= event.total and event.stage == "download" and event.total < _SMALL_FILE:
            self.progress.remove_task(task)
            self.removed.add(key)


def _bytes(n: int) -> str:
    from uniir_cli.download.disk import human_bytes

    return human_bytes(n)


@app.command("mbeir")
@with_error_boundary
def mbeir(
    data_dir: DataDir = None,
    what: Annotated[What, typer.Option("--what", help="metadata (queries, pools, qrels, instructions: a few GB), images (~169 GB of parts), or all.")] = What.all,
    splits: Annotated[Optional[list[str]], typer.Option("--splits", callback=options.comma_separated, help="Splits to fetch: train, val, test (repeat or comma-separate). Default: all.")] = None,
    datasets: Annotated[
        Optional[list[str]],
        typer.Option("--datasets", callback=options.comma_separated, help="Datasets to fetch (slugs, e.g. mscoco,cirr; repeat or comma-separate); only their files and image folders. Union (global) files come only without it."),
    ] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub revision (branch, tag or commit) of TIGER-Lab/M-BEIR.")] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option("--from-dir", file_okay=False, help="Use a local clone or mirror of the dataset instead of the Hub."),
    ] = None,
    copy: Annotated[bool, typer.Option("--copy", metavar="", help="Copy metadata files (and an extracted mirror's image folders) instead of linking them.")] = False,
    low_disk: Annotated[
        bool,
        typer.Option(
            "--low-disk",
            metavar="", help=(
                "Download each image part only when the extraction reaches it and delete it from the Hub cache once read: "
                "peak disk is one part (45 GiB) plus the images instead of all parts (169 GB) plus the images. "
                "An interrupted --low-disk run has to download again the parts before the one it stopped in "
                "(the gzip stream cannot be re-entered); files already written are not rewritten."
            ),
        ),
    ] = False,
    no_disk_check: Annotated[
        bool, typer.Option("--no-disk-check", metavar="", help="Skip the free-disk-space checks (before starting and before each extracted file).")
    ] = False,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", metavar="", help="Skip the checks at the end (validation, and that the selected records' images exist).")
    ] = False,
    force: Force = False,
) -> None:
    """Download M-BEIR into --data-dir: metadata linked from the Hub cache, images streamed from the tar parts.

    Run it again to resume. Honours HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE.
    Disk: by default the parts stay in the Hub cache (169 GB) next to the images (about 177 GB);
    --low-disk keeps one part at a time.

    Example: uniir download mbeir --what metadata --splits test --data-dir /data/M-BEIR
    """
    from uniir_cli.download.mbeir import download_mbeir

    if data_dir is None:
        raise ConfigError("--data-dir (or UNIIR_DATA_DIR) is required: the folder to download M-BEIR into")
    with _Bars() as bars:
        report = download_mbeir(
            data_dir,
            what=what.value,
            splits=splits,
            datasets=datasets,
            revision=revision,
            from_dir=from_dir,
            copy=copy,
            check_disk=not no_disk_check,
            force=force,
            low_disk=low_disk,
            progress=bars,
        )
    _print_mbeir(report)
    if not no_validate:
        _print_validation(report, splits, datasets)
        if what is not What.metadata:
            _print_image_check(report.data_dir, splits, datasets)
    _print_inventory(report.data_dir)


def _print_mbeir(report: Any) -> None:
    _say(f"source: {report.source}")
    if report.metadata:
        counts: dict[str, int] = {}
        for how in report.metadata.values():
            counts[how] = counts.get(how, 0) + 1
        _say(f"metadata: {len(report.metadata)} files ({', '.join(f'{n} {how}' for how, n in sorted(counts.items()))})")
    if report.missing:
        shown = ", ".join(report.missing[:5]) + (f", ... ({len(report.missing) - 5} more)" if len(report.missing) > 5 else "")
        _say(f"not in the source: {shown}", style="yellow")
    stats = report.images
    if stats is not None:
        if stats.already_complete:
            _say("images: already extracted (nothing to do)")
        else:
            _say(
                f"images: {stats.written} files written ({_bytes(stats.bytes_written)}), {stats.skipped_existing} already present, "
                f"{stats.skipped_unselected} outside the selected datasets; {stats.parts_hashed} part(s) verified now"
            )
    if report.image_folders_linked:
        _say(f"images: {', '.join(report.image_folders_linked)} linked from the mirror")
    for note in report.notes:
        _say(f"note: {note}")


def _print_validation(report: Any, splits: list[str] | None, datasets: list[str] | None) -> None:
    from uniir_cli.download.selection import Selection
    from uniir_cli.download.verify import run_validation

    selection = Selection.parse(splits, datasets)
    result, note = run_validation(report.data_dir, selection.splits)
    if result is None:
        _say(f"note: {note}")
        return
    slugs = selection.datasets
    # With --datasets, the other datasets' files and the union files are absent on purpose.
    rows = [r for r in result.rows if not slugs or r.name == "instructions" or r.name.startswith(slugs)]
    errors = sum(r.errors for r in rows)
    warnings = sum(r.warnings for r in rows)
    if errors == 0:
        _say(f"validation: ok ({warnings} warning(s)); details: uniir validate --data-dir {report.data_dir}")
        return
    _say(f"validation: {errors} error(s), {warnings} warning(s); details: uniir validate --data-dir {report.data_dir}", style="red")
    shown = 0
    for row in rows:
        for issue in row.issues:
            if shown < 5 and issue.severity == "error":
                _say(f"  {row.split}/{row.name}: {issue.message}")
                shown += 1


def _print_image_check(data_dir: Path, splits: list[str] | None, datasets: list[str] | None) -> None:
    """Existence of the images that the selected datasets' records name (after extracting or linking)."""
    from uniir_cli.download.selection import Selection
    from uniir_cli.download.verify import check_images, metadata_present

    if not metadata_present(data_dir):
        _say("note: images not checked against the records: no metadata in --data-dir (download it with --what metadata)")
        return
    result = check_images(data_dir, Selection.parse(splits, datasets))
    if result.missing == 0:
        _say(f"images: all {result.checked:,} image references of the selected records ({result.files} files) exist")
        return
    _say(
        f"images: {result.missing:,} image file(s) named by the selected records are missing ({result.checked:,} references "
        "checked); run the same command again to finish the extraction (if they stay missing, the archive or mirror lacks them)",
        style="red",
    )
    for example in result.examples:
        _say(f"  missing: {example}")


def _print_inventory(data_dir: Path) -> None:
    from uniir_cli.download.verify import inventory

    rows, shared = inventory(data_dir)
    table = Table(title=escape(f"M-BEIR in {data_dir}"), title_justify="left")
    for column in ("dataset", "test pairs", "val pairs", "train", "images"):
        table.add_column(column)
    mark = {True: "yes", False: "-"}
    for row in rows:
        table.add_row(row.name, f"{row.test_pairs[0]}/{row.test_pairs[1]}", f"{row.val_pairs[0]}/{row.val_pairs[1]}", mark[row.train], mark[row.images])
    out.print(table)
    _say("shared: " + ", ".join(f"{Path(name).name} {mark[ok]}" for name, ok in shared.items()))


@app.command("checkpoint")
@with_error_boundary
def checkpoint(
    name: Annotated[Optional[str], typer.Argument(help="Released checkpoint (clip-sf-large, blip-ff-large) or MLLM embedder (e5v, llava-phi3-mini, gme-qwen2vl-2b, vlm2vec-qwen2vl-2b).")] = None,
    list_: Annotated[bool, typer.Option("--list", metavar="", help="List the released checkpoints, their sizes and what they reproduce.")] = False,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", file_okay=False, help="uniir checkpoint folder to write. Default: checkpoints/NAME.")
    ] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub revision of TIGER-Lab/UniIR (or of the MLLM repo).")] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option("--from-dir", file_okay=False, help="MLLM: a local copy of the repo (checked, then used with --checkpoint) instead of the Hub."),
    ] = None,
    no_disk_check: Annotated[bool, typer.Option("--no-disk-check", metavar="", help="Skip the free-disk-space check.")] = False,
    force: Force = False,
    keep_training_state: Annotated[
        bool, typer.Option("--keep-training-state", metavar="", help="BLIP: keep the momentum encoders and queues (to fine-tune further).")
    ] = False,
) -> None:
    """Download a released UniIR checkpoint and convert it into a uniir checkpoint folder, or an
    MLLM embedder's Hub repo into the Hugging Face cache (used as it is: `uniir eval --preset e5v`).

    Example: uniir download checkpoint clip-sf-large --out checkpoints/clip-sf-large

    Example: uniir download checkpoint e5v
    """
    from uniir_cli.download.checkpoint import CHECKPOINTS, download_checkpoint
    from uniir_cli.download.hub_models import HUB_MODELS, download_hub_model

    if list_:
        table = Table(title="Released UniIR checkpoints (Hub repo TIGER-Lab/UniIR)", title_justify="left")
        for column in ("name", "size", "model", "global", "local", "paper g/l"):
            table.add_column(column, no_wrap=True)
        for spec in CHECKPOINTS.values():
            table.add_row(
                spec.name, f"~{_bytes(spec.size_bytes)}", spec.model,
                str(spec.global_avg), str(spec.local_avg), f"{spec.paper_global}/{spec.paper_local}",
            )
        out.print(table)
        for spec in CHECKPOINTS.values():
            usable = "" if spec.convertible else " (download only: this model family cannot be loaded yet)"
            _say(f"{spec.name}: {spec.filename}{usable}")
        _say(
            "global / local: M-BEIR average Recall@5 (R@10 for Fashion200K, FashionIQ) over the 16 pairs, x100, that "
            "these released weights reproduce (pyserini); paper: the published numbers (original weights, since retrained)."
        )
        _say("\nMLLM embedders (Hugging Face repos, read as they are, into the Hugging Face cache):")
        for hub in HUB_MODELS.values():
            repo = hub.repo + (f" + base {hub.base}" if hub.base else "")
            _say(f"{hub.name}: {repo}, ~{_bytes(hub.size_bytes)}, --preset {hub.preset}; {hub.reproduces}")
        return
    if name is None:
        raise ConfigError(f"name a checkpoint ({', '.join([*CHECKPOINTS, *HUB_MODELS])}) or pass --list")
    if from_dir is not None and name not in HUB_MODELS:
        raise ConfigError(f"--from-dir is for the MLLM embedders ({', '.join(HUB_MODELS)}); convert a local .pth with `uniir convert`")
    if name in HUB_MODELS:
        from uniir_cli.download.hub_models import check_folder

        if from_dir is not None:
            check_folder(from_dir, adapter=HUB_MODELS[name].base is not None)
            _say(f"checked: {from_dir}")
            option = "--set model.options.adapter=" if HUB_MODELS[name].base else "--checkpoint "
            _say(f"use: uniir eval --preset {HUB_MODELS[name].preset} {option}{from_dir}")
            return
        folders = download_hub_model(name, revision=revision, check_disk=not no_disk_check)
        for folder in folders:
            _say(f"downloaded: {folder}")
        _say(f"use: uniir eval --preset {HUB_MODELS[name].preset}   (or --checkpoint {folders[-1 if HUB_MODELS[name].base else 0]})")
        return
    with _Bars() as bars:
        report = download_checkpoint(
            name, out_dir=out_dir, revision=revision, check_disk=not no_disk_check, force=force, progress=bars,
            keep_training_state=keep_training_state,
        )
    _say(f"downloaded: {report.pth}")
    state = "converted" if report.converted_now else "already converted"
    _say(f"{state}: {report.checkpoint_dir}")
    _say(f"use: --checkpoint {report.checkpoint_dir}")
