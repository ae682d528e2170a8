"""A synthetic, learnable M-BEIR written in the real on-disk layout.

`uniir demo` and the tests of every pipeline step need a benchmark that (a) exercises every
code path of the real one (10 datasets, 16 (dataset, task) pairs, text / image / image+text
queries and candidates, local and union pools, the MSCOCO val/test pools, the OVEN/InfoSeek
cross-dataset positives, up-sampled union train, hard negatives), (b) is small enough to
generate in seconds, and (c) has rules a tiny model can learn on a CPU in minutes. Scenes
and texts come from `uniir_cli.data.synthetic.scenes`, records from `synthetic_records`; this module
writes the files.

Every record carries its ground truth in `src_content` (`{"scene": ...}`; entity, answer and
scene for OVEN/InfoSeek; reference and target scenes for CIRR/FashionIQ) except MSCOCO queries,
whose `query_src_content` is null as in the real files (their images are the task-0 pool
images), and one VisualNews candidate that has no `src_content` key at all (a real quirk).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.data import benchmark as bm
from uniir_cli.data.synthetic import scenes as sc
from uniir_cli.data.benchmark import DATASETS, EVAL_PAIRS
from uniir_cli.data.synthetic.records import ABSENT, Builder, Cand, Query, SizeSpec, id_key, modality
from uniir_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = "SYNTHETIC.json"
_STAGING = ".synthetic-staging"
MAX_QUERIES_PER_PAIR = 80  # beyond this the 432 scenes of a domain cannot keep eval pools unambiguous
# Up-sampling of the small datasets in the union train file (upstream: WebQA, EDIS, NIGHTS,
# FashionIQ, CIRR are sampled with replacement up to a fixed target); here as a factor.
UPSAMPLE_FACTORS = {"webqa": 3.0, "edis": 2.0, "nights": 3.0, "fashioniq": 3.0, "cirr": 2.0}

__all__ = [
    "INSTRUCTIONS",
    "MARKER",
    "SIZES",
    "UPSAMPLE_FACTORS",
    "SizeSpec",
    "SyntheticSummary",
    "generate_synthetic_mbeir",
    "instructions_tsv",
    "parse_size",
]

SIZES = {
    "tiny": SizeSpec("tiny", test=4, val=3, train=8, distractors=1, entities=6),
    "demo": SizeSpec("demo", test=40, val=16, train=160, distractors=2, entities=36),
}


def parse_size(size: str | int) -> SizeSpec:
    """`"tiny"`, `"demo"` or a number of test queries per pair (1..MAX_QUERIES_PER_PAIR)."""
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    try:
        n = int(size)
    except (TypeError, ValueError):
        raise ConfigError(f"unknown synthetic size {size!r}: use tiny, demo or a number of test queries per pair") from None
    if not 1 <= n <= MAX_QUERIES_PER_PAIR:
        raise ConfigError(f"synthetic size {n} is out of range: use 1..{MAX_QUERIES_PER_PAIR} test queries per pair")
    val = max(2, (2 * n + 2) // 5)
    return SizeSpec(str(n), test=n, val=val, train=4 * n, distractors=1 if n < 10 else 2, entities=min(36, max(6, n)))


@dataclass
class SyntheticSummary:
    """What was written: records per text file, image count, bytes, time."""

    root: Path
    seed: int
    size: str
    image_size: int
    files: dict[str, int]  # relative path -> records (lines; rows for the tsv without header)
    images: int
    total_bytes: int
    seconds: float
    skipped: bool = False

    def records(self, prefix: str) -> int:
        """Total records of the text files whose path starts with `prefix`."""
        return sum(n for path, n in self.files.items() if path.startswith(prefix))

    def file_count(self, prefix: str) -> int:
        return sum(1 for path in self.files if path.startswith(prefix))


# ---------------------------------------------------------------------------------------
# Instructions: 4 per pair, in this project's own wording (keyed by EvalPair.name).

INSTRUCTIONS: dict[str, tuple[str, str, str, str]] = {
    "visualnews_task0": (
        "Retrieve the news photograph that this caption describes.",
        "Find the press photo that goes with this news caption.",
        "Which news image matches the caption below?",
        "Search the news archive for the picture described here.",
    ),
    "mscoco_task0": (
        "Find the everyday photo that this caption describes.",
        "Retrieve a common-scene picture matching the text.",
        "Which everyday image fits this description?",
        "Look up the ordinary photo this caption talks about.",
    ),
    "fashion200k_task0": (
        "Find the product photo of the fashion item described.",
        "Retrieve the clothing image that matches this product text.",
        "Which fashion picture fits the following description?",
        "Show me the garment image for this catalogue entry.",
    ),
    "webqa_task1": (
        "Find an encyclopedia passage that answers this question.",
        "Retrieve the wiki paragraph that contains the answer.",
        "Which reference text answers the question below?",
        "Look up a knowledge-base passage for this question.",
    ),
    "edis_task2": (
        "Find the news photo and headline that match this caption.",
        "Retrieve an illustrated news item for this caption.",
        "Which news image with its headline fits this text?",
        "Search for a captioned press photo described by this sentence.",
    ),
    "webqa_task2": (
        "Find a wiki picture with its caption that answers this question.",
        "Retrieve an encyclopedia image and text that answer the question.",
        "Which illustrated wiki entry answers the question below?",
        "Look up a captioned reference image for this question.",
    ),
    "visualnews_task3": (
        "Find the news caption written for this photo.",
        "Retrieve the caption a newspaper would print under this picture.",
        "Which news caption belongs to this image?",
        "Look up the press caption of the photo shown.",
    ),
    "mscoco_task3": (
        "Find a caption that describes this everyday photo.",
        "Retrieve a sentence describing this common scene.",
        "Which description fits this ordinary picture?",
        "Look up a plain caption for the image shown.",
    ),
    "fashion200k_task3": (
        "Find the product description of the item pictured.",
        "Retrieve the catalogue text for this fashion photo.",
        "Which clothing description matches this image?",
        "Look up the shop listing text for the garment shown.",
    ),
    "nights_task4": (
        "Find an image that looks nearly identical to this one.",
        "Retrieve the most visually similar everyday picture.",
        "Which photo is a near copy of the image shown?",
        "Look up a picture that is almost the same as this one.",
    ),
    "oven_task6": (
        "Find the encyclopedia article about the entity in this picture.",
        "Retrieve a wiki text that answers this question about the image.",
        "Which reference passage names what is shown here?",
        "Look up the wiki entry that identifies the pictured object.",
    ),
    "infoseek_task6": (
        "Find a wiki passage that answers this question about the pictured entity.",
        "Retrieve the encyclopedia text holding the answer for this image and question.",
        "Which article answers what is asked about this picture?",
        "Look up a reference paragraph answering my question on the image.",
    ),
    "fashioniq_task7": (
        "Find the fashion item that looks like this one after the requested change.",
        "Retrieve the product photo matching this item with the described edits.",
        "Which clothing image shows this piece altered as written?",
        "Look up a garment like the pictured one but with these changes.",
    ),
    "cirr_task7": (
        "Find the everyday image that matches this photo with the described edit.",
        "Retrieve a picture like this one, changed as the text says.",
        "Which photo shows this scene after the requested modification?",
        "Look up an image similar to the given one but with these changes.",
    ),
    "oven_task8": (
        "Find a wiki image with text that identifies the entity in this picture.",
        "Retrieve an encyclopedia picture and passage for what this image shows.",
        "Which illustrated wiki entry answers this question about the image?",
        "Look up a captioned reference image naming the pictured object.",
    ),
    "infoseek_task8": (
        "Find a wiki image with text that answers my question about this picture.",
        "Retrieve an illustrated encyclopedia entry holding the answer for this image.",
        "Which wiki picture and passage answer what is asked about the image?",
        "Look up a captioned reference entry answering the question on this image.",
    ),
}


def instructions_tsv() -> str:
    """`instructions/query_instructions.tsv`: header, then one row per pair in upstream order."""
    rows = ["query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\tprompt_3\tprompt_4"]
    for pair in EVAL_PAIRS:
        query_modality, cand_modality = pair.modalities
        cells = [query_modality, cand_modality, pair.dataset.name, str(pair.dataset.id), *INSTRUCTIONS[pair.name]]
        rows.append("\t".join(cells))
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------
# Serialisation


def _query_record(q: Query) -> dict[str, Any]:
    return {
        "qid": q.qid,
        "query_txt": q.txt,
        "query_img_path": q.img.path if q.img else None,
        "query_modality": modality(q.txt, q.img),
        "query_src_content": q.src,
        "pos_cand_list": [c.did for c in q.pos],
        "neg_cand_list": [c.did for c in q.neg],
        "task_id": q.task_id,
    }


def _cand_record(c: Cand) -> dict[str, Any]:
    record = {"txt": c.txt, "img_path": c.img.path if c.img else None, "modality": c.modality, "did": c.did}
    if c.src is not ABSENT:
        record["src_content"] = c.src
    return record


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _qrels(queries: Iterable[Query]) -> str:
    return "".join(f"{q.qid} 0 {c.did} 1 {q.task_id}\n" for q in queries for c in q.pos)


def _union_pool(pools: Iterable[list[Cand]], keep: set[str] | None = None) -> list[Cand]:
    """Concatenate pools, drop repeated dids (first wins), optionally keep only `keep`, sort by id."""
    seen: dict[str, Cand] = {}
    for pool in pools:
        for cand in pool:
            if cand.did not in seen and (keep is None or cand.did in keep):
                seen[cand.did] = cand
    return sorted(seen.values(), key=lambda c: id_key(c.did))


def _text_files(b: Builder) -> dict[str, str]:
    """Every text file of the tree, by path relative to the root."""
    files: dict[str, str] = {}
    by_qid = lambda q: id_key(q.qid)  # noqa: E731
    for split in ("val", "test"):
        for pair in EVAL_PAIRS:
            queries = b.queries[(pair.name, split)]
            files[pair.query_file(split)] = _jsonl(map(_query_record, queries))
            pool = sorted(b.pools[(pair.name, split)], key=lambda c: id_key(c.did))
            files[pair.pool_file(split)] = _jsonl(map(_cand_record, pool))
            files[pair.qrels_file(split)] = _qrels(queries)
    for d in DATASETS:
        train = sorted(b.queries[(d.slug, "train")], key=by_qid)
        files[bm.train_query_file(d)] = _jsonl(map(_query_record, train))
        files[bm.train_qrels_file(d)] = _qrels(train)

    rng = b.rng("union_train")
    union: list[Query] = []
    for d in DATASETS:
        train = sorted(b.queries[(d.slug, "train")], key=by_qid)
        extra = round(len(train) * (UPSAMPLE_FACTORS.get(d.slug, 1.0) - 1.0))
        union += train + [rng.choice(train) for _ in range(extra)]
    rng.shuffle(union)
    files[bm.UNION_TRAIN_QUERIES] = _jsonl(map(_query_record, union))
    union_val = sorted((q for p in EVAL_PAIRS for q in b.queries[(p.name, "val")]), key=by_qid)
    files[bm.UNION_VAL_QUERIES] = _jsonl(map(_query_record, union_val))

    files[bm.union_pool_file("train")] = _jsonl(map(_cand_record, _union_pool(b.train_pool[d.slug] for d in DATASETS)))
    referenced = {c.did for q in union_val for c in (*q.pos, *q.neg)}
    val_pools = (b.pools[(p.name, "val")] for p in EVAL_PAIRS)
    files[bm.union_pool_file("val")] = _jsonl(map(_cand_record, _union_pool(val_pools, referenced)))
    files[bm.union_pool_file("test")] = _jsonl(map(_cand_record, _union_pool(b.pools[(p.name, "test")] for p in EVAL_PAIRS)))
    files[bm.INSTRUCTIONS_FILE] = instructions_tsv()
    return dict(sorted(files.items()))


# ---------------------------------------------------------------------------------------
# Writing


def _read_marker(root: Path) -> dict[str, Any] | None:
    """The marker of a previous synthetic tree; None for a missing or empty root; an error for
    a non-empty directory that the generator did not write."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a directory; choose a new or empty directory for the synthetic M-BEIR")
    marker = root / MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{marker} is unreadable ({exc}); delete it or the directory to regenerate") from None
        if isinstance(data, dict) and data.get("generator") == __name__:
            return data
        raise DataError(f"{marker} was not written by the uniir synthetic generator; choose another directory")
    if root.is_dir() and any(root.iterdir()):
        raise DataError(
            f"{root} is not empty and holds no {MARKER}, so it is not a synthetic M-BEIR tree; "
            "refusing to write into it (choose a new or empty directory)"
        )
    return None


def _marker(
    spec: SizeSpec, seed: int, image_size: int, files: dict[str, int], images: list[str], digest: str, status: str
) -> dict[str, Any]:
    return {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": spec.name,
        "size_spec": asdict(spec),
        "image_size": image_size,
        "status": status,
        "sha256": digest,
        "files": files,
        "images": images,
    }


def _records_in(path: str, text: str) -> int:
    lines = text.count("\n")
    return lines - 1 if path == bm.INSTRUCTIONS_FILE else lines


def _summary(root: Path, marker: dict[str, Any], seconds: float, skipped: bool) -> SyntheticSummary:
    total = sum((root / p).stat().st_size for p in [*marker["files"], *marker["images"]])
    return SyntheticSummary(root, marker["seed"], marker["size"], marker["image_size"], dict(marker["files"]),
                            len(marker["images"]), total, seconds, skipped)


def generate_synthetic_mbeir(
    root: Path | str,
    *,
    seed: int = 0,
    size: str | int = "demo",
    image_size: int = 64,
    force: bool = False,
) -> SyntheticSummary:
    """Write a synthetic M-BEIR tree under `root` (same seed and size -> byte-identical files).

    `root` must be new, empty, or a previous synthetic tree (recognised by `SYNTHETIC.json`);
    only the generator's own files are replaced. An identical complete tree is kept as is
    unless `force`.
    """
    start = time.perf_counter()
    spec = parse_size(size)
    if not 16 <= image_size <= 1024:
        raise ConfigError(f"image size {image_size} is out of range: use 16..1024 pixels")
    root = Path(root)
    old = _read_marker(root)
    wanted = {"version": GENERATOR_VERSION, "seed": seed, "size_spec": asdict(spec), "image_size": image_size}
    if old is not None and not force and old.get("status") == "complete" and all(old.get(k) == v for k, v in wanted.items()):
        if all((root / p).is_file() for p in [*old["files"], *old["images"]]):
            log.info("synthetic M-BEIR in %s is up to date (seed %d, size %s); kept", root, seed, spec.name)
            return _summary(root, old, time.perf_counter() - start, skipped=True)

    builder = Builder(seed, spec)
    builder.build()
    texts = _text_files(builder)
    image_paths = sorted(builder.images)
    log.info("synthetic M-BEIR: %d text files, %d images -> %s", len(texts), len(image_paths), root)

    # An "incomplete" marker first: an interrupted run leaves a tree that is still recognisably ours.
    root.mkdir(parents=True, exist_ok=True)
    counts = {path: _records_in(path, text) for path, text in texts.items()}
    # The incomplete marker lists the old files too, so a rerun after a crash still removes them.
    old_files = {p: -1 for p in (old or {}).get("files", {}) if p not in counts}
    old_images = sorted(set((old or {}).get("images", [])) | set(image_paths))
    atomic.write_json(root / MARKER, _marker(spec, seed, image_size, {**counts, **old_files}, old_images, "", "incomplete"))
    staging = root / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    digest = hashlib.sha256()
    made: set[Path] = set()
    for path in image_paths:  # rendered into a staging folder, then renamed into place
        data = sc.jpeg_bytes(builder.images[path].scene, image_size)
        digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        tmp, final = staging / path, root / path
        if final.parent not in made:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            made.add(final.parent)
        tmp.write_bytes(data)
        os.replace(tmp, final)
    shutil.rmtree(staging, ignore_errors=True)
    for path, text in texts.items():
        digest.update(path.encode() + b"\0" + hashlib.sha256(text.encode("utf-8")).digest())
        atomic.write_text(root / path, text)
    if old is not None:  # drop files of the previous tree that this one does not have
        stale = set(old.get("files", {})) | set(old.get("images", []))
        for path in sorted(stale - set(texts) - set(image_paths)):
            if _is_own_path(path):
                (root / path).unlink(missing_ok=True)
        _remove_empty_dirs(root)
    marker = _marker(spec, seed, image_size, counts, image_paths, digest.hexdigest(), "complete")
    atomic.write_json(root / MARKER, marker)
    return _summary(root, marker, time.perf_counter() - start, skipped=False)


_OWN_TOPS = ("query", "cand_pool", "qrels", "instructions", bm.IMAGES_DIR)


def _is_own_path(path: str) -> bool:
    """Only relative paths inside the generator's folders are ever deleted (a marker is a file
    anyone can edit)."""
    parts = Path(path).parts
    return len(parts) > 1 and parts[0] in _OWN_TOPS and ".." not in parts and not Path(path).is_absolute()


def _remove_empty_dirs(root: Path) -> None:
    for top in _OWN_TOPS:
        for dirpath, _, _ in sorted(os.walk(root / top), reverse=True):
            path = Path(dirpath)
            if path != root and not any(path.iterdir()):
                path.rmdir()
