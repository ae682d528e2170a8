"""`uniir data import`: an M-BEIR-layout tree from the rows `import_source` reads.

Every row's query -> positive (and, for captioned images, positive -> query) becomes a
query of the task its modalities make (text -> image is task 0, image -> text task 3, ...).
Rows of one group are one entity: each of its queries of a task has all of that task's
positives of the group as relevant. Groups are split train/val/test by a seeded shuffle (or
by the split column). Written per split and pair: queries, one local pool per pair (every
candidate of the pair's candidate modality, all splits: the whole collection is searched),
qrels; the union pools (every candidate), the train and union files, an instruction file and
`datasets.toml` declaring the dataset. The tree is built in a sibling folder, validated,
and renamed into place: the output appears only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uniir_cli.data import benchmark as bm
from uniir_cli.data.catalog import DATASETS_FILE, MAX_DATASET_ID, SLUG_RE
from uniir_cli.data.import_source import SPLITS, Side, Source
from uniir_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Instructions per task, four each as M-BEIR's file has ({name}: the dataset's display name).
INSTRUCTIONS: dict[int, tuple[str, ...]] = {
    0: ("Find the {name} image that matches this description.", "Retrieve an image from {name} for this caption.",
        "Which {name} image does this text describe?", "Show the {name} picture this caption is about."),
    1: ("Find the {name} text that answers or matches this text.", "Retrieve a passage from {name} for this text.",
        "Which {name} text is relevant to this one?", "Find the matching {name} text."),
    2: ("Find the {name} entry (image and text) that matches this description.",
        "Retrieve an image with its text from {name} for this query.",
        "Which {name} entry does this text describe?", "Find the {name} item this text is about."),
    3: ("Find the {name} caption that describes this image.", "Retrieve the text from {name} that matches this image.",
        "Which {name} description fits this picture?", "Write out the {name} caption of this image."),
    4: ("Find the {name} image that shows the same thing as this image.", "Retrieve a matching image from {name}.",
        "Which {name} image corresponds to this one?", "Find the {name} picture of the same item."),
    6: ("Find the {name} text that answers this image and question.", "Retrieve a {name} passage for this image and text.",
        "Which {name} text matches this image with its words?", "Find the {name} text this query asks for."),
    7: ("Find the {name} image this image and text describe.", "Retrieve the {name} image that fits this image and text.",
        "Which {name} image does this query point to?", "Find the {name} picture this query asks for."),
    8: ("Find the {name} entry (image and text) for this image and text.",
        "Retrieve a {name} item with image and text matching this query.",
        "Which {name} entry matches this image and text?", "Find the {name} item this query asks for."),
}


@dataclass(frozen=True)
class ImportSettings:
    slug: str
    dataset_id: int
    name: str = ""  # display name; the slug when empty
    domain: str = ""
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: int = 2023
    copy_images: bool = False  # False: mbeir_images/<slug>_images links to the table's folder

    def check(self) -> None:
        if not SLUG_RE.fullmatch(self.slug):
            raise ConfigError(f"--name {self.slug!r}: lower-case letters and digits, words joined by '-' (it names the files)")
        if self.slug in bm.DATASET_BY_SLUG:
            raise ConfigError(f"--name {self.slug!r} is M-BEIR's; choose another name")
        if not 10 <= self.dataset_id <= MAX_DATASET_ID:
            raise ConfigError(f"--id {self.dataset_id}: ids 0-9 are M-BEIR's; choose one in 10..{MAX_DATASET_ID}")
        unknown = set(self.fractions) - set(SPLITS)
        if unknown or any(v < 0 for v in self.fractions.values()) or not sum(self.fractions.values()) > 0:
            raise ConfigError(f"--split-fractions {self.fractions}: fractions >= 0 of {', '.join(SPLITS)}, not all 0")
        if not self.fractions.get("test"):
            raise ConfigError("--split-fractions: the test split needs a share (evaluation reads it)")


@dataclass
class _Query:
    qid: str
    side: Side
    task: int
    positives: list[str]
    line: int
    record_id: str | None


@dataclass
class ImportResult:
    root: Path
    pairs: list[str]  # pair names
    queries: dict[str, int]  # split -> queries
    candidates: int


def import_tree(source: Source, out: Path, settings: ImportSettings) -> ImportResult:
    """Write the tree to `out` (which must not exist), validated, or nothing."""
    settings.check()
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists; choose a new --out folder (the import writes a whole tree)")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} does not exist; create it first")
    split_of = _assign_splits(source, settings)
    candidates, dids = _candidates(source, settings)
    queries = _queries(source, settings, split_of, dids)
    if not queries["test"]:
        raise DataError(f"{source.table}: no test queries: give more rows, a larger test share (--split-fractions) "
                        "or a split column")
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        files = _tree_files(settings, candidates, queries)
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        _place_images(source, staging, settings)
        from uniir_cli.data.tree_check import validate_data

        report = validate_data(staging, splits=[s for s in SPLITS if queries[s]], quick=False)
        if report.errors:
            first = next(issue.message for _, issue in report.issues() if issue.severity == "error")
            raise DataError(f"the imported tree does not validate ({report.errors} error(s)), first: {first}")
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    pairs = sorted({f"{settings.slug}_task{q.task}" for q in queries["test"]})
    return ImportResult(out, pairs, {s: len(v) for s, v in queries.items()}, len(candidates))


def _assign_splits(source: Source, settings: ImportSettings) -> dict[str, str]:
    """group -> split: the split column where given (one per group), else a seeded shuffle of
    the groups cut by the fractions (the test split gets at least one group)."""
    given: dict[str, tuple[str, int]] = {}
    for row in source.rows:
        if row.split is None:
            continue
        seen = given.setdefault(row.group, (row.split, row.line))
        if seen[0] != row.split:
            raise DataError(f"{source.table}:{row.line}: group {row.group!r} is in split {row.split!r} here but "
                            f"{seen[0]!r} on line {seen[1]}; a group stays in one split")
    groups = list(dict.fromkeys(row.group for row in source.rows if row.group not in given))
    random.Random(settings.seed).shuffle(groups)
    total = sum(settings.fractions.get(s, 0.0) for s in SPLITS)
    counts = {s: int(len(groups) * settings.fractions.get(s, 0.0) / total) for s in SPLITS}
    counts["test"] = max(counts["test"], 1 if groups else 0)
    counts["train" if settings.fractions.get("train") else "test"] += len(groups) - sum(counts.values())
    split_of = {group: split for group, (split, _) in given.items()}
    start = 0
    for split in ("test", "val", "train"):
        for group in groups[start : start + max(counts[split], 0)]:
            split_of[group] = split
        start += max(counts[split], 0)
    return split_of


def _candidates(source: Source, settings: ImportSettings) -> tuple[list[dict], dict[tuple, str]]:
    """Distinct candidates (every positive; for captioned images each caption too), numbered from 1."""
    records: list[dict] = []
    dids: dict[tuple, str] = {}

    def add(side: Side, row_id: str | None) -> None:
        key = (side.text, side.image)
        if key not in dids:
            did = f"{settings.dataset_id}:{len(records) + 1}"
            dids[key] = did
            records.append({"did": did, "txt": side.text, "img_path": _image_ref(side.image, settings),
                            "modality": side.modality, "src_content": json.dumps({"id": row_id}) if row_id else None})

    for row in source.rows:
        add(row.positive, row.record_id)
        if source.captioned:
            add(row.query, row.record_id)
    return records, dids


def _queries(source: Source, settings: ImportSettings, split_of: dict[str, str], dids: dict[tuple, str]) -> dict[str, list[_Query]]:
    """Per split, the distinct queries of each (group, task) with all the group's positives of that task."""
    directed = []  # (row, query side, positive side)
    for row in source.rows:
        directed.append((row, row.query, row.positive))
        if source.captioned:
            directed.append((row, row.positive, row.query))
    by_key: dict[tuple, _Query] = {}
    positives: dict[tuple[str, int], list[str]] = {}
    for row, query, positive in directed:
        task = bm.TASK_BY_MODALITIES.get((query.modality, positive.modality))
        if task is None:
            raise DataError(f"{source.table}:{row.line}: a {query.modality} query with a {positive.modality} positive "
                            f"is no M-BEIR task; tasks are {', '.join(bm.task_name(t) for t in bm.TASKS)}")
        group_positives = positives.setdefault((row.group, task), [])
        did = dids[(positive.text, positive.image)]
        if did not in group_positives:
            group_positives.append(did)
        key = (row.group, task, query.text, query.image)
        if key not in by_key:
            by_key[key] = _Query("", query, task, group_positives, row.line, row.record_id)
    out: dict[str, list[_Query]] = {s: [] for s in SPLITS}
    for (group, _, _, _), query in by_key.items():
        out[split_of[group]].append(query)
    number = 0
    for split in SPLITS:
        out[split].sort(key=lambda q: (q.task, q.line))
        for query in out[split]:
            number += 1
            query.qid = f"{settings.dataset_id}:{number}"
    return out


def _image_ref(image: str | None, settings: ImportSettings) -> str | None:
    return f"{bm.IMAGES_DIR}/{settings.slug}_images/{image}" if image else None


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _query_record(query: _Query, settings: ImportSettings) -> dict:
    return {"qid": query.qid, "query_txt": query.side.text, "query_img_path": _image_ref(query.side.image, settings),
            "query_modality": query.side.modality, "query_src_content": json.dumps({"id": query.record_id}) if query.record_id else None,
            "pos_cand_list": list(query.positives), "neg_cand_list": [], "task_id": query.task}


def _qrels(queries: Iterable[_Query]) -> str:
    return "".join(f"{q.qid} 0 {did} 1 {q.task}\n" for q in queries for did in q.positives)


def _tree_files(settings: ImportSettings, candidates: list[dict], queries: dict[str, list[_Query]]) -> dict[str, str]:
    slug, name = settings.slug, settings.name or settings.slug
    tasks = sorted({q.task for split in SPLITS for q in queries[split]})
    dataset = bm.Dataset(settings.dataset_id, name, slug, settings.domain)
    files: dict[str, str] = {}
    everything = _jsonl(candidates)
    for task in tasks:
        pair = bm.EvalPair(dataset, task, 5)
        wanted = bm.TASKS[task][1]
        files[pair.pool_file("test")] = _jsonl(c for c in candidates if c["modality"] == wanted)
        for split in ("val", "test"):
            own = [q for q in queries[split] if q.task == task]
            if own:
                files[pair.query_file(split)] = _jsonl(_query_record(q, settings) for q in own)
                files[pair.qrels_file(split)] = _qrels(own)
    for split in SPLITS:
        files[bm.union_pool_file(split)] = everything
    train = queries["train"]
    if train:
        files[bm.train_query_file(dataset)] = _jsonl(_query_record(q, settings) for q in train)
        files[bm.train_qrels_file(dataset)] = _qrels(train)
        files[bm.UNION_TRAIN_QUERIES] = files[bm.train_query_file(dataset)]
    if queries["val"]:
        files[bm.UNION_VAL_QUERIES] = _jsonl(_query_record(q, settings) for q in queries["val"])
    header = "query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\tprompt_3\tprompt_4\n"
    rows = ["\t".join([*bm.TASKS[t], name, str(settings.dataset_id), *(p.format(name=name) for p in INSTRUCTIONS[t])]) + "\n"
            for t in tasks]
    files[bm.INSTRUCTIONS_FILE] = header + "".join(rows)
    files[DATASETS_FILE] = (f"# written by uniir data import\n[[dataset]]\nslug = {json.dumps(slug)}\nname = {json.dumps(name)}\n"
                            f"domain = {json.dumps(settings.domain)}\nid = {settings.dataset_id}\n")
    return files


def _place_images(source: Source, staging: Path, settings: ImportSettings) -> None:
    """mbeir_images/<slug>_images: a link to the table's folder (images stay in place), or a
    copy of just the images the rows name."""
    target = staging / bm.IMAGES_DIR / f"{settings.slug}_images"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not settings.copy_images:
        target.symlink_to(source.base.resolve(), target_is_directory=True)
        return
    images = {side.image for row in source.rows for side in (row.query, row.positive) if side.image}
    for image in sorted(images):
        destination = target / image
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.base / image, destination)
