"""A synthetic, learnable M-BEIR written in the real on-disk layout.

`uniir demo` and the tests of every pipeline step need a benchmark that (a) exercises every
code path of the real one (10 datasets, 16 (dataset, task) pairs, text / image / image+text
queries and candidates, local and union pools, the MSCOCO val/test pools, the OVEN/InfoSeek
cross-dataset positives, up-sampled union train, hard negatives), (b) is small enough to
generate in seconds, and (c) has rules a tiny model can learn on a CPU in minutes. Scenes
and texts come from `scenes`, records from `builder`, file texts from `tree_files`; this module
checks the size, writes the tree atomically (staging folder, marker last) and keeps an identical one.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.data import benchmark as bm
from uniir_cli.data.layout import SYNTHETIC_MARKER
from uniir_cli.data.synthetic import scenes as sc
from uniir_cli.data.synthetic.builder import Builder
from uniir_cli.data.synthetic.records import SizeSpec
from uniir_cli.data.synthetic.tree_files import text_files
from uniir_cli.errors import ConfigError, DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = SYNTHETIC_MARKER
_STAGING = ".synthetic-staging"
MAX_QUERIES_PER_PAIR = 80  # beyond this the 432 scenes of a domain cannot keep eval pools unambiguous


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
    texts = text_files(builder)
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
