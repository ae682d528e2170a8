"""`uniir serve` in a real browser: the command in a subprocess on a free port, a headless
Chromium that types a query, sees the right candidates' images, opens a failed query and
saves a screenshot. Skipped where no Chromium is installed (`.ci/run` installs Debian's)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.chromium import Chromium, find_browser
from tests.serve.conftest import Runs
from tests.serve.process import get_json, serving

pytestmark = pytest.mark.browser
BROWSER = find_browser()
QUERY, POOL = "a small red circle on the left", "mscoco_task0_test"


@pytest.fixture
def server(served_runs: Runs, tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("fastapi")
    with serving(served_runs.a, "--compare-run-dir", str(served_runs.b), log=tmp_path / "serve.log") as base:
        yield base


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed (apt-get install chromium)")
def test_search_then_open_a_failed_query(server: str, tmp_path: Path) -> None:
    browser = Chromium(BROWSER, tmp_path / "profile", timeout=30)
    try:
        browser.open(f"{server}/")
        browser.evaluate("document.querySelector('input[name=text]').focus()")
        browser.call("Input.insertText", {"text": QUERY})
        browser.evaluate(f"document.querySelector('select[name=pool]').value = {json.dumps(POOL)}")
        browser.evaluate("document.querySelector('form.search button').click()")
        browser.wait_for("document.readyState === 'complete' && !!document.querySelector('#results')")
        browser.images_loaded()
        shown = browser.evaluate(
            "[...document.querySelectorAll('#results .side-a tr.hit')].map(row => {"
            " const img = row.querySelector('img');"
            " return [row.dataset.did, img ? new URL(img.src).pathname : null, img ? img.naturalWidth : 0]; })")
        expected = get_json(f"{server}/api/search?text={urllib.request.quote(QUERY)}&pool={POOL}&k=10")["runs"][0]["hits"]
        assert [row[0] for row in shown] == [hit["did"] for hit in expected]
        assert [row[1] for row in shown] == [hit["image_url"] for hit in expected]
        assert all(width > 0 for _, _, width in shown), shown  # every image decoded in the browser
        assert browser.evaluate("document.querySelectorAll('#results .side-b tr.hit').length") == len(expected)

        browser.open(f"{server}/browse/set?set=mscoco_task0_test&pool=global&k=5&failed=1")
        first = browser.evaluate("document.querySelector('table.queries a').textContent")
        browser.evaluate("document.querySelector('table.queries a').click()")
        browser.wait_for("document.readyState === 'complete' && !!document.querySelector('.verdict')")
        browser.images_loaded()
        assert browser.evaluate("document.querySelector('h1').textContent").startswith(first)
        assert "failed at k=5" in browser.evaluate("document.querySelector('.side-a .verdict').textContent")
        assert browser.evaluate("document.querySelectorAll('.column').length") == 2
        shot = tmp_path / "failed-query.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        browser.close()
