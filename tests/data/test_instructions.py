"""Instructions: upstream's text normalisation (character for character), tsv, prompt choice."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from uniir_cli.data.ids import hash_dids
from uniir_cli.data.instructions import (
    InstructionMode,
    Instructions,
    PromptPicker,
    candidate_text,
    eval_cand_modalities,
    format_string,
    own_positives,
    query_text,
    read_instructions,
)
from uniir_cli.data.mbeir import CandidateRecord, QueryRecord, read_queries
from uniir_cli.data.pool_reader import DidTable
from uniir_cli.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ('""', ""),
        ("hello world", "Hello world."),
        ("what color is it?", "What color is it?"),
        ("stop!", "Stop!"),
        ("done.", "Done."),
        ('"quoted prompt"', "Quoted prompt."),
        ('  "spaced inside" ', "Spaced inside."),
        ('" inner space "', " inner space ."),  # quotes go after whitespace: inner spaces stay
        ("line\r\nbreak\r", "Line\nbreak."),
        ("éclair", "Éclair."),
        ("a", "A."),
        ("already Capital", "Already Capital."),
        ("ends with quote.\"", "Ends with quote."),
    ],
)
def test_format_string(raw, expected):
    assert format_string(raw) == expected


def test_query_text_spec_example_and_edge_cases():
    prompt = "find a wikipedia image that answers this question"
    assert query_text("what color is the roof", prompt) == "Find a wikipedia image that answers this question. what color is the roof."
    assert query_text(None, prompt) == "Find a wikipedia image that answers this question."  # image-only query
    assert query_text("", "Find it.") == "Find it."
    assert query_text("Is it red?", "find it") == "Find it. Is it red?"
    assert query_text('say "hi"', "prompt") == 'Prompt. say "hi.'  # the outer strip of `"` is upstream's
    assert query_text("a\rb", '"quoted"') == "Quoted. ab."
    assert query_text("what color is the roof", None) == "What color is the roof."
    assert query_text(None, None) == ""
    assert candidate_text(None) == "" and candidate_text("a red dress") == "A red dress."


TSV = (
    "query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\tprompt_3\tprompt_4\n"
    "text\timage\tMSCOCO\t9\tFind an everyday image match with caption\tShow me a picture\t\t\n"
    "image\ttext\tMSCOCO\t9\tFind a caption describe the an image\t \t\r\n"
    "\n"
    "image,text\timage,text\tOVEN\t5\t\"Find a Wiki image-text pair\"\tsecond\tthird\n"
)


def test_read_instructions(tmp_path):
    path = tmp_path / "query_instructions.tsv"
    path.write_text(TSV, encoding="utf-8")
    instructions = read_instructions(path)
    assert len(instructions) == 3
    assert instructions.get((9, "text", "image")) == ("Find an everyday image match with caption", "Show me a picture")
    assert instructions.get((9, "image", "text")) == ("Find a caption describe the an image",)
    assert instructions.require((5, "image,text", "image,text"))[0] == '"Find a Wiki image-text pair"'
    assert (9, "text", "image") in instructions and (1, "text", "image") not in instructions
    with pytest.raises(DataError, match=rf"{path}: no instruction for dataset 1, query modality 'text', candidate modality 'image'"):
        instructions.require((1, "text", "image"))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("text\timage\tMSCOCO", "3 tab-separated columns, expected at least 4"),
        ("text\timage\tMSCOCO\tnine\tp", "dataset_id 'nine' .* is not an integer"),
        ("text\tvideo\tMSCOCO\t9\tp", "unknown modality 'video'"),
    ],
)
def test_bad_tsv_rows(tmp_path, row, message):
    path = tmp_path / "i.tsv"
    path.write_text(TSV.split("\n", 1)[0] + "\ntext\ttext\tWebQA\t2\tp\n" + row + "\n")
    with pytest.raises(DataError, match=rf"{path}:3: {message}"):
        read_instructions(path)


def test_tsv_missing_duplicate_and_not_utf8(tmp_path, caplog):
    with pytest.raises(DataError, match="instructions file not found"):
        read_instructions(tmp_path / "none.tsv")
    path = tmp_path / "i.tsv"
    path.write_text("h\ntext\ttext\tWebQA\t2\tfirst\ntext\ttext\tWebQA\t2\tsecond\n")
    with caplog.at_level(logging.WARNING):
        assert read_instructions(path).get((2, "text", "text")) == ("second",)
    assert "repeats line 2" in caplog.text
    path.write_bytes(b"h\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_instructions(path)


def instructions() -> Instructions:
    return Instructions({(9, "text", "image"): ("p0", "p1", "p2", "p3"), (9, "image", "text"): ("only",)})


def query(qid: str = "9:1", txt: str | None = "a dog", modality: str = "text", pos=("9:2",)) -> QueryRecord:
    img = None if modality == "text" else "x.jpg"
    return QueryRecord(qid, txt, img, modality, list(pos))


def test_modes():
    key = (9, "text", "image")
    assert PromptPicker(instructions(), "first").pick(key) == "p0"
    assert PromptPicker(instructions(), "index=2").pick(key) == "p2"
    assert PromptPicker(instructions(), InstructionMode("index", 1)).pick(key) == "p1"
    none = PromptPicker(None, "none")
    assert none.pick(key) is None and not none.enabled
    assert none.query_text(query(txt="a dog"), "image").joined == "A dog."
    with pytest.raises(DataError, match=r"index 1 is out of range for dataset 9, 'image' -> 'text', which has 1 prompt"):
        PromptPicker(instructions(), "index=1").pick((9, "image", "text"))
    with pytest.raises(DataError, match="no instruction for dataset 4"):
        PromptPicker(instructions(), "random").pick((4, "image", "image"))
    for bad in ("sometimes", "index=-1", "index=x", "index="):
        with pytest.raises(ConfigError, match="random, first, index=N"):
            InstructionMode.parse(bad)
    assert str(InstructionMode.parse(" Index=3 ")) == "index=3" and str(InstructionMode.parse("NONE")) == "none"
    with pytest.raises(ConfigError, match="needs the instructions tsv"):
        PromptPicker(None, "first")


def test_random_is_seeded_and_reproducible():
    key = (9, "text", "image")
    draws = [PromptPicker(instructions(), "random", seed=7).pick(key) for _ in range(2)]
    assert draws[0] == draws[1]
    sequence = lambda seed: [p.pick(key) for p in [PromptPicker(instructions(), seed=seed)] for _ in range(40)]  # noqa: E731
    assert sequence(2023) == sequence(2023)
    assert sequence(2023) != sequence(2024)
    assert set(sequence(2023)) == {"p0", "p1", "p2", "p3"}


def test_per_item_choice_ignores_call_order():
    picker = PromptPicker(instructions(), seed=3)
    queries = [query(f"9:{i}") for i in range(1, 60)]
    forward = [t.joined for t in picker.query_texts(queries, ["image"] * len(queries))]
    backward = [t.joined for t in PromptPicker(instructions(), seed=3).query_texts(queries[::-1], ["image"] * len(queries))[::-1]]
    assert forward == backward
    assert {t.split(".")[0] for t in forward} == {"P0", "P1", "P2", "P3"}
    assert forward[0].endswith(" a dog.")
    image_only = PromptPicker(instructions(), "first").query_text(query("9:9", None, "image"), "text")
    assert image_only.joined == "Only."
    assert (image_only.bare, image_only.normalised_instruction) == ("", "Only.")
    sequential = PromptPicker(instructions(), seed=3).query_texts(queries, ["image"] * len(queries), per_item=False)
    assert sequential == PromptPicker(instructions(), seed=3).query_texts(queries, ["image"] * len(queries), per_item=False)


def test_eval_cand_modalities_uses_own_dataset_positives():
    # OVEN (5) queries list InfoSeek (6) documents first: the key must come from a 5: positive.
    pool_records = {
        "6:1": CandidateRecord("6:1", "t", None, "text"),
        "5:2": CandidateRecord("5:2", "t", "x.jpg", "image,text"),
        "5:3": CandidateRecord("5:3", "t", "y.jpg", "image,text"),
    }
    queries = [query("5:1", pos=("6:1", "5:2")), query("5:4", pos=("5:9", "5:3"))]
    assert own_positives(queries[0]) == ["5:2"]
    assert eval_cand_modalities(queries, pool_records) == ["image,text", "image,text"]
    assert eval_cand_modalities(queries, {k: v.modality for k, v in pool_records.items()}) == ["image,text"] * 2
    codes = np.array([0, 2, 2], np.int8)
    table = DidTable.from_arrays(hash_dids(["6:1", "5:2", "5:3"]), codes, source="pool")
    assert eval_cand_modalities(queries, table) == ["image,text", "image,text"]
    assert eval_cand_modalities([], table) == []
    with pytest.raises(DataError, match=r"q\.jsonl: query 5:7: none of its positives from dataset 5 \(5:8\) is in the candidate pool"):
        eval_cand_modalities([query("5:7", pos=("6:1", "5:8"))], table, where="q.jsonl")
    with pytest.raises(DataError, match=r"query 5:7: none of its positives from dataset 5 \(none listed\)"):
        eval_cand_modalities([query("5:7", pos=("6:1",))], pool_records)


def test_eval_cand_modalities_error_names_the_query_line(tmp_path):
    rows = [query("5:1", pos=("5:2",)), query("5:7", pos=("6:1", "5:8"))]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(q.to_json()) + "\n" for q in rows))
    pool = {"5:2": CandidateRecord("5:2", "t", "x.jpg", "image,text")}
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: query 5:7: none of its positives"):
        eval_cand_modalities(read_queries(path), pool, where="ignored.jsonl")
