"""Prompt presets: the rendered strings byte for byte (mllm_embedders.md 1.2, 2.3, 7), one BOS,
and clear errors for a preset with an unknown key or placeholder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.mllm.tiny_models import random_image
from uniir_cli.data.instructions import QueryText
from uniir_cli.errors import ConfigError
from uniir_cli.models.mllm.prompts import builtin_prompts, load_prompt
from uniir_cli.registry import build_model

E5V_TURN = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
GME_TURN = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
QUERY = QueryText("a dog on the grass", "Find a photo that matches the caption.")

# (preset, image token, role, text, has image, expected string). Texts are what the pipeline
# passes: a candidate's normalised text, a query's UniIR-joined text.
GOLDEN = [
    ("e5v", "<image>", "candidate", "A red bus.", False, E5V_TURN.format("A red bus.\nSummary above sentence in one word: ")),
    ("e5v", "<image>", "candidate", None, True, E5V_TURN.format("<image>\nSummary above image in one word: ")),
    ("e5v", "<image>", "candidate", "A red bus.", True,
     E5V_TURN.format("<image>\nA red bus.\nSummary above image and text in one word: ")),
    # zero-shot E5-V: the instruction is left out of queries
    ("e5v", "<image>", "query", QUERY.joined, False, E5V_TURN.format("A dog on the grass.\nSummary above sentence in one word: ")),
    ("llava-phi3", "<image>", "query", QUERY.joined, True,
     "<|user|>\n<image>\nFind a photo that matches the caption. a dog on the grass.\n"
     "Summary above image and text in one word: <|end|>\n<|assistant|>\n"),
    ("llava-phi3", "<image>", "candidate", "A red bus.", False,
     "<|user|>\nA red bus.\nSummary above sentence in one word: <|end|>\n<|assistant|>\n"),
    # the fork at HEAD (spec 9.3): Phi-3 chat turn with an image, its literal string without
    ("fork-phi35", "<image>", "query", QUERY.joined, False,
     "<|user|>\nFind a photo that matches the caption. a dog on the grass.<|end|><|assistant|>\n \n"),
    ("fork-phi35", "<image>", "candidate", "A red bus.", True, "<|user|>\n<image>\nA red bus.<|end|>\n<|assistant|>\n"),
    ("fork-phi35", "<image>", "candidate", None, True, "<|user|>\n<image>\n<|end|>\n<|assistant|>\n"),
    ("gme", "<|image_pad|>", "query", QUERY.joined, False,
     GME_TURN.format("Find a photo that matches the caption.", "A dog on the grass.")),
    ("gme", "<|image_pad|>", "candidate", "A red bus.", True,
     GME_TURN.format("You are a helpful assistant.", "<|vision_start|><|image_pad|><|vision_end|>A red bus.")),
    ("gme", "<|image_pad|>", "candidate", None, True,
     GME_TURN.format("You are a helpful assistant.", "<|vision_start|><|image_pad|><|vision_end|>")),
    ("vlm2vec-qwen2vl", "<|image_pad|>", "query", QUERY.joined, True,
     "<|image_pad|> Find a photo that matches the caption. a dog on the grass.\n"),
    ("vlm2vec-qwen2vl", "<|image_pad|>", "candidate", None, True, "<|image_pad|> Represent the given image.\n"),
    ("vlm2vec-qwen2vl", "<|image_pad|>", "candidate", "A red bus.", False, "A red bus."),
]


@pytest.mark.parametrize(("preset", "image_token", "role", "text", "has_image", "expected"), GOLDEN)
def test_golden_prompt_strings(preset: str, image_token: str, role: str, text: str | None, has_image: bool, expected: str) -> None:
    prompt = load_prompt(preset)
    query = QUERY if role == "query" else None
    if query is not None and prompt.instruction != "user":
        rendered = prompt.render(text=query.bare, has_image=has_image, image_token=image_token,
                                 instruction=query.normalised_instruction, query=True)
    else:
        rendered = prompt.render(text=text, has_image=has_image, image_token=image_token, instruction=None, query=query is not None)
    assert rendered == expected


def test_every_builtin_preset_loads() -> None:
    assert {"e5v", "llava-phi3", "fork-phi35", "gme", "vlm2vec-qwen2vl"} <= set(builtin_prompts())
    for name in builtin_prompts():
        assert load_prompt(name).description


@pytest.mark.parametrize(("variant", "preset", "first"), [("llava_phi3", "llava-phi3", "<s>"), ("llava_next", "e5v", "<|begin_of_text|>"),
                                                          ("llava_phi3", "fork-phi35", "<s>"), ("qwen2vl", "gme", "<|im_start|>")])
def test_the_processor_adds_one_bos_and_the_image_tokens(tiny_mllms: dict[str, Path], variant: str, preset: str, first: str) -> None:
    """The tokenizer adds BOS (Qwen2-VL has none); the prompt must not add a second one."""
    model = build_model("mllm", pretrained=str(tiny_mllms[variant]), prompt=preset, dtype="fp32")
    processor = model.processor
    tokenizer = processor.hf.tokenizer
    for text, image in (("A red bus.", None), (None, random_image(60, 80)), ("A red bus.", random_image(90, 60))):
        ids = processor.process(text, image)["input_ids"].tolist()
        assert tokenizer.convert_ids_to_tokens(ids[:2])[0] == first and ids[1] != ids[0], ids[:3]
        assert (processor.image_token_id in ids) == (image is not None)
        assert (ids[-1] == processor.eos_id) == load_prompt(preset).append_eos or preset == "gme"  # gme's prompt ends in EOS


def write_prompt(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "my-prompt.toml"
    path.write_text(body, encoding="utf-8")
    return path


VALID = '[query]\ntext = "{text}"\nimage = "{image}"\nimage_text = "{image} {text}"\n'


def test_a_prompt_file_by_path_reuses_query_templates_for_candidates(tmp_path: Path) -> None:
    prompt = load_prompt(str(write_prompt(tmp_path, 'wrapper = "<s>{content}</s>"\n' + VALID)))
    assert prompt.name == "my-prompt"
    assert prompt.render(text="x", has_image=True, image_token="<I>", instruction=None, query=False) == "<s><I> x</s>"


@pytest.mark.parametrize(("body", "message"), [
    ('pooling_mode = "last"\n' + VALID, "unknown key(s) pooling_mode"),
    (VALID.replace('"{text}"', '"{caption}"', 1), "query.text: unknown placeholder(s) {caption}"),
    (VALID.replace('"{image}"', '"picture"', 1), "query.image: the template must contain {image}"),
    ('pooling = "mean"\n' + VALID, "pooling = 'mean'; use one of last, last_nonpad, before_token"),
    ('instruction = "system"\n' + VALID, "needs a {system} placeholder in the wrapper"),
    ('wrapper = "<s>"\n' + VALID, "wrapper has no {content} placeholder"),
    ('pooling = "before_token"\n' + VALID, "pool_token goes with pooling"),
    (VALID + '[candidate]\ntext = "{text}"\nimage = "{image}"\nimage_text = "{image}{text}"\ncaption = "x"\n',
     "[candidate] has unknown key(s) caption"),
    ('pooling = "last\n', "not valid TOML"),
])
def test_a_bad_prompt_file_names_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = write_prompt(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_prompt(str(path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_an_unknown_preset_name_lists_the_builtin_ones() -> None:
    with pytest.raises(ConfigError, match="neither a built-in prompt preset .*e5v.*gme"):
        load_prompt("e6v")
