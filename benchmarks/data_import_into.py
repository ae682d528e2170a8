"""`uniir data import --into` a tree with an M-BEIR-size union test pool: what adding a small
dataset next to M-BEIR costs, against importing the same table as a tree of its own.

The tree is the tiny synthetic M-BEIR whose union test pool is replaced by a 5.6M-line
lookalike of M-BEIR's (`pool_reader.generate`, ~2.3 GiB); the merge copies that file once
(plus the tree's small union train/val files) and appends the new candidates. M-BEIR's union
train pool and union train queries, which the real tree also has, are not reproduced: on
M-BEIR the copy takes correspondingly longer.

    python benchmarks/data_import_into.py                 # 5.6M-line pool, 1,000-row table
    python benchmarks/data_import_into.py --lines 500000  # quicker
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
from pool_reader import generate  # noqa: E402


def write_table(folder: Path, rows: int) -> Path:
    from PIL import Image

    (folder / "img").mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 30, 200)).save(buffer, "JPEG")
    for i in range(rows):
        (folder / "img" / f"{i:06d}.jpg").write_bytes(buffer.getvalue())
    table = folder / "captions.csv"
    table.write_text("image,text\n" + "".join(f"img/{i:06d}.jpg,photo {i} of a blue square\n" for i in range(rows)))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5_600_000, help="lines of the tree's union test pool")
    parser.add_argument("--rows", type=int, default=1_000, help="rows of the imported table")
    args = parser.parse_args()
    from uniir_cli.data import benchmark as bm
    from uniir_cli.data.import_source import read_source
    from uniir_cli.data.import_tree import ImportSettings, import_tree
    from uniir_cli.data.merge_tree import import_into
    from uniir_cli.data.synthetic import generate_synthetic_mbeir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree = root / "mbeir"
        generate_synthetic_mbeir(tree, seed=0, size="tiny")
        pool = tree / bm.union_pool_file("test")
        pool_bytes = generate(pool, args.lines)
        table = write_table(root / "photos", args.rows)
        settings = ImportSettings("photos", 12)

        start = time.perf_counter()
        import_tree(read_source(table), root / "own", settings)
        standalone_s = time.perf_counter() - start
        start = time.perf_counter()
        result = import_into(read_source(table), tree, settings)
        into_s = time.perf_counter() - start
        grown = pool.stat().st_size - pool_bytes
    report("data_import_into", {
        "union_test_pool_lines": args.lines, "union_test_pool_gib": round(pool_bytes / 2**30, 2), "rows": args.rows,
        "candidates_added": result.candidates, "pool_bytes_added": grown, "standalone_import_s": round(standalone_s, 2),
        "import_into_s": round(into_s, 2), "ratio_into_vs_standalone": round(into_s / standalone_s, 1),
        "peak_rss_mib": round(peak_rss_mib()),
    })


if __name__ == "__main__":
    main()
