"""MLLM embedders on the Hugging Face Hub (`uniir download checkpoint e5v`): fetched as they
are, into the Hugging Face cache, where `model.pretrained = "<repo id>"` finds them (also
with HF_HUB_OFFLINE=1 afterwards). Nothing is converted: the `mllm` family reads
Hugging Face folders directly. An adapter (VLM2Vec) comes with its base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uniir_cli.download.disk import check_free_space
from uniir_cli.download.hub import CACHE_HINT, cached_path, hub_cache_dir, hub_call
from uniir_cli.errors import ConfigError, ModelError


@dataclass(frozen=True)
class HubModel:
    name: str
    repo: str
    preset: str  # the `uniir eval --preset` that uses it
    size_bytes: int  # approximate, bf16 safetensors (mllm_embedders.md 4)
    reproduces: str
    base: str | None = None  # the base model repo an adapter applies to


HUB_MODELS: dict[str, HubModel] = {
    m.name: m
    for m in (
        HubModel("e5v", "royokong/e5-v", "e5v", 16_700_000_000,
                 "E5-V zero-shot; the fork's E5-V column (6 pairs, local, other prompts) with --preset e5v-fork"),
        HubModel("llava-phi3-mini", "xtuner/llava-phi-3-mini-hf", "llava-phi3-mini", 8_300_000_000,
                 "the fork's zero-shot LLaVA-Phi-3 column with --preset llava-phi3-mini-fork"),
        HubModel("gme-qwen2vl-2b", "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "gme-qwen2vl-2b", 4_400_000_000,
                 "GME-2B zero-shot (UMRB 64.45 on its card; no published M-BEIR table)"),
        HubModel("vlm2vec-qwen2vl-2b", "TIGER-Lab/VLM2Vec-Qwen2VL-2B", "vlm2vec-qwen2vl-2b", 4_420_000_000,
                 "VLM2Vec-Qwen2VL-2B zero-shot (MMEB; no published M-BEIR table)", base="Qwen/Qwen2-VL-2B-Instruct"),
    )
}


def get_hub_model(name: str) -> HubModel:
    try:
        return HUB_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown MLLM checkpoint {name!r}: choose from {', '.join(HUB_MODELS)} (see --list)") from None


def download_hub_model(name: str, *, revision: str | None = None, check_disk: bool = True) -> list[Path]:
    """The snapshot folder of the model's repo (and of its base), each checked to be a
    model (or adapter) the `mllm` family loads."""
    from huggingface_hub import snapshot_download

    from uniir_cli.models.mllm.loading import SNAPSHOT_PATTERNS

    spec = get_hub_model(name)
    repos = [spec.repo] + ([spec.base] if spec.base else [])
    if check_disk:
        marker = "adapter_config.json" if spec.base else "config.json"
        cached = cached_path(spec.repo, marker, "model", revision) is not None
        check_free_space({hub_cache_dir(): (0 if cached else spec.size_bytes, f"{name} download")})
    folders = []
    for repo in repos:
        folder = Path(hub_call(f"model {repo}", repo, revision, CACHE_HINT, snapshot_download, repo,
                               revision=revision, allow_patterns=SNAPSHOT_PATTERNS))
        check_folder(folder, adapter=repo == spec.repo and spec.base is not None)
        folders.append(folder)
    return folders


def check_folder(folder: Path, *, adapter: bool = False) -> None:
    """A ModelError unless `folder` is a model folder of a supported architecture (or a peft adapter)."""
    from uniir_cli.models.mllm.loading import model_type_of

    if adapter:
        if not (folder / "adapter_config.json").is_file():
            raise ModelError(f"{folder}: no adapter_config.json; expected a peft adapter folder")
        return
    model_type_of(folder)
    if not any(folder.glob("*.safetensors")):
        raise ModelError(f"{folder}: no *.safetensors weights; uniir loads MLLM weights from safetensors only")
