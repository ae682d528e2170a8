"""M-BEIR records and readers: query jsonl, candidate pools, 5-column qrels, images.

Formats follow the spec (sections 2.1-2.3). Readers stream, name the file and line of any bad
record in a `DataError`, and can collect errors instead of stopping (`on_error`), which is
how `uniir validate` reports many problems in one pass. Ids live in `data/ids.py`, the
instructions in `data/instructions.py`, the on-disk layout in `data/layout.py`.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from uniir_cli.data.benchmark import IMAGE, IMAGE_TEXT, MODALITIES, TASKS, TEXT
from uniir_cli.data.ids import dataset_of, is_valid_id
from uniir_cli.errors import DataError, json_problem, location

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ErrorSink = Callable[[DataError], None]
REDOWNLOAD = "fix the record or re-download the file (uniir download mbeir)"


def _fail(where: str, what: str, hint: str = REDOWNLOAD) -> DataError:
    return DataError(f"{where}: {what}; {hint}")


def _record_id(obj: Any, id_key: str, required: tuple[str, ...], example: str, where: str) -> str:
    """Check that `obj` is a JSON object with its id and required fields; return the id."""
    if not isinstance(obj, dict):
        raise _fail(where, f"expected a JSON object, got {type(obj).__name__}")
    for key in (id_key, *required):
        if key not in obj:
            raise _fail(where, f"missing required field {key!r}")
    value = obj[id_key]
    if not is_valid_id(value):
        raise _fail(where, f"malformed {id_key} {value!r}: expected \"dataset_id:number\" such as \"{example}\"")
    return value


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(where, f"field {key!r} must be a string or null, got {type(value).__name__}")
    return value


def _image_path(obj: dict[str, Any], key: str, where: str) -> str | None:
    """An image path, relative to the data root and staying inside it (an absolute path or one
    climbing out with `..` would read a file outside the data directory)."""
    value = _optional_str(obj, key, where)
    if value and (posixpath.isabs(value) or value.startswith("\\") or posixpath.normpath(value).split("/")[0] == ".."):
        raise _fail(where, f"field {key!r} = {value!r} leaves the data directory; image paths are relative to it "
                           "(as mbeir_images/...)", hint="fix the record")
    return value


def _check_modality(modality: object, txt: str | None, img: str | None, where: str, names: tuple[str, str]) -> str:
    """Reject unknown modalities and records whose fields clearly contradict the modality."""
    if modality not in MODALITIES:
        raise _fail(where, f"unknown modality {modality!r} (expected one of {', '.join(map(repr, MODALITIES))})")
    if modality in (TEXT, IMAGE_TEXT) and txt is None:
        raise _fail(where, f"modality {modality!r} but {names[0]!r} is null")
    if modality in (IMAGE, IMAGE_TEXT) and not img:
        raise _fail(where, f"modality {modality!r} but {names[1]!r} is empty")
    return modality  # type: ignore[return-value]


def _id_list(obj: dict[str, Any], key: str, where: str, required: bool) -> list[str]:
    if key not in obj and not required:
        return []
    value = obj.get(key)
    if not isinstance(value, list) or not all(is_valid_id(v) for v in value):
        raise _fail(where, f"field {key!r} must be a list of id strings such as [\"9:2\"], got {value!r:.80}")
    return value


@dataclass(slots=True)
class QueryRecord:
    """One query line (spec 2.1). `task_id` is None when the file lacks it."""

    qid: str
    query_txt: str | None
    query_img_path: str | None
    query_modality: str
    pos_cand_list: list[str]
    neg_cand_list: list[str] = field(default_factory=list)
    task_id: int | None = None
    query_src_content: str | None = None
    # Where the reader found the record, so later checks (a positive missing from the pool)
    # can name `file:line`; None for records built in code. Not part of the record's value.
    source: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    @property
    def dataset_id(self) -> int:
        return dataset_of(self.qid)

    @property
    def img_path(self) -> str | None:
        return self.query_img_path

    @property
    def where(self) -> str:
        """`file:line` of the record ("" when it was not read from a file)."""
        return location(self.source, self.line) if self.source is not None else ""

    @classmethod
    def from_dict(cls, obj: Any, where: str = "query") -> QueryRecord:
        """Validate a parsed json object; `where` (file:line) prefixes any error."""
        qid = _record_id(obj, "qid", ("query_modality", "pos_cand_list"), "9:6", where)
        where = f"{where}: query {qid}"
        txt = _optional_str(obj, "query_txt", where)
        img = _image_path(obj, "query_img_path", where)
        modality = _check_modality(obj["query_modality"], txt, img, where, ("query_txt", "query_img_path"))
        task_id = obj.get("task_id")
        if task_id is not None:
            if type(task_id) is not int or task_id not in TASKS:
                raise _fail(where, f"task_id {task_id!r} is not a task id (expected one of {sorted(TASKS)})")
            if TASKS[task_id][0] != modality:
                task_modality = TASKS[task_id][0]
                raise _fail(where, f"task_id {task_id} is a {task_modality!r} task but query_modality is {modality!r}")
        return cls(
            qid=qid,
            query_txt=txt,
            query_img_path=img,
            query_modality=modality,
            pos_cand_list=_id_list(obj, "pos_cand_list", where, required=True),
            neg_cand_list=_id_list(obj, "neg_cand_list", where, required=False),
            task_id=task_id,
            query_src_content=_optional_str(obj, "query_src_content", where),
        )

    def to_json(self) -> dict[str, Any]:
        """The record with upstream's key order (for UniRAG jsonl and rewritten files)."""
        return {
            "qid": self.qid,
            "query_txt": self.query_txt,
            "query_img_path": self.query_img_path,
            "query_modality": self.query_modality,
            "query_src_content": self.query_src_content,
            "pos_cand_list": list(self.pos_cand_list),
            "neg_cand_list": list(self.neg_cand_list),
            "task_id": self.task_id,
        }


@dataclass(slots=True)
class CandidateRecord:
    """One candidate line (spec 2.2). `src_content` may be absent in files: kept absent."""

    did: str
    txt: str | None
    img_path: str | None
    modality: str
    src_content: str | None = None
    has_src_content: bool = True

    @property
    def dataset_id(self) -> int:
        return dataset_of(self.did)

    @classmethod
    def from_dict(cls, obj: Any, where: str = "candidate") -> CandidateRecord:
        did = _record_id(obj, "did", ("modality",), "9:2", where)
        where = f"{where}: candidate {did}"
        txt = _optional_str(obj, "txt", where)
        img = _image_path(obj, "img_path", where)
        modality = _check_modality(obj["modality"], txt, img, where, ("txt", "img_path"))
        return cls(did, txt, img, modality, _optional_str(obj, "src_content", where), "src_content" in obj)

    def to_json(self) -> dict[str, Any]:
        """Upstream key order: txt, img_path, modality, did, src_content (if it was there)."""
        out: dict[str, Any] = {"txt": self.txt, "img_path": self.img_path, "modality": self.modality, "did": self.did}
        if self.has_src_content:
            out["src_content"] = self.src_content
        return out


def dumps_record(record: QueryRecord | CandidateRecord) -> str:
    """One jsonl line (no newline) with upstream's separators and key order."""
    return json.dumps(record.to_json(), ensure_ascii=False)


def _open_data_file(path: Path) -> BinaryIO:
    """The file opened for binary reading; a missing one is a DataError naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check --data-dir or re-download (uniir download mbeir)") from None


def _json_lines(path: Path, on_error: ErrorSink | None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; malformed lines raise or report."""
    with _open_data_file(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except ValueError as exc:
                detail = json_problem(exc)
                error = _fail(location(path, number), f"malformed JSON ({detail})")
                if on_error is None:
                    raise error from None
                on_error(error)


def _numbered(path: Path, factory: Callable[[Any, str], Any], on_error: ErrorSink | None) -> Iterator[tuple[int, Any]]:
    """(line number, record) pairs; a bad record raises or goes to `on_error`."""
    for number, obj in _json_lines(path, on_error):
        try:
            record = factory(obj, location(path, number))
        except DataError as error:
            if on_error is None:
                raise
            on_error(error)
            continue
        yield number, record


def _numbered_queries(path: Path, on_error: ErrorSink | None) -> Iterator[tuple[int, QueryRecord]]:
    """(line number, query) pairs; each query remembers its file and line (`QueryRecord.where`)."""
    source = str(path)  # one string shared by all records of the file
    for number, record in _numbered(path, QueryRecord.from_dict, on_error):
        record.source, record.line = source, number
        yield number, record


def iter_queries(path: str | Path, *, on_error: ErrorSink | None = None) -> Iterator[QueryRecord]:
    """Stream query records; with `on_error`, bad lines are reported there and skipped."""
    return (record for _, record in _numbered_queries(Path(path), on_error))


def read_queries(path: str | Path, *, unique: bool = True, on_error: ErrorSink | None = None) -> list[QueryRecord]:
    """All queries of a file. `unique=False` for up-sampled training files, which repeat qids."""
    path = Path(path)
    records: list[QueryRecord] = []
    seen: dict[str, int] = {}
    for number, record in _numbered_queries(path, on_error):
        if unique:
            if record.qid in seen:
                where = location(path, number)
                error = _fail(where, f"query {record.qid} repeats line {seen[record.qid]}", "each qid must appear once")
                if on_error is None:
                    raise error
                on_error(error)
                continue
            seen[record.qid] = number
        records.append(record)
    return records


def iter_candidates(path: str | Path, *, on_error: ErrorSink | None = None) -> Iterator[CandidateRecord]:
    """Stream a candidate pool (the union pool has 5.6M lines: never hold it as a list)."""
    return (record for _, record in _numbered(Path(path), CandidateRecord.from_dict, on_error))


def iter_candidate_lines(
    path: str | Path, *, on_error: ErrorSink | None = None
) -> Iterator[tuple[int, CandidateRecord]]:
    """(line number, record) pairs, for checks that must name the line of a later problem."""
    return _numbered(Path(path), CandidateRecord.from_dict, on_error)


def read_pool(path: str | Path) -> dict[str, CandidateRecord]:
    """did -> record for a small (local) pool; duplicate dids are an error."""
    path = Path(path)
    pool: dict[str, CandidateRecord] = {}
    lines: dict[str, int] = {}
    for number, record in _numbered(path, CandidateRecord.from_dict, None):
        if record.did in pool:
            where = location(path, number)
            raise _fail(where, f"candidate {record.did} repeats line {lines[record.did]}", "each did must appear once")
        pool[record.did] = record
        lines[record.did] = number
    return pool


@dataclass
class Qrels:
    """Positives per query from a 5-column qrels file (`qid 0 did relevance task_id`)."""

    relevant: dict[str, list[str]] = field(default_factory=dict)
    task_of: dict[str, int] = field(default_factory=dict)
    first_line: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.relevant)


def read_qrels(path: str | Path, *, on_error: ErrorSink | None = None) -> Qrels:
    """Keep rows with relevance > 0; task id per qid is the first one seen (as upstream)."""
    path = Path(path)
    qrels = Qrels(path=path)
    with _open_data_file(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                fields = raw.decode("utf-8").split()
                if not fields:
                    continue
                if len(fields) != 5:
                    raise ValueError(f"{len(fields)} columns")
                qid, _, did, relevance, task = fields
                if not (is_valid_id(qid) and is_valid_id(did)):
                    raise ValueError(f"bad id in {qid!r} / {did!r}")
                relevance_value, task_id = int(relevance), int(task)
            except ValueError as exc:
                error = _fail(
                    location(path, number),
                    f"malformed qrels line ({exc}): expected 5 columns `qid 0 did relevance task_id` "
                    "such as `9:6 0 9:2 1 3`",
                    "fix the line or re-download the file (uniir download mbeir)",
                )
                if on_error is None:
                    raise error from None
                on_error(error)
                continue
            if relevance_value <= 0:
                continue
            dids = qrels.relevant.setdefault(qid, [])
            if did not in dids:
                dids.append(did)
            qrels.task_of.setdefault(qid, task_id)
            qrels.first_line.setdefault(qid, number)
    return qrels


def load_image(path: str | Path, record_id: str, *, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open an image as RGB, or a `DataError` naming the record and path.

    `draft` lets JPEG decoding run at reduced scale: enough to prove that the file decodes
    (what `uniir validate --images` needs) at a fraction of the cost.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"image of {record_id} not found: {path}; extract mbeir_images/ under the data root "
            "(uniir download mbeir) or fix the record's image path"
        )
    try:
        with Image.open(path) as image:
            if draft is not None:
                image.draft("RGB", draft)
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:  # a bad image like any other (PIL refuses > 179M pixels)
        raise DataError(f"image of {record_id} is too large to decode safely: {path} ({exc}); replace the file") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"image of {record_id} is unreadable: {path} ({exc}); re-extract or replace the file") from None
