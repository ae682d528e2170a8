"""Reading what people have into query -> positive rows, for `uniir data import`.

Two shapes of table (CSV, TSV or JSON lines, UTF-8), told apart by their columns:

* **captioned images**: an image column and a text column (names set by the caller,
  `image` and `text` by default): each row gives text -> image and image -> text;
* **query/positive pairs**: `query_text` and/or `query_image`, `positive_text` and/or
  `positive_image`: each row one query and its positive, of whatever modalities it fills.

Optional columns: a split (`train`/`val`/`test`), a group (rows of one group are one
entity: every query of the group has every positive of the group as relevant) and an id
(unique; kept in the records' `src_content`). A folder is read as its captions file
(`captions.csv`, `.tsv`, `.jsonl` or `.txt` with `image<TAB>caption` lines). Image paths are
relative to the table's folder and may not leave it. Every problem is a DataError naming the
file and line.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from uniir_cli.errors import DataError, location

CAPTION_FILES = ("captions.csv", "captions.tsv", "captions.jsonl", "captions.txt")
PAIR_COLUMNS = ("query_text", "query_image", "positive_text", "positive_image")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Side:
    """One side of a row: a text, an image path (relative to the base folder) or both."""

    text: str | None
    image: str | None

    @property
    def modality(self) -> str:
        return "image,text" if self.text and self.image else "image" if self.image else "text"


@dataclass(frozen=True)
class Row:
    line: int
    query: Side
    positive: Side
    split: str | None
    group: str
    record_id: str | None


@dataclass(frozen=True)
class Columns:
    """Column names of the captioned-images shape and of the optional columns."""

    image: str = "image"
    text: str = "text"
    split: str = "split"
    group: str = "group"
    id: str = "id"


@dataclass(frozen=True)
class Source:
    table: Path  # the file read
    base: Path  # the folder image paths are relative to
    rows: list[Row]
    captioned: bool  # True: each row also gives image -> text


def read_source(path: Path, columns: Columns = Columns()) -> Source:
    """All rows of a table or captioned-image folder (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        table = next((path / name for name in CAPTION_FILES if (path / name).is_file()), None)
        if table is None:
            raise DataError(f"{path}: a folder to import needs a captions file ({', '.join(CAPTION_FILES)}) "
                            "naming each image and its caption")
    elif path.is_file():
        table = path
    else:
        raise DataError(f"{path}: no such file or folder")
    records = list(_records(table))
    if not records:
        raise DataError(f"{table}: no rows to import")
    header = set(records[0][1])
    captioned = not header & set(PAIR_COLUMNS)
    if captioned and not {columns.image, columns.text} <= header:
        raise DataError(f"{table}: expected columns {columns.image!r} and {columns.text!r} (captioned images) or "
                        f"{', '.join(PAIR_COLUMNS)} (query/positive pairs); found {', '.join(sorted(header))}. "
                        "Name yours with --image-column/--text-column")
    rows, ids = [], {}
    for line, record in records:
        row = _row(table, line, record, columns, captioned)
        if row.record_id is not None:
            if row.record_id in ids:
                raise DataError(f"{location(table, line)}: id {row.record_id!r} is also on line {ids[row.record_id]}; "
                                "ids must be unique (rows of one entity share a group, not an id)")
            ids[row.record_id] = line
        rows.append(row)
    return Source(table, table.parent, rows, captioned)


def _records(table: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(line, {column: value}) of each data row; a line that is not UTF-8 is named."""
    data = table.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{location(table, number)}: not UTF-8 (byte {exc.start + 1} of the line); "
                            "re-save the file as UTF-8") from None
    text = data.decode("utf-8").removeprefix("\ufeff")
    suffix = table.suffix.lower()
    if suffix == ".jsonl":
        yield from _json_lines(table, text)
    elif suffix == ".txt":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                image, sep, caption = line.partition("\t")
                if not sep:
                    raise DataError(f"{location(table, number)}: expected 'image<TAB>caption'")
                yield number, {"image": image.strip(), "text": caption.strip()}
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            for record in reader:
                if None in record:
                    raise DataError(f"{location(table, reader.line_num)}: more cells than the header has columns")
                if any(v not in (None, "") for v in record.values()):
                    yield reader.line_num, {k.strip(): v for k, v in record.items()}
        except csv.Error as exc:
            raise DataError(f"{location(table, reader.line_num)}: {exc}") from None
    else:
        raise DataError(f"{table}: unknown table format {suffix!r}; use .csv, .tsv, .jsonl or .txt")


def _json_lines(table: Path, text: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{location(table, number)}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{location(table, number)}: expected a JSON object")
        yield number, {str(k): None if v is None else str(v) for k, v in record.items()}


def _row(table: Path, line: int, record: dict[str, str | None], columns: Columns, captioned: bool) -> Row:
    where = location(table, line)

    def cell(name: str) -> str | None:
        value = record.get(name)
        return value.strip() or None if isinstance(value, str) else None

    if captioned:
        text, image = cell(columns.text), cell(columns.image)
        if text is None:
            raise DataError(f"{where}: empty {columns.text!r}; every image needs a caption (drop the row or fill it)")
        if image is None:
            raise DataError(f"{where}: empty {columns.image!r}; every caption needs its image")
        query, positive = Side(text, None), Side(None, _image_path(table, where, image))
    else:
        sides = []
        for prefix in ("query", "positive"):
            text, image = cell(f"{prefix}_text"), cell(f"{prefix}_image")
            if text is None and image is None:
                raise DataError(f"{where}: the {prefix} is empty; fill {prefix}_text, {prefix}_image or both")
            sides.append(Side(text, _image_path(table, where, image) if image else None))
        query, positive = sides
    split = cell(columns.split)
    if split is not None and split not in SPLITS:
        raise DataError(f"{where}: split {split!r}; expected one of {', '.join(SPLITS)}")
    group = cell(columns.group) or (positive.image if captioned else f"{query.text}\0{query.image}")
    return Row(line, query, positive, split, group or "", cell(columns.id))


def _image_path(table: Path, where: str, value: str) -> str:
    """The image's path relative to the table's folder; it must stay inside and exist."""
    relative = value.replace("\\", "/")
    base = table.parent.resolve()
    if posixpath.isabs(relative):
        try:
            relative = Path(relative).resolve().relative_to(base).as_posix()
        except ValueError:
            raise DataError(f"{where}: image {value!r} is outside {base}; images are referenced relative to the "
                            "table's folder") from None
    relative = posixpath.normpath(relative)
    if relative.split("/")[0] == "..":
        raise DataError(f"{where}: image {value!r} leaves {base}; images are referenced relative to the table's folder")
    if not (base / relative).is_file():
        raise DataError(f"{where}: image {value!r} not found (looked at {base / relative})")
    return relative
