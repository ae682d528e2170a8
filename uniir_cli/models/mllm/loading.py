"""Load an MLLM embedder from a Hugging Face folder or Hub repo: stock classes, no remote code.

Supported: `llava` (xtuner/llava-phi-3-mini-hf, the fork's LLaVA-Phi-3.5), `llava_next`
(royokong/e5-v) and `qwen2_vl` (GME, VLM2Vec-Qwen2VL). The traps of older checkpoints are
repaired here, each recorded in the provenance (mllm_embedders.md 2.2, 8):

* the UniIR fork's `fromage_llava_phi35` config is plain Llava with a longrope Llama text
  model; its `model_type` is rewritten (transformers picks the key renaming by model type);
* processors saved before `patch_size` / `vision_feature_select_strategy` existed crash on
  the first image; they are filled from the model config (and one extra CLS token);
* a weight the checkpoint lacks is an error (only a missing generation head is fine: the
  embedder never runs it);
* a LoRA adapter folder (VLM2Vec) applies through peft; its weights are read as data, a
  pickled `adapter_model.bin` through the same no-code loader as released UniIR files.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uniir_cli.errors import ModelError, UniirError

log = logging.getLogger(__name__)

MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}
CONFIG_CLASSES = {"llava": "LlavaConfig", "llava_next": "LlavaNextConfig", "qwen2_vl": "Qwen2VLConfig"}
LEGACY_MODEL_TYPES = {"fromage_llava_phi35": "llava"}  # the UniIR fork's LLaVA-Phi-3.5
# What a model snapshot needs: configs, safetensors weights, tokenizer and template files, and
# an adapter's weights (a pickled adapter_model.bin is read as data only).
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "adapter_model.bin"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Weights an embedder may miss: it pools hidden states and never runs the generation head.
OPTIONAL_WEIGHTS = ("lm_head.weight",)
# Adapter keys saved by transformers 4 (text model at `model.`, vision at `visual.`) ->
# transformers 5's module paths, per architecture.
ADAPTER_KEY_RENAMES = {
    "qwen2_vl": (("base_model.model.model.layers.", "base_model.model.model.language_model.layers."),
                 ("base_model.model.visual.", "base_model.model.model.visual.")),
}


@dataclass
class Loaded:
    model: Any  # the transformers *ForConditionalGeneration
    processor: Any  # its AutoProcessor
    model_type: str
    source: Path
    repairs: list[str] = field(default_factory=list)


def resolve_source(pretrained: str, revision: str | None = None) -> Path:
    """A local folder as it is, a built-in toy model (`builtin:tiny-llava-next`), else a Hub
    repo id fetched into the Hugging Face cache."""
    if pretrained.startswith("builtin:"):
        from uniir_cli.models.mllm.tiny import BUILTIN_PREFIX, builtin_folder

        return builtin_folder(pretrained[len(BUILTIN_PREFIX):])
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path
    if not pretrained or pretrained.startswith((".", "/", "~")) or pretrained.count("/") != 1:
        raise ModelError(f"model.pretrained = {pretrained!r}: no such folder, and not a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    from uniir_cli.download.hub import CACHE_HINT, hub_call

    return Path(hub_call(f"model {pretrained}", pretrained, revision,
                         f"run `uniir download checkpoint` first or {CACHE_HINT}",
                         snapshot_download, pretrained, revision=revision, allow_patterns=SNAPSHOT_PATTERNS))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; a Hugging Face model folder has a config.json") from None
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}); download the model again") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def model_type_of(folder: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(supported model type, config dict, repairs) of an HF folder, or a ModelError saying why not."""
    path = folder / "config.json"
    config = read_json(path)
    declared = str(config.get("model_type", ""))
    repairs = []
    if declared in LEGACY_MODEL_TYPES:
        config = {**config, "model_type": LEGACY_MODEL_TYPES[declared], "architectures": [MODEL_CLASSES[LEGACY_MODEL_TYPES[declared]]]}
        repairs.append(f"config model_type {declared} read as {config['model_type']}")
    model_type = config["model_type"]
    if model_type not in MODEL_CLASSES:
        supported = ", ".join(MODEL_CLASSES)
        if config.get("auto_map"):
            raise ModelError(f"{path}: model_type {declared!r} needs the checkpoint's own Python code (auto_map); "
                             f"uniir runs no code from checkpoints (trust_remote_code stays off). Supported: {supported}")
        raise ModelError(f"{path}: model_type {declared!r} is not a supported MLLM embedder architecture; supported: {supported}")
    return model_type, config, repairs


def load_pretrained(pretrained: str, *, dtype: str = "bf16", adapter: str = "", revision: str | None = None) -> Loaded:
    """Model (eval mode, `dtype`, SDPA attention) and processor of an HF folder or repo."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # uniir draws its own progress
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ModelError(f"the mllm family needs transformers >= 5 (installed: {transformers.__version__}); "
                         "pip install -U 'transformers>=5'")
    source = resolve_source(pretrained, revision)
    model_type, config_dict, repairs = model_type_of(source)
    config_class = getattr(transformers, CONFIG_CLASSES[model_type])
    config = config_class.from_dict({k: v for k, v in config_dict.items() if k != "transformers_version"})
    model_class = getattr(transformers, MODEL_CLASSES[model_type])
    try:
        model, info = model_class.from_pretrained(
            source, config=config, dtype=DTYPES[dtype], attn_implementation="sdpa", output_loading_info=True,
            use_safetensors=any(source.glob("*.safetensors")) or None,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{source}: the {MODEL_CLASSES[model_type]} weights do not load ({_first_line(exc)})") from None
    missing = [k for k in info.get("missing_keys", []) if k not in OPTIONAL_WEIGHTS]
    unexpected = [*info.get("unexpected_keys", []), *(str(k) for k in info.get("mismatched_keys", []))]
    if missing or unexpected:
        what = f"lacks {len(missing)} weight(s)" if missing else f"has {len(unexpected)} weight(s) that fit no module"
        first = sorted(missing or unexpected)[:4]
        raise ModelError(f"{source}: the checkpoint {what} of {MODEL_CLASSES[model_type]} (first: {', '.join(first)}); "
                         "it is not a complete model of this architecture")
    processor, fixed = load_processor(source, model.config)
    repairs += fixed
    if adapter:
        model = apply_adapter(model, resolve_source(adapter, None), model_type)
        repairs.append(f"LoRA adapter {adapter} merged")
    return Loaded(model.eval(), processor, model_type, source, repairs)


def load_processor(folder: Path, config: Any) -> tuple[Any, list[str]]:
    """The folder's processor, with the fields a 2024-era Llava processor lacks filled from
    the model config, checked against the model's image token."""
    from transformers import AutoProcessor

    try:
        with _quiet_transformers():  # a legacy model_type in config.json makes it warn, harmlessly
            processor = AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"{folder}: no usable processor ({_first_line(exc)}); the folder needs the processor and "
                         "tokenizer files saved with the model (processor.save_pretrained)") from None
    repairs = []
    if hasattr(processor, "patch_size") and getattr(processor, "patch_size", None) is None:
        processor.patch_size = config.vision_config.patch_size
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
        processor.num_additional_image_tokens = 1  # CLIP's CLS token
        repairs.append("legacy processor: patch_size, vision_feature_select_strategy, num_additional_image_tokens "
                       "filled from the model config")
    image_token_id = _config_image_token(config)
    token = getattr(processor, "image_token", None)
    found = processor.tokenizer.convert_tokens_to_ids(token) if token else None
    if image_token_id is not None and found != image_token_id:
        raise ModelError(f"{folder}: processor and model disagree on the image token (processor {token!r} = id {found}, "
                         f"model config image token id {image_token_id}); save the processor that belongs to these weights")
    return processor, repairs


def _config_image_token(config: Any) -> int | None:
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def apply_adapter(model: Any, folder: Path, model_type: str) -> Any:
    """`model` with the peft LoRA/DoRA adapter of `folder` (or a uniir LoRA checkpoint)
    merged into its weights."""
    from peft import PeftConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    if (folder / "model.json").is_file():
        return merge_lora_checkpoint(model, folder, model_type)
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise ModelError(f"{folder}: no adapter_config.json; model.options.adapter must be a peft adapter folder")
    try:
        peft_config = PeftConfig.from_pretrained(str(folder))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{config_path}: not a peft adapter config ({_first_line(exc)})") from None
    weights = read_adapter_weights(folder)
    peft_model = get_peft_model(model, peft_config)
    expected = set(get_peft_model_state_dict(peft_model))  # keys as peft saves them
    renamed = {}
    for key, value in weights.items():
        for old, new in ADAPTER_KEY_RENAMES.get(model_type, ()):
            if key not in expected and key.startswith(old):
                key = new + key[len(old):]
        renamed[key] = value
    unknown = sorted(k for k in renamed if k not in expected)
    if unknown:
        raise ModelError(f"{folder}: {len(unknown)} adapter weight(s) match no module of the base model "
                         f"(first: {unknown[0]}); is the adapter for another base model?")
    absent = sorted(expected - set(renamed))
    if absent:
        raise ModelError(f"{folder}: the adapter lacks {len(absent)} of the weights its config declares (first: {absent[0]})")
    set_peft_model_state_dict(peft_model, renamed)
    return peft_model.merge_and_unload()


def merge_lora_checkpoint(model: Any, folder: Path, model_type: str) -> Any:
    """`model` with a uniir LoRA checkpoint merged: its earlier stage's adapter first, then
    its own (the next training stage starts from the merged model)."""
    from uniir_cli.models.checkpoint_io import read_folder
    from uniir_cli.models.mllm.lora import add_lora, lora_settings, merge_lora

    meta, tensors = read_folder(folder)
    kwargs = meta.get("kwargs", {})
    if meta.get("model") != "mllm" or not kwargs.get("lora"):
        raise ModelError(f"{folder}: not a LoRA checkpoint of the mllm family; model.options.adapter takes a peft "
                         "adapter folder or a uniir LoRA checkpoint")
    if kwargs.get("adapter"):
        model = apply_adapter(model, resolve_source(kwargs["adapter"]), model_type)
    add_lora(model, lora_settings(kwargs["lora"]))
    prefix = "backbone."
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = {k for k in model.state_dict() if "lora_" in k}
    if set(own) != expected or len(own) != len(tensors):
        first = sorted(set(own) ^ expected) or sorted(tensors)
        raise ModelError(f"{folder}: its adapter does not fit this base model (first: {first[0]}); "
                         f"it was trained on {kwargs.get('pretrained')!r}")
    model.load_state_dict(own, strict=False)
    for param in model.parameters():
        param.requires_grad = False
    return merge_lora(model)


def read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors: safetensors, else the pickled .bin read without running code."""
    safetensors_file = folder / "adapter_model.safetensors"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(safetensors_file)
    pickled = folder / "adapter_model.bin"
    if pickled.is_file():
        from uniir_cli.models.checkpoint_io import load_upstream_pth

        return load_upstream_pth(pickled).state_dict
    raise ModelError(f"{folder}: no adapter_model.safetensors or adapter_model.bin")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, UniirError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
