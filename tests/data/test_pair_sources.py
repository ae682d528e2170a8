"""Training sources beyond M-BEIR: NLI CSV, LLaVA-Pretrain and conversation records (JSON
array or lines) read with file-and-line errors, images kept inside their folder, a weighted
mixture drawn per epoch, and `uniir train` on a mixture of all of them with M-BEIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from uniir_cli.config import Config
from uniir_cli.data.mbeir import read_queries
from uniir_cli.data.pair_sources import (
    Pair,
    WeightedMixture,
    check_source,
    read_conversations,
    read_llava_pretrain,
    read_nli_csv,
)
from uniir_cli.errors import ConfigError, DataError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
CAPTIONS = ["a dog runs on grass", "a red train at a platform", "a plate of rice and beans", "a cat asleep on a sofa"]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _jpegs(folder: Path, source: Path, count: int) -> list[str]:
    """`count` JPEG files copied from the synthetic M-BEIR's images."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(source.rglob("*.jpg"))[:count]
    for i, photo in enumerate(photos):
        shutil.copyfile(photo, folder / f"{i:03d}.jpg")
    return [f"{i:03d}.jpg" for i in range(len(photos))]


def _pretrain_records(names: list[str]) -> list[dict]:
    return [{"id": str(i), "image": name, "conversations": [
        {"from": "human", "value": "Give a brief description of the image.\n<image>"},
        {"from": "gpt", "value": CAPTIONS[i % len(CAPTIONS)]}]} for i, name in enumerate(names)]


def test_nli_csv_rows_become_text_pairs_with_their_hard_negative(tmp_path: Path) -> None:
    path = _write(tmp_path / "nli.csv", 'sent0,sent1,hard_neg\nA man plays.,"Someone, a man, plays.",Nobody plays.\n'
                                        "Two dogs run.,Animals move.,\n")
    pairs = read_nli_csv(path, str(path), "")
    assert pairs == [Pair(f"{path}:2", "A man plays.", None, "Someone, a man, plays.", None, (("Nobody plays.", None),)),
                     Pair(f"{path}:3", "Two dogs run.", None, "Animals move.", None, ())]


@pytest.mark.parametrize(("text", "message"), [
    (b"premise,hypothesis\na,b\n", r"nli.csv:1: the header lacks column\(s\) sent0, sent1"),
    (b"sent0,sent1\na,b\nc,\n", r"nli.csv:3: sent0 and sent1 must both be non-empty"),
    (b"sent0,sent1\na,b\n\xff\xfe,c\n", r"nli.csv:3: not UTF-8"),
])
def test_a_bad_nli_file_is_refused_naming_file_and_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = _write(tmp_path / "nli.csv", text)
    with pytest.raises(DataError, match=message):
        read_nli_csv(path, str(path), "")


def test_llava_pretrain_records_are_image_caption_pairs_located_by_line(tmp_path: Path) -> None:
    records = _pretrain_records(["00453/004539375.jpg", "00223/002239345.jpg"])
    path = _write(tmp_path / "blip_laion_cc_sbu_558k.json", json.dumps(records, indent=2))
    pairs = read_llava_pretrain(path, "pretrain.json", "LLaVA-Pretrain/images")
    assert [(p.query_image, p.positive_text, p.query_text) for p in pairs] == [
        ("LLaVA-Pretrain/images/00453/004539375.jpg", CAPTIONS[0], None),
        ("LLaVA-Pretrain/images/00223/002239345.jpg", CAPTIONS[1], None)]
    lines = path.read_text().splitlines()
    assert [int(p.where.rsplit(":", 1)[1]) for p in pairs] == [i + 1 for i, line in enumerate(lines) if line == "  {"]

    records[1]["conversations"] = records[1]["conversations"][:1]  # no caption
    path.write_text(json.dumps(records, indent=2))
    second = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line == "  {"][1]
    with pytest.raises(DataError, match=rf"pretrain.json:{second}: no non-empty 'gpt' turn"):
        read_llava_pretrain(path, "pretrain.json", "")
    records[1] = {**_pretrain_records(["../../etc/passwd"])[0]}
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="leaves the source's image folder"):
        read_llava_pretrain(path, "pretrain.json", "")
    path.write_text(json.dumps(records)[:-40])
    with pytest.raises(DataError, match="pretrain.json:1: (malformed JSON|the JSON array is not closed)"):
        read_llava_pretrain(path, "pretrain.json", "")


def test_conversation_lines_give_one_pair_per_answered_question(tmp_path: Path) -> None:
    record = {"image": "coco/1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is on the plate?"}, {"from": "gpt", "value": "Rice and beans."},
        {"from": "human", "value": "Is it hot?"}, {"from": "gpt", "value": "It steams, so yes."}]}
    path = _write(tmp_path / "sft.jsonl", json.dumps(record) + "\n\n" + json.dumps({**record, "image": "coco/2.jpg"}) + "\n")
    pairs = read_conversations(path, "sft.jsonl", "")
    assert [(p.where, p.query_text, p.query_image, p.positive_text) for p in pairs] == [
        ("sft.jsonl:1", "What is on the plate?", "coco/1.jpg", "Rice and beans."),
        ("sft.jsonl:1", "Is it hot?", "coco/1.jpg", "It steams, so yes."),
        ("sft.jsonl:3", "What is on the plate?", "coco/2.jpg", "Rice and beans."),
        ("sft.jsonl:3", "Is it hot?", "coco/2.jpg", "It steams, so yes.")]
    _write(path, json.dumps(record) + "\n{not json\n")
    with pytest.raises(DataError, match=r"sft.jsonl:2: malformed JSON"):
        read_conversations(path, "sft.jsonl", "")
    _write(path, json.dumps({"image": "a.jpg", "conversations": [{"from": "human", "value": 3}]}) + "\n")
    with pytest.raises(DataError, match=r"sft.jsonl:1: conversations\[0\] must be an object"):
        read_conversations(path, "sft.jsonl", "")


def test_source_tables_are_checked() -> None:
    assert check_source(0, {"format": "nli-csv", "path": "nli.csv"})["weight"] == 1.0
    for table, message in [({"format": "csv", "path": "x"}, r"train_sources\[0\].format = 'csv'"),
                           ({"format": "nli-csv"}, "needs path"),
                           ({"format": "nli-csv", "path": "x", "weight": 0}, "weight = 0"),
                           ({"format": "nli-csv", "path": "x", "weigth": 2}, "unknown key.*weigth")]:
        with pytest.raises(ConfigError, match=message):
            check_source(0, table)


class _Numbers:
    def __init__(self, size: int) -> None:
        self.size, self.epochs = size, []

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __getitem__(self, index: int) -> int:
        return index


def test_a_weighted_mixture_draws_whole_passes_per_epoch() -> None:
    big, small = _Numbers(10), _Numbers(4)
    mixture = WeightedMixture([big, small], [0.5, 2.0], seed=3)
    assert len(mixture) == 5 + 8
    epoch0 = mixture.table.copy()
    assert sorted(np.bincount(epoch0[epoch0[:, 0] == 1, 1], minlength=4)) == [2, 2, 2, 2]  # two whole passes
    assert len(set(epoch0[epoch0[:, 0] == 0, 1])) == 5  # half of the big part, no repeats
    mixture.set_epoch(1)
    assert not np.array_equal(mixture.table, epoch0) and small.epochs == [0, 1]
    mixture.set_epoch(0)
    assert np.array_equal(mixture.table, epoch0)


def test_training_on_a_mixture_of_every_source(synthetic_tiny: Path, tmp_path: Path) -> None:
    names = _jpegs(tmp_path / "pretrain/images", synthetic_tiny, 12)
    assert len(names) == 12
    _write(tmp_path / "pretrain/data.json", json.dumps(_pretrain_records(names), indent=1))
    _write(tmp_path / "nli.csv", "sent0,sent1,hard_neg\n" + "".join(f"{c},{c} again,not {c}\n" for c in CAPTIONS * 4))
    _write(tmp_path / "sft.jsonl", "".join(json.dumps({"image": f"pretrain/images/{n}", "conversations": [
        {"from": "human", "value": f"<image>\nWhat is shown, {i}?"}, {"from": "gpt", "value": CAPTIONS[i % 4]}]}) + "\n"
        for i, n in enumerate(names)))
    sources = (f'[{{format = "mbeir", weight = 0.2}}, {{format = "nli-csv", path = "{tmp_path}/nli.csv"}}, '
               f'{{format = "llava-pretrain", path = "{tmp_path}/pretrain/data.json", images = "{tmp_path}/pretrain/images"}}, '
               f'{{format = "conversations", path = "{tmp_path}/sft.jsonl", weight = 2.0, instruction = "Answer the question."}}]')
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "uniir_cli", "train", "--preset", "demo", "--data-dir", str(synthetic_tiny),
                             "--run-dir", str(run), "--set", f"data.train_sources={sources}", "--set", "train.batch_size=16",
                             "--set", "train.epochs=1"], check=False, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (run / "metrics/train.jsonl").read_text().splitlines()]
    mbeir = len(read_queries(synthetic_tiny / Config().data.train_queries, unique=False))
    assert len(losses) == (round(0.2 * mbeir) + 16 + 12 + 24) // 16
    assert "train_sources" in (run / "run.toml").read_text()
