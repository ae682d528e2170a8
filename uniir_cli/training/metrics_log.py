"""The append-only metrics logs of a run (`metrics/train.jsonl`, `val.jsonl`): one JSON
record per line, appended as training goes, so they are not written atomically. Readers
drop a torn last line (a process killed while appending it); any other damage is an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from uniir_cli import atomic
from uniir_cli.errors import RunDirError, location

log = logging.getLogger(__name__)


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The records of an append-only metrics log; a torn last line (a process killed while
    appending it) is dropped, any other unreadable line is an error."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):
                log.warning("%s: ignoring its torn last line (the run stopped while writing it)", path)
                break
            raise RunDirError(f"{location(path, number)}: not a JSON record; delete the line (or the file) and rerun") from None
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Keep a metrics log up to `step` (a resumed run rewrites what follows); drops a torn line."""
    if not path.is_file():
        return
    kept = [record for record in read_metrics_log(path) if record["step"] <= step]
    atomic.write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
