"""MLLM preprocessing: render the prompt, run the model's own HF processor on one item in
a DataLoader worker, and left-pad a batch of mixed text / image / image+text items.

Items are processed one at a time (the HF processor expands each image token into that
image's placeholder count) and batched here: token rows left-padded, so the last position
is every item's last prompt token, and image tensors concatenated in item order, which is
the order of their image tokens in the batch. Left-padded mixed batches give the same
embeddings as items alone (mllm_embedders.md 3: 6e-8 in fp32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import torch

from uniir_cli.errors import DataError
from uniir_cli.models.base import EncoderBatch, Processor, has_content
from uniir_cli.models.mllm.prompts import PromptPreset

if TYPE_CHECKING:
    from PIL import Image

    from uniir_cli.data.instructions import QueryText

# Per-token rows (left-padded with these values) and per-image tensors (concatenated).
SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}
IMAGE_KEYS = ("pixel_values", "image_sizes", "image_grid_thw")


class MllmProcessor(Processor):
    """Picklable (the HF processor and the preset are plain data), holds no weights."""

    pads_to_longest = True

    def __init__(self, hf_processor: Any, prompt: PromptPreset, *, max_image_tokens: int = 0) -> None:
        self.hf = hf_processor
        self.prompt = prompt
        self.max_image_tokens = max_image_tokens
        tokenizer = hf_processor.tokenizer
        self.image_token: str = hf_processor.image_token
        self.image_token_id = int(tokenizer.convert_tokens_to_ids(self.image_token))
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.eos_id = tokenizer.eos_token_id
        self.pool_token_id = int(tokenizer.convert_tokens_to_ids(prompt.pool_token)) if prompt.pool_token else None

    def render(self, text: Optional[str], has_image: bool, query: Optional[QueryText]) -> str:
        """The prompt string of one item: the text as the preset places the instruction."""
        instruction = None
        if query is not None and self.prompt.instruction != "user":
            text = query.bare or None
            instruction = query.normalised_instruction
        return self.prompt.render(text=text, has_image=has_image, image_token=self.image_token,
                                  instruction=instruction, query=query is not None)

    def process(self, text: Optional[str], image: Optional[Image.Image], query: Optional[QueryText] = None) -> dict[str, Any]:
        has_text, has_image = has_content(text, image)
        prompt = self.render(text if has_text else None, has_image, query)
        encoded = self.hf(text=[prompt], images=[image] if has_image else None, return_tensors="pt")
        item: dict[str, Any] = {"has_text": has_text, "has_image": has_image}
        for key, value in encoded.items():
            if key in SEQUENCE_KEYS:
                item[key] = value[0]
            elif key in IMAGE_KEYS:
                item[key] = value
        ids = item["input_ids"]
        if self.prompt.append_eos and self.eos_id is not None and int(ids[-1]) != self.eos_id:
            item = self._append(item, int(self.eos_id))
        image_tokens = int((item["input_ids"] == self.image_token_id).sum())
        if self.max_image_tokens and image_tokens > self.max_image_tokens:
            raise DataError(f"an image takes {image_tokens} tokens, over model.options.max_image_tokens = "
                            f"{self.max_image_tokens} (this model's smallest image view); raise the budget")
        limit = self.prompt.max_length
        if limit and len(item["input_ids"]) > limit:
            if int((item["input_ids"][limit:] == self.image_token_id).sum()):
                raise DataError(f"an item's image tokens run past the prompt's max_length = {limit} "
                                f"({len(item['input_ids'])} tokens); lower model.options.max_image_tokens")
            item = {k: (v[:limit] if k in SEQUENCE_KEYS else v) for k, v in item.items()}
        return item

    @staticmethod
    def _append(item: dict[str, Any], token: int) -> dict[str, Any]:
        """`item` with one more token (attended, text type) at its end."""
        out = dict(item)
        for key, fill in SEQUENCE_KEYS.items():
            if key in out:
                value = token if key == "input_ids" else 1 if key == "attention_mask" else fill
                out[key] = torch.cat([out[key], out[key].new_tensor([value])])
        return out

    def collate(self, items: Sequence[dict[str, Any]]) -> EncoderBatch:
        has_text = torch.tensor([bool(it["has_text"]) for it in items], dtype=torch.bool)
        has_image = torch.tensor([bool(it["has_image"]) for it in items], dtype=torch.bool)
        length = max(len(it["input_ids"]) for it in items)
        tensors: dict[str, torch.Tensor] = {}
        for key, fill in SEQUENCE_KEYS.items():
            if key in items[0]:
                value = self.pad_id if fill is None else fill
                tensors[key] = torch.stack([_left_pad(it[key], length, value) for it in items])
        for key in IMAGE_KEYS:
            parts = [it[key] for it in items if key in it]
            if parts:
                tensors[key] = _concat_images(parts) if key == "pixel_values" else torch.cat(parts)
        return EncoderBatch(has_text, has_image, tensors)


def _left_pad(row: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.cat([torch.full((length - len(row),), value, dtype=row.dtype), row])


def _concat_images(parts: list[torch.Tensor]) -> torch.Tensor:
    """Images in item order; LlavaNext's per-image crop stacks ([1, crops, 3, H, W]) padded with
    zero crops to the largest, as its processor pads a batch (the model reads `image_sizes`)."""
    if parts[0].dim() == 5:
        crops = max(p.shape[1] for p in parts)
        parts = [torch.cat([p, p.new_zeros((p.shape[0], crops - p.shape[1], *p.shape[2:]))], dim=1) for p in parts]
    return torch.cat(parts)
