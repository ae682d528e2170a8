"""`uniir data import --into`: an imported dataset merged into an existing tree (M-BEIR or
your own), so that its candidates join the union pools and its pairs are evaluated beside
the others.

The dataset's own files (queries, local pools, qrels, its image folder) are added; the
tree's shared files (union pools, union train/val queries, instructions, datasets.toml) get
the dataset's lines appended. Everything is prepared in `<tree>/.uniir-import-<slug>/`
first (a shared file as a copy of the tree's plus the new lines), then swapped in by
renames that a journal records, the tree's files moved aside; the new pairs are validated
and, on any failure, every rename is undone. A merge that was killed half-way is undone the
same way by the next `--into` of that dataset, which then merges anew.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from uniir_cli import atomic
from uniir_cli.data import benchmark as bm
from uniir_cli.data.catalog import DATASETS_FILE, load_catalog
from uniir_cli.data.import_source import Source
from uniir_cli.data.import_tree import ImportResult, ImportSettings, import_tree
from uniir_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# The tree's files an imported dataset adds lines to (instructions: its rows, without the header).
SHARED_FILES = (*(bm.union_pool_file(split) for split in bm.SPLITS), bm.UNION_TRAIN_QUERIES, bm.UNION_VAL_QUERIES,
                bm.INSTRUCTIONS_FILE, DATASETS_FILE)
JOURNAL = "journal.json"


def import_into(source: Source, tree: Path, settings: ImportSettings) -> ImportResult:
    """Import `source` as a new dataset of the existing `tree`: written and validated on its
    own under the staging folder, then merged (`merge_into`); the tree is unchanged on failure."""
    settings.check()
    tree = Path(tree)
    staging = tree / f".uniir-import-{settings.slug}"
    if staging.exists():
        undo_merge(tree, staging)  # an earlier merge of this dataset was killed
    check_can_merge(tree, settings.slug, settings.dataset_id)
    staging.mkdir()
    try:
        imported = import_tree(source, staging / "tree", settings)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    merge_into(tree, imported.root, settings.slug, imported.pairs)
    return ImportResult(tree, imported.pairs, imported.queries, imported.candidates)


def check_can_merge(tree: Path, slug: str, dataset_id: int) -> None:
    """A ConfigError, before anything is written, when `tree` is no folder or already has the
    dataset's name or id."""
    tree = Path(tree)
    if not tree.is_dir():
        raise ConfigError(f"--into {tree}: no such folder; pass an existing data tree, or --out for a new one")
    catalog = load_catalog(tree)
    for dataset in catalog.datasets:
        if dataset.slug == slug or dataset.id == dataset_id:
            where = "M-BEIR's" if dataset.id in bm.DATASET_BY_ID else f"declared in {tree / DATASETS_FILE}"
            raise ConfigError(f"--into {tree}: the tree already has dataset {dataset.slug!r} (id {dataset.id}, {where}); "
                              "choose another --name and --id")


def merge_into(tree: Path, imported: Path, slug: str, pairs: list[str]) -> None:
    """Merge the tree `imported` (written by `import_tree` inside the staging folder) into
    `tree` and validate the new `pairs`, or leave `tree` as it was."""
    tree, imported = Path(tree), Path(imported)
    staging = imported.parent
    splits = [s for s in bm.SPLITS if any((imported / "query" / s).glob("*.jsonl"))]
    try:
        targets = _prepare(tree, imported, staging)
        atomic.write_text(staging / JOURNAL, json.dumps({"targets": targets}))
        for relative in targets:
            _swap_in(tree, staging, relative)
        from uniir_cli.data.tree_check import validate_data

        report = validate_data(tree, splits=splits, tasks=pairs, quick=True)
        if report.errors:
            first = next(issue.message for _, issue in report.issues() if issue.severity == "error")
            raise DataError(f"{tree} does not validate after merging {slug} ({report.errors} error(s)), first: {first}; "
                            "the merge was undone")
    except BaseException:
        undo_merge(tree, staging)
        raise
    shutil.rmtree(staging)


def undo_merge(tree: Path, staging: Path) -> None:
    """Put back the tree's files a merge moved aside and remove what it added; then drop the
    staging folder. Safe on a merge killed at any point."""
    journal = staging / JOURNAL
    if journal.is_file():
        for relative in reversed(json.loads(journal.read_text())["targets"]):
            target, old, new = tree / relative, staging / "old" / relative, staging / "new" / relative
            if old.exists() or old.is_symlink():
                os.replace(old, target)
            elif not (new.exists() or new.is_symlink()) and (target.exists() or target.is_symlink()):
                atomic.remove(target)  # added by the merge
        log.warning("undid the unfinished merge in %s", staging)
    shutil.rmtree(staging, ignore_errors=True)


def _prepare(tree: Path, imported: Path, staging: Path) -> list[str]:
    """Write the merged version of every file the merge touches under staging/new; returns
    their paths relative to the tree (the dataset's own files first, datasets.toml last)."""
    new = staging / "new"
    own, shared = [], []
    for path in sorted(imported.rglob("*")):
        relative = path.relative_to(imported).as_posix()
        image_folder = relative.startswith(f"{bm.IMAGES_DIR}/") and relative.count("/") == 1  # moves as one
        if relative.startswith(f"{bm.IMAGES_DIR}/") and not image_folder:
            continue
        if path.is_dir() and not path.is_symlink() and not image_folder:
            continue
        destination = new / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if relative in SHARED_FILES:
            _merged_copy(tree / relative, path, destination, header=relative == bm.INSTRUCTIONS_FILE)
            shared.append(relative)
            continue
        if (tree / relative).exists() or (tree / relative).is_symlink():
            raise ConfigError(f"--into {tree}: {tree / relative} exists already; choose another --name")
        os.replace(path, destination)
        own.append(relative)
    shared.sort(key=lambda relative: relative == DATASETS_FILE)  # declared last: the files it names are in by then
    return own + shared


def _merged_copy(existing: Path, lines: Path, destination: Path, header: bool) -> None:
    """`existing` (when the tree has it) followed by the lines of `lines` (its first line
    skipped when `header` and the tree has the file)."""
    added = lines.read_bytes()
    if existing.is_file():
        shutil.copyfile(existing, destination)
        if header:
            added = added.split(b"\n", 1)[1] if b"\n" in added else b""
        with open(destination, "r+b") as out:
            if out.seek(0, os.SEEK_END) > 0:
                out.seek(-1, os.SEEK_END)
                if out.read(1) != b"\n":
                    out.write(b"\n")
            out.write(added)
    else:
        destination.write_bytes(added)


def _swap_in(tree: Path, staging: Path, relative: str) -> None:
    target, old, new = tree / relative, staging / "old" / relative, staging / "new" / relative
    if target.exists() or target.is_symlink():
        old.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, old)
    target.parent.mkdir(parents=True, exist_ok=True)
    if new.is_symlink():  # the image folder's link: made anew, so a tree whose images are on another disk works
        link = os.readlink(new)
        new.unlink()
        os.symlink(link, target, target_is_directory=True)
        return
    try:
        os.replace(new, target)
    except OSError as exc:
        raise DataError(f"cannot move {new} to {target} ({exc.strerror}); a folder of the tree on another disk? "
                        "Import with --out and merge by hand") from None
