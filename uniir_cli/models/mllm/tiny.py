"""A tiny random LLaVA-NeXT built offline (`model.pretrained = "builtin:tiny-llava-next"`).

`uniir demo --preset mllm-tiny` trains an MLLM embedder on the synthetic M-BEIR on a laptop
CPU, with nothing downloaded: the model is E5-V's architecture at toy size (a 2-layer
Llama-3-style text model over a 2-layer CLIP vision tower, anyres tiles of 28 px), seeded
random weights, and a byte-level BPE trained here on the synthetic M-BEIR's texts, with
Llama-3's special tokens so the `e5v` prompts apply. It is written once per machine to
`~/.cache/uniir/` (UNIIR_CACHE_DIR), atomically, and the same on every machine.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("tiny-llava-next",)
VERSION = 1  # bump when the builder changes, so an old cached copy is not reused
LLAMA3_SPECIALS = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": "<pad>",
                   "extra": ("<|start_header_id|>", "<|end_header_id|>", "<image>")}


def cache_dir() -> Path:
    return Path(os.environ.get("UNIIR_CACHE_DIR") or Path.home() / ".cache" / "uniir")


def builtin_folder(name: str) -> Path:
    """The folder of a built-in model, built on first use."""
    if name not in BUILTINS:
        from uniir_cli.errors import ConfigError

        raise ConfigError(f"model.pretrained = {BUILTIN_PREFIX}{name!r}: no such built-in model; there is {', '.join(BUILTINS)}")
    folder = cache_dir() / f"{name}-v{VERSION}"
    if not (folder / "model.safetensors").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        try:
            build_tiny_llava_next(staging)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def synthetic_corpus() -> list[str]:
    """Captions, questions and passages of the synthetic M-BEIR, and E5-V's prompt words."""
    from uniir_cli.data.synthetic import scenes

    rng = random.Random(0)
    texts = ["Summary above sentence in one word:", "Summary above image in one word:",
             "Summary above image and text in one word:"]
    for domain in scenes.DOMAINS:
        for key in scenes.scene_keys(domain)[::7]:
            scene = scenes.scene_from_key(key, rng)
            texts += [*scenes.captions(scene), scenes.question(scene), scenes.passage(scene)]
    return texts


def train_tokenizer(corpus: list[str], *, bos: str | None, eos: str, pad: str, extra: tuple[str, ...],
                    chat_template: str | None, vocab_size: int) -> Any:
    """A deterministic byte-level BPE over `corpus` with real special tokens (never split), BOS
    prepended by the post-processor when given, and left padding."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(corpus, trainer=trainer)
    specials = list(dict.fromkeys([t for t in (bos, eos, pad) if t] + list(extra)))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))])
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    named = {eos, pad, bos}
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad,
                                   extra_special_tokens=[t for t in specials if t not in named], padding_side="left",
                                   chat_template=chat_template)


def build_tiny_llava_next(out: Path, *, seed: int = 0) -> Path:
    """Write the tiny LLaVA-NeXT (config, safetensors weights, tokenizer, processor) to `out`."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = train_tokenizer(synthetic_corpus(), chat_template=None, vocab_size=600, **LLAMA3_SPECIALS)
    tile = 28
    pinpoints = [[tile * h, tile * w] for h, w in ((1, 2), (2, 1), (2, 2))]
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=tile, patch_size=14),
        text_config=LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
                                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints, image_seq_length=(tile // 14) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(config).save_pretrained(out)
    LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                                image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
    ).save_pretrained(out)
    return out
