"""Training pairs beyond M-BEIR (`data.train_sources`), and a weighted mixture of sources.

The recipes of E5-V and the UniIR fork train on data that is not in M-BEIR's layout:

* `nli-csv`: NLI triplets with a header `sent0,sent1[,hard_neg]` (SimCSE / E5-V): text query,
  text positive, the contradiction as a hard negative;
* `llava-pretrain`: LLaVA-Pretrain's records (`image`, `conversations`: the `gpt` turn is the
  caption): image query, caption positive (the fork's stage 1);
* `conversations`: LLaVA / InternVL SFT records (`image`, `conversations`): each human turn
  with the image is a query, the `gpt` answer that follows it the positive (the fork's stage 2);
* `mbeir`: M-BEIR's training queries and pool, as without `train_sources`.

The two LLaVA formats take a JSON array of records (LLaVA's files) or JSON lines (InternVL's).

Each source is a table: `{format, path, weight = 1.0, images = "<folder>", instruction = ""}`;
`path` and `images` are relative to the data directory, image paths inside a file relative to
`images` (default: the file's folder) and may not leave it. A record that cannot be read is a
DataError naming file and line. Each epoch, source i contributes round(weight_i x size_i)
samples: shuffled passes over it, drawn from (seed, epoch), repeated where the weight is above 1.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from uniir_cli.data.instructions import QueryText
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import load_image
from uniir_cli.errors import ConfigError, DataError

SOURCE_KEYS = {"format", "path", "weight", "images", "instruction"}
IMAGE_TOKEN = "<image>"  # LLaVA's placeholder in a human turn


@dataclass(frozen=True)
class Pair:
    """One training pair; texts and images (paths relative to the data root) may be None."""

    where: str  # file:line, for errors
    query_text: str | None
    query_image: str | None
    positive_text: str | None
    positive_image: str | None = None
    negatives: tuple[tuple[str | None, str | None], ...] = field(default=())


def _fail(where: str, what: str) -> DataError:
    return DataError(f"{where}: {what}; fix the record or drop it")


def _image(value: Any, images: str, where: str) -> str:
    """`value` (relative to the source's image folder) as a path relative to the data root."""
    if not isinstance(value, str) or not value:
        raise _fail(where, f"'image' must be a non-empty string, got {value!r}")
    if posixpath.isabs(value) or value.startswith("\\") or posixpath.normpath(value).split("/")[0] == "..":
        raise _fail(where, f"image {value!r} leaves the source's image folder; image paths are relative to it")
    return posixpath.join(images, value) if images else value


def _text(path: Path, name: str) -> str:
    """The file as UTF-8 text; other bytes are a DataError naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{name}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None


def read_nli_csv(path: Path, name: str, images: str) -> list[Pair]:
    """`sent0,sent1[,hard_neg]` rows (quoted CSV; the header names the columns)."""
    reader = csv.DictReader(io.StringIO(_text(path, name), newline=""))
    missing = {"sent0", "sent1"} - set(reader.fieldnames or [])
    if missing:
        raise DataError(f"{name}:1: the header lacks column(s) {', '.join(sorted(missing))}; an NLI file has "
                        "sent0,sent1 and optionally hard_neg")
    pairs = []
    try:
        for row in reader:
            where = f"{name}:{reader.line_num}"
            if any(not (row.get(k) or "").strip() for k in ("sent0", "sent1")):
                raise _fail(where, "sent0 and sent1 must both be non-empty")
            negative = (row.get("hard_neg") or "").strip()
            pairs.append(Pair(where, row["sent0"].strip(), None, row["sent1"].strip(), None,
                              ((negative, None),) if negative else ()))
    except csv.Error as exc:
        raise _fail(f"{name}:{reader.line_num}", f"malformed CSV ({exc})") from None
    return pairs


def _turns(record: Any, where: str) -> list[tuple[str, str]]:
    conversations = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(conversations, list) or not conversations:
        raise _fail(where, "expected an object with a non-empty 'conversations' list")
    turns = []
    for i, turn in enumerate(conversations):
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
            raise _fail(where, f"conversations[{i}] must be an object with string 'from' and 'value'")
        turns.append((turn["from"], turn["value"]))
    return turns


def _question(text: str) -> str:
    return " ".join(text.replace(IMAGE_TOKEN, " ").split())


def _image_caption(record: Any, where: str, images: str) -> list[Pair]:
    turns = _turns(record, where)
    caption = next((value.strip() for speaker, value in turns if speaker == "gpt" and value.strip()), "")
    if not caption:
        raise _fail(where, "no non-empty 'gpt' turn (the caption)")
    return [Pair(where, None, _image(record.get("image"), images, where), caption)]


def _question_answers(record: Any, where: str, images: str) -> list[Pair]:
    turns = _turns(record, where)
    image = _image(record["image"], images, where) if "image" in record else None
    pairs = []
    for (speaker, question), (answerer, answer) in zip(turns, turns[1:]):
        if speaker == "human" and answerer == "gpt" and _question(question) and answer.strip():
            pairs.append(Pair(where, _question(question), image, answer.strip()))
    if not pairs:
        raise _fail(where, "no human turn followed by a non-empty gpt answer")
    return pairs


def _records(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    """(file:line, record) of a JSON array of records (LLaVA's files) or of JSON lines."""
    text = _text(path, name)
    position = len(text) - len(text.lstrip())
    if text[position : position + 1] != "[":
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    yield f"{name}:{number}", json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise _fail(f"{name}:{number}", f"malformed JSON ({exc.msg})") from None
        return
    decoder = json.JSONDecoder()
    position += 1
    line = 1 + text.count("\n", 0, position)
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            line += text[position] == "\n"
            position += 1
        if position >= len(text):
            raise DataError(f"{name}:{line}: the JSON array is not closed (a truncated file?)")
        if text[position] == "]":
            return
        try:
            record, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _fail(f"{name}:{exc.lineno}", f"malformed JSON ({exc.msg})") from None
        yield f"{name}:{line}", record
        line += text.count("\n", position, end)
        position = end


def read_llava_pretrain(path: Path, name: str, images: str) -> list[Pair]:
    return [pair for where, record in _records(path, name) for pair in _image_caption(record, where, images)]


def read_conversations(path: Path, name: str, images: str) -> list[Pair]:
    return [pair for where, record in _records(path, name) for pair in _question_answers(record, where, images)]


READERS = {"nli-csv": read_nli_csv, "llava-pretrain": read_llava_pretrain, "conversations": read_conversations}
FORMATS = (*READERS, "mbeir")


def check_source(index: int, source: dict[str, Any]) -> dict[str, Any]:
    """The source table completed with its defaults; ConfigErrors name `data.train_sources[i]`."""
    where = f"data.train_sources[{index}]"
    unknown = sorted(set(source) - SOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a source takes {', '.join(sorted(SOURCE_KEYS))}")
    if source.get("format") not in FORMATS:
        raise ConfigError(f"{where}.format = {source.get('format')!r}; use one of {', '.join(FORMATS)}")
    if source["format"] != "mbeir" and not isinstance(source.get("path"), str):
        raise ConfigError(f"{where}: needs path = \"<file, relative to the data directory>\"")
    weight = source.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise ConfigError(f"{where}.weight = {weight!r}; use a number > 0 (1: each sample once per epoch)")
    for key in ("images", "instruction"):
        if not isinstance(source.get(key, ""), str):
            raise ConfigError(f"{where}.{key} must be a string")
    return {"weight": float(weight), "images": "", "instruction": "", "path": "", **source}


def read_source(layout: MBeirLayout, source: dict[str, Any]) -> list[Pair]:
    """The pairs of one (checked) non-M-BEIR source."""
    path = layout.require(layout.path(source["path"]), f"training source {source['path']} ({source['format']})")
    images = source["images"] or posixpath.dirname(source["path"])
    return READERS[source["format"]](path, str(path), images)


class PairItems(Dataset):
    """Processed samples of a list of pairs (the `TrainPairs` sample format)."""

    def __init__(self, layout: MBeirLayout, processor: Any, pairs: list[Pair], *, instruction: str = "", hard_neg_num: int = 0) -> None:
        if not pairs:
            raise DataError("a training source has no pairs")
        if hard_neg_num and any(len(p.negatives) < hard_neg_num for p in pairs):
            short = next(p for p in pairs if len(p.negatives) < hard_neg_num)
            raise DataError(f"{short.where}: train.hard_neg_num = {hard_neg_num} but this pair has {len(short.negatives)} "
                            "hard negative(s); give every pair enough (NLI: hard_neg) or lower train.hard_neg_num")
        self.layout, self.processor, self.pairs = layout, processor, pairs
        self.instruction, self.hard_neg_num = instruction or None, hard_neg_num

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Pairs are fixed; nothing is drawn per epoch."""

    def _item(self, text: str | None, image: str | None, where: str, query: QueryText | None = None) -> dict[str, Any]:
        loaded = load_image(self.layout.resolve(image), where) if image else None
        return self.processor.process(text, loaded, query)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        query = QueryText(pair.query_text or "", self.instruction)
        return {
            "query": self._item(query.joined or None, pair.query_image, pair.where, query),
            "positive": self._item(pair.positive_text, pair.positive_image, pair.where),
            "negatives": [self._item(text, image, pair.where) for text, image in pair.negatives[: self.hard_neg_num]],
        }


class WeightedMixture(Dataset):
    """Several training datasets as one: each epoch, part i gives round(weight_i x len_i)
    samples, shuffled passes over it drawn from (seed, epoch)."""

    def __init__(self, parts: list[Any], weights: list[float], seed: int) -> None:
        self.parts, self.weights, self.seed = parts, weights, seed
        self.counts = [max(1, round(w * len(p))) for p, w in zip(parts, weights, strict=True)]
        self.set_epoch(0)

    def __len__(self) -> int:
        return sum(self.counts)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch, 7])
        rows = []
        for i, (part, count) in enumerate(zip(self.parts, self.counts, strict=True)):
            part.set_epoch(epoch)
            size = len(part)
            drawn = np.concatenate([rng.permutation(size) for _ in range(-(-count // size))])[:count]
            rows.append(np.stack([np.full(count, i), drawn], axis=1))
        self.table = np.concatenate(rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        part, row = self.table[index]
        return self.parts[int(part)][int(row)]
