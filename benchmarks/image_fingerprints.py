"""Benchmark: what the embed step's image fingerprints (size + mtime of every image, per
shard) cost, extrapolated to the 5.6M-candidate union pool.

Writes N candidates with a small JPEG-named file each (default 200,000, 1,000 files per
folder as M-BEIR's image folders hold many), then times the two passes `shard_plan` makes
over a set: reading each candidate's `img_path` from the pool file (`CandidateItems.image_paths`)
and one `os.stat` per image (`image_fingerprints`). Cold-cache numbers need `echo 3 >
/proc/sys/vm/drop_caches` (root) between the write and the measurement: `--drop-caches`.

    python benchmarks/image_fingerprints.py [--count 200000] [--drop-caches]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from uniir_cli.data.layout import MBeirLayout  # noqa: E402
from uniir_cli.data.loaders import CandidateItems  # noqa: E402
from uniir_cli.data.pool_reader import PoolReader  # noqa: E402
from uniir_cli.evaluation.embedding import image_fingerprints  # noqa: E402

UNION = 5_608_895


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--drop-caches", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = root / "pool.jsonl"
        with open(pool, "w", encoding="utf-8") as out:
            for n in range(args.count):
                rel = f"mbeir_images/x/{n // 1000:04d}/{n}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"\xff\xd8" + n.to_bytes(8, "little"))
                out.write(json.dumps({"txt": None, "img_path": rel, "modality": "image", "did": f"1:{n + 1}",
                                      "src_content": None}) + "\n")
        reader = PoolReader.build(pool)
        items = CandidateItems(MBeirLayout(root, check=False), None, [reader], reader.dids)
        if args.drop_caches:
            subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
        started = time.perf_counter()
        paths = items.image_paths(range(len(items)))
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        stats = image_fingerprints(items.layout, paths)
        stat_s = time.perf_counter() - started
        assert "missing" not in stats
    scale = UNION / args.count
    report("image_fingerprints", {
        "count": args.count, "cold_cache": args.drop_caches,
        "read_img_paths_s": round(read_s, 2), "stat_s": round(stat_s, 2),
        "per_item_us": round((read_s + stat_s) / args.count * 1e6, 2),
        "extrapolated_union_s": round((read_s + stat_s) * scale, 1),
    })


if __name__ == "__main__":
    main()
