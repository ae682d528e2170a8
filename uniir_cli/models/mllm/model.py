"""The `mllm` retriever: one embedder over stock transformers MLLMs (Llava, LlavaNext, Qwen2-VL).

An item's embedding is the base model's `last_hidden_state` (after the final norm; the
generation head and its vocab-sized logits never run) at the prompt's pooling position,
L2-normalised in fp32. Weights load in bf16 by default (`dtype`), with SDPA attention.
Options: `prompt` (a preset name or TOML path, `prompts.py`), `adapter` (a peft LoRA
folder merged on load: VLM2Vec), `max_image_tokens` (an image-token budget: E5-V's anyres
spends ~2,340 tokens on a COCO image; it changes results and is part of the model config,
so the run manifest records it).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models.base import EncoderBatch, PathLike, Retriever
from uniir_cli.models.mllm.loading import DTYPES, load_pretrained, model_type_of
from uniir_cli.models.mllm.lora import add_lora, is_lora_tensor, lora_settings
from uniir_cli.models.mllm.processor import IMAGE_KEYS, SEQUENCE_KEYS, MllmProcessor
from uniir_cli.models.mllm.prompts import load_prompt
from uniir_cli.registry import register_folder, register_model

log = logging.getLogger(__name__)


@register_model("mllm")
class MllmRetriever(Retriever):
    def __init__(
        self,
        size: str = "",
        pretrained: str = "",
        prompt: str = "e5v",
        dtype: str = "bf16",
        adapter: str = "",
        max_image_tokens: int = 0,
        revision: str = "",
        reference: str = "",
        lora: dict[str, Any] | None = None,
        temperature: float = 0.05,
    ) -> None:
        super().__init__(size=size, pretrained=pretrained, prompt=prompt, dtype=dtype, adapter=adapter,
                         max_image_tokens=max_image_tokens, revision=revision, reference=reference,
                         lora=dict(lora or {}), temperature=temperature)
        if not pretrained:
            raise ConfigError("the mllm model needs model.pretrained: a Hugging Face folder or Hub repo id "
                              "(e.g. royokong/e5-v), or --checkpoint FOLDER")
        if dtype not in DTYPES:
            raise ConfigError(f"model.options.dtype = {dtype!r}; use one of {', '.join(DTYPES)}")
        if not isinstance(max_image_tokens, int) or max_image_tokens < 0:
            raise ConfigError(f"model.options.max_image_tokens = {max_image_tokens!r}; use an integer >= 0 (0: the model's own)")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ConfigError(f"model.options.temperature = {temperature!r}; use a number > 0 (E5-V and the fork: 0.05)")
        if lora:
            lora_settings(lora)  # bad settings fail before the weights load
        preset = load_prompt(prompt)
        loaded = load_pretrained(pretrained, dtype=dtype, adapter=adapter, revision=revision or None)
        self.backbone = loaded.model
        self.model_type = loaded.model_type
        self.provenance = {"source": str(loaded.source), "repairs": loaded.repairs} if loaded.repairs else {}
        for repair in loaded.repairs:
            log.info("%s: %s", loaded.source, repair)
        self.dtype = DTYPES[dtype]
        if max_image_tokens:
            fit_image_budget(loaded.processor, self.backbone.config, self.model_type, max_image_tokens)
        self._processor = MllmProcessor(loaded.processor, preset, max_image_tokens=max_image_tokens)
        self.pooling = preset.pooling
        self.register_buffer("_log_scale", torch.tensor(math.log(1 / temperature)), persistent=False)
        self.adapted = add_lora(self.backbone, lora_settings(lora)) if lora else []
        for key in ("pretrained", "adapter"):  # a LoRA checkpoint names its base: from anywhere
            if self.config[key] and Path(self.config[key]).is_dir():
                self.config[key] = str(Path(self.config[key]).resolve())

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.config.get_text_config().hidden_size)

    @property
    def processor(self) -> MllmProcessor:
        return self._processor

    def hidden_states(self, batch: EncoderBatch) -> torch.Tensor:
        """[B, T, H] post-norm hidden states of the base model (no generation head)."""
        inputs = {k: v for k, v in batch.tensors.items() if k in SEQUENCE_KEYS or k in IMAGE_KEYS}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        try:
            return self.backbone.model(**inputs, use_cache=False).last_hidden_state
        except ValueError as exc:
            if "token" in str(exc) and "feature" in str(exc):
                raise ModelError(f"processor and model disagree on image tokens ({str(exc).splitlines()[0]}); "
                                 "use the processor saved with these weights") from None
            raise

    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        states = self.hidden_states(batch)
        pooled = pool(states, batch.tensors["attention_mask"], batch.tensors["input_ids"], self.pooling,
                      self._processor.pool_token_id)
        return F.normalize(pooled.float(), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        """A fixed temperature (`temperature`, 0.05 as E5-V and the fork), not learnt."""
        return self._log_scale

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """With LoRA, only the adapter: the base weights come from `pretrained`."""
        state = self.state_dict()
        return {k: v for k, v in state.items() if is_lora_tensor(k)} if self.adapted else state

    def load_checkpoint_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        if not self.adapted:
            return super().load_checkpoint_state_dict(state_dict, source)
        from uniir_cli.models.checkpoint_io import key_listing

        expected = set(self.checkpoint_state_dict())
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or unexpected:
            what = f"lacks adapter weights {key_listing(missing)}" if missing else f"has weights outside the adapter {key_listing(unexpected)}"
            raise ModelError(f"{source}: the LoRA checkpoint {what}; it belongs to another model.options.lora")
        self.load_state_dict(state_dict, strict=False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        # transformers 5 renamed gradient_* to activation_checkpointing_* (the old names warn)
        if enable and hasattr(self.backbone, "activation_checkpointing_enable"):
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif enable:
            self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            getattr(self.backbone, "activation_checkpointing_disable", self.backbone.gradient_checkpointing_disable)()

    # -- checkpoints: a Hugging Face folder (config, weights, processor) plus model.json; with
    # LoRA the adapter only (model.safetensors) and model.json naming the base ------------------
    def save_pretrained(self, directory: PathLike) -> Path:
        from uniir_cli.models.checkpoint_io import save_folder, write_model_json

        directory = Path(directory)
        if self.adapted:
            return save_folder(directory, name=self.registry_name, kwargs=self.config, state_dict=self.checkpoint_state_dict(),
                               embedding_dim=self.embedding_dim, provenance=self.provenance)
        self.backbone.save_pretrained(directory)
        self._processor.hf.save_pretrained(directory)
        kwargs = {**self.config, "pretrained": ".", "adapter": "", "revision": ""}
        return write_model_json(directory, self.registry_name, kwargs, self.embedding_dim, self.provenance)

    @classmethod
    def from_pretrained(cls, directory: PathLike) -> Retriever:
        from uniir_cli.models.checkpoint_io import read_model_json

        directory = Path(directory)
        if not (directory / "model.json").is_file():
            return cls.build(pretrained=str(directory)).eval()
        meta = read_model_json(directory)
        kwargs = dict(meta.get("kwargs", {}))
        if kwargs.get("lora"):
            from uniir_cli.models.checkpoint_io import read_folder

            model = cls.build(**kwargs)
            model.provenance = dict(meta.get("provenance", {}))
            model.load_checkpoint_state_dict(read_folder(directory)[1], str(directory))
            return model.eval()
        if kwargs.get("pretrained") in (".", ""):
            kwargs["pretrained"] = str(directory)
        return cls.build(**kwargs).eval()


def merge_lora_folder(checkpoint: Path, out: Path) -> MllmRetriever:
    """Write the full model of a LoRA checkpoint (its base with every stage's adapter merged)
    to `out` as a Hugging Face folder + model.json; returns that model."""
    from uniir_cli.models.checkpoint_io import read_model_json

    kwargs = dict(read_model_json(checkpoint).get("kwargs", {})) if (Path(checkpoint) / "model.json").is_file() else {}
    if not kwargs.get("lora"):
        raise ModelError(f"{checkpoint}: not a LoRA checkpoint of the mllm family (no model.options.lora in its model.json); "
                         "nothing to merge")
    merged = MllmRetriever.build(**{**kwargs, "lora": {}, "adapter": str(Path(checkpoint).resolve())})
    merged.save_pretrained(out)
    return merged


def pool(states: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, how: str, token_id: int | None) -> torch.Tensor:
    """One vector per row: the last position (left padding, refused otherwise), the last
    attended position (either padding), or the position before the first `token_id`."""
    if how == "last":
        if not bool(mask[:, -1].all()):
            raise ModelError("pooling 'last' needs left-padded batches (a row ends in padding); "
                             "use pooling = \"last_nonpad\" or pad on the left")
        return states[:, -1]
    rows = torch.arange(states.shape[0], device=states.device)
    if how == "last_nonpad":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        return states[rows, torch.where(mask.bool(), positions, -1).max(dim=1).values]
    hits = ids == token_id
    if not bool(hits.any(dim=1).all()):
        raise ModelError(f"pooling 'before_token': a prompt lacks the pool token (id {token_id}); check the prompt preset")
    return states[rows, hits.int().argmax(dim=1) - 1]


def fit_image_budget(processor: Any, config: Any, model_type: str, budget: int) -> None:
    """Limit the image views the processor makes to `budget` tokens: Qwen2-VL's pixel count,
    LlavaNext's anyres grids (processor and model config alike). Fixed-size Llava images
    only get checked (`MllmProcessor.process` refuses one over the budget)."""
    image_processor = processor.image_processor
    if model_type == "qwen2_vl":
        import dataclasses

        merge = int(getattr(image_processor, "merge_size", 2))
        pixels = budget * (int(image_processor.patch_size) * merge) ** 2
        size = image_processor.size  # a SizeDict: shortest_edge / longest_edge are pixel counts
        image_processor.size = dataclasses.replace(
            size, longest_edge=pixels, shortest_edge=min(int(size.shortest_edge or pixels), pixels))
    elif model_type == "llava_next":
        from PIL import Image

        fitting = []
        for height, width in config.image_grid_pinpoints:
            blank = Image.new("RGB", (width, height))
            ids = processor(text=[processor.image_token], images=[blank], return_tensors="pt")["input_ids"]
            if int((ids == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum()) <= budget:
                fitting.append([height, width])
        if not fitting:
            raise ConfigError(f"model.options.max_image_tokens = {budget}: even the smallest anyres grid of this model "
                              "needs more image tokens; raise the budget")
        image_processor.image_grid_pinpoints = fitting
        config.image_grid_pinpoints = fitting


@register_folder("config.json")
def recognise_hf_folder(directory: Path) -> str:
    """`--checkpoint` may be a plain Hugging Face folder of a supported MLLM."""
    model_type_of(directory)
    return "mllm"
