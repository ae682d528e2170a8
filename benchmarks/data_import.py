"""`uniir data import` of a COCO-like table: N rows (captions), N/5 images (5 captions each),
split 80/10/10 by image; times reading the table and building + validating the tree.

    python benchmarks/data_import.py --rows 100000
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mib, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    args = parser.parse_args()
    from PIL import Image

    from uniir_cli.data.import_source import read_source
    from uniir_cli.data.import_tree import ImportSettings, import_tree

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        (folder / "img").mkdir(parents=True)
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, "JPEG")
        images = args.rows // args.captions_per_image
        for i in range(images):
            (folder / "img" / f"{i:07d}.jpg").write_bytes(buffer.getvalue())
        lines = ["image,text"] + [f"img/{r // args.captions_per_image:07d}.jpg,caption {r} of a red square" for r in range(args.rows)]
        (folder / "captions.csv").write_text("\n".join(lines) + "\n")
        start = time.perf_counter()
        source = read_source(folder / "captions.csv")
        read_s = time.perf_counter() - start
        result = import_tree(source, Path(tmp) / "tree", ImportSettings("photos", 12))
        total_s = time.perf_counter() - start
    report("data_import", {"rows": args.rows, "images": images, "read_s": round(read_s, 2), "total_s": round(total_s, 2),
                           "rows_per_s": round(args.rows / total_s), "candidates": result.candidates, "queries": result.queries,
                           "peak_rss_mib": round(peak_rss_mib())})


if __name__ == "__main__":
    main()
