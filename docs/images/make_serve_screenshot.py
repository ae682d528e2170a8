"""Makes `serve-results.png`, the README's screenshot of the results browser: the demo's
trained run beside its untrained baseline, on the first MSCOCO text -> image query that the
trained run finds in its top 5 of the global pool and the untrained one misses.

    uniir demo --run-dir runs/demo
    python docs/images/make_serve_screenshot.py runs/demo

Needs the `serve` extra and a Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from tests.serve.chromium import Chromium, find_browser  # noqa: E402
from tests.serve.process import get_json, serving  # noqa: E402

QUERY_SET, POOL, K = "mscoco_task0_test", "global", 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a `uniir demo` run (its baseline is run_dir/untrained)")
    parser.add_argument("--out", type=Path, default=HERE / "serve-results.png")
    args = parser.parse_args()
    browser_path = find_browser()
    if browser_path is None:
        sys.exit("no Chromium found: apt-get install chromium")
    with serving(args.run_dir, "--compare-run-dir", str(args.run_dir / "untrained")) as base:
        found = get_json(f"{base}/api/queries?set={QUERY_SET}&pool={POOL}&k={K}&winner=a")["queries"]
        wins = [row["qid"] for row in found if not row["failed"]["a"] and row["failed"]["b"]]
        if not wins:
            sys.exit(f"no query of {QUERY_SET} that the trained run finds and the untrained one misses at k={K}")
        with tempfile.TemporaryDirectory() as profile:
            browser = Chromium(browser_path, Path(profile), size=(1280, 760))
            try:
                browser.open(f"{base}/browse/query?set={QUERY_SET}&pool={POOL}&k={K}&qid={wins[0]}")
                browser.images_loaded()
                browser.screenshot(args.out)
            finally:
                browser.close()
    print(f"wrote {args.out} (query {wins[0]})")


if __name__ == "__main__":
    main()
