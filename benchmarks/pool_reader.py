"""Benchmark: build a `PoolReader` over a union-pool-sized jsonl and look candidates up.

Writes a synthetic M-BEIR-global-like pool (default 5.6M lines, ~430 bytes a line, sorted dids
over the 10 datasets, per-dataset modality mix and sizes following the 16 local pools), then
measures the index build (wall time, peak RSS from `ru_maxrss`), 100k random `get` lookups,
a bulk `modalities` call and reloading the `.npz` cache.

    python benchmarks/pool_reader.py                      # temp file, deleted afterwards
    python benchmarks/pool_reader.py --lines 500000       # quicker
    python benchmarks/pool_reader.py --path /data/M-BEIR/cand_pool/global/mbeir_union_test_cand_pool.jsonl

Goal (issue #2): build < 60 s and < 3 GB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from uniir_cli.data.benchmark import (
    DATASET_BY_SLUG,
    EVAL_PAIRS,
    IMAGE,
    IMAGE_TEXT,
    TEXT,
)
from uniir_cli.data.ids import unhash_dids
from uniir_cli.data.pool_reader import PoolReader

# Local test pool sizes (spec 11.4); the union test pool is their union.
POOL_SIZES = {
    "visualnews_task0": 542_246, "mscoco_task0": 5_000, "fashion200k_task0": 201_824, "webqa_task1": 544_457,
    "edis_task2": 1_047_067, "webqa_task2": 403_000, "visualnews_task3": 537_568, "mscoco_task3": 24_809,
    "fashion200k_task3": 61_700, "nights_task4": 40_038, "oven_task6": 676_667, "infoseek_task6": 611_651,
    "fashioniq_task7": 74_400, "cirr_task7": 21_551, "oven_task8": 335_135, "infoseek_task8": 481_782,
}
WORDS = ("the of a in and to is was for on with as by at from his that an are it which this image news city "
         "photo river team season museum bridge dress red blue black wooden street festival election").split()


def _snippets(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    out = []
    for _ in range(count):
        words, size = [], rng.randint(low, high)
        while sum(map(len, words)) + len(words) < size:
            words.append(rng.choice(WORDS))
        out.append(" ".join(words).replace('"', ""))
    return out


def generate(path: Path, lines: int, seed: int = 0) -> int:
    """Write `lines` candidate records (sorted by did); returns bytes written."""
    rng = random.Random(seed)
    texts = {TEXT: _snippets(rng, 4096, 200, 620), IMAGE_TEXT: _snippets(rng, 4096, 50, 340)}
    extras = [json.dumps(json.dumps({"title": s[:40], "source": "wiki"}))[1:-1] for s in _snippets(rng, 1024, 20, 120)]
    scale = lines / sum(POOL_SIZES.values())
    blocks: dict[int, list[tuple[str, int]]] = {}
    for pair in EVAL_PAIRS:
        blocks.setdefault(pair.dataset.id, []).append((pair.modalities[1], max(1, round(POOL_SIZES[pair.name] * scale))))
    written = 0
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as handle:
        for dataset_id in sorted(blocks):
            slug = next(d.slug for d in DATASET_BY_SLUG.values() if d.id == dataset_id)
            number = 0
            for modality, count in blocks[dataset_id]:
                batch = []
                for _ in range(count):
                    number += 1
                    r = rng.getrandbits(24)
                    txt = f'"{texts[modality][r & 4095]}"' if modality != IMAGE else "null"
                    img = f'"mbeir_images/{slug}_images/{r & 255:02x}/{slug}_{number:08d}.jpg"' if modality != TEXT else "null"
                    src = f'"{extras[r >> 14]}"' if r & 3 else "null"
                    batch.append(f'{{"txt": {txt}, "img_path": {img}, "modality": "{modality}", "did": "{dataset_id}:{number}", "src_content": {src}}}\n')
                    if len(batch) == 65536:
                        written += handle.write("".join(batch))
                        batch.clear()
                written += handle.write("".join(batch))
    return written


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5_600_000)
    parser.add_argument("--path", type=Path, help="use this pool (generated there first if it does not exist)")
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep a generated file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="uniir-pool-bench-"))
    path = args.path or workdir / "mbeir_union_test_cand_pool.jsonl"
    generated = not path.exists()
    try:
        if generated:
            start = time.perf_counter()
            size = generate(path, args.lines)
            print(f"generated {path} ({size / 2**30:.2f} GiB, {args.lines:,} lines) in {time.perf_counter() - start:.1f} s")
        size = path.stat().st_size
        rss_before = rss_mib()
        start = time.perf_counter()
        index = PoolReader.build(path, cache_dir=workdir / "cache")
        build_s = time.perf_counter() - start
        rss_build = rss_mib()

        rng = np.random.default_rng(0)
        wanted = unhash_dids(index.dids[rng.integers(0, len(index), args.lookups)])
        start = time.perf_counter()
        for did in wanted:
            index[did]
        lookup_s = time.perf_counter() - start
        start = time.perf_counter()
        batch = index.get_many(wanted[:10_000])
        batch_s = time.perf_counter() - start
        bulk = np.concatenate([index.dids[rng.integers(0, len(index), 1_000_000)], rng.integers(0, 10**8, 10_000)])
        start = time.perf_counter()
        codes = index.modalities(bulk)
        bulk_s = time.perf_counter() - start
        start = time.perf_counter()
        reloaded = PoolReader.build(path, cache_dir=workdir / "cache")
        cache_s = time.perf_counter() - start
        assert len(reloaded) == len(index) and len(batch) == min(10_000, args.lookups) and int((codes >= 0).sum()) >= 1_000_000

        result = {
            "lines": len(index), "file_gib": round(size / 2**30, 3), "avg_line_bytes": round(size / max(len(index), 1)),
            "build_s": round(build_s, 2), "build_peak_rss_mib": round(rss_build), "rss_before_build_mib": round(rss_before),
            "lookups": args.lookups, "lookup_total_s": round(lookup_s, 2), "lookup_us": round(lookup_s / args.lookups * 1e6, 1),
            "get_many_10k_s": round(batch_s, 3), "bulk_modalities_1.01M_s": round(bulk_s, 3), "cache_reload_s": round(cache_s, 2),
            "cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
        }
        print(json.dumps(result, indent=2))
    finally:
        if generated and not args.keep:
            path.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
