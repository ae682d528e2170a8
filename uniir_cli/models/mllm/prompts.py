"""Prompt presets: how an MLLM embedder turns an item into the string it reads.

A preset is data, a TOML file (`prompts/<name>.toml` here, or any path): a template per
role (query, candidate) and modality (text, image, image_text), an optional chat `wrapper`
around them, where the UniIR instruction goes, whether an EOS token is appended, and the
pooling. Placeholders: `{text}`, `{image}` (the processor's own image token, never a
hard-coded string), and in the wrapper `{content}` and `{system}`. Rendering is plain
substitution of whole placeholders: nothing is ever sliced by character count (the UniIR
fork's `prompt[3:]` cut `"<|u"` off a Phi-3.5 turn).

Instruction placement: `user` embeds UniIR's joined "Instruction. text" as `{text}` (what
UniIR's models and the fork do); `system` puts the instruction into the wrapper's
`{system}` (GME) and the bare text into `{text}`; `off` drops it (zero-shot E5-V).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from uniir_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MODALITIES = ("text", "image", "image_text")
ROLES = ("query", "candidate")
PLACEMENTS = ("user", "system", "off")
POOLINGS = ("last", "last_nonpad", "before_token")
_TEMPLATE_FIELDS = {"text": {"text"}, "image": {"image"}, "image_text": {"text", "image"}}
_WRAPPER_FIELDS = {"content", "system"}
_KEYS = {"description", "wrapper", "instruction", "system", "append_eos", "pooling", "pool_token", "max_length", *ROLES}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")


@dataclass(frozen=True)
class PromptPreset:
    name: str
    templates: dict[str, dict[str, str]]  # role -> modality -> template
    wrapper: str = "{content}"
    instruction: str = "user"
    system: str = ""  # the wrapper's {system} when there is no instruction (candidates)
    append_eos: bool = False
    pooling: str = "last"
    pool_token: str = ""  # pooling = before_token: the hidden state before this token
    max_length: int = 0  # most tokens per item (0: no limit)
    description: str = ""

    def render(self, *, text: str | None, has_image: bool, image_token: str, instruction: str | None, query: bool) -> str:
        """The whole prompt string of one item (`text` already normalised; for queries with
        placement `user` it carries the instruction already)."""
        modality = "image_text" if has_image and text else "image" if has_image else "text"
        template = self.templates["query" if query else "candidate"][modality]
        content = _substitute(template, {"text": text or "", "image": image_token})
        system = instruction if (query and self.instruction == "system" and instruction) else self.system
        return _substitute(self.wrapper, {"content": content, "system": system})


def _substitute(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)


def builtin_prompts() -> list[str]:
    folder = resources.files("uniir_cli.models.mllm") / "prompts"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_prompt(name_or_path: str) -> PromptPreset:
    """A built-in preset by name, or a TOML file by path; unknown keys and placeholders are
    errors naming the file and key."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"model.options.prompt: no such prompt file {path}")
        source, text = str(path), path.read_text(encoding="utf-8")
    elif name_or_path in builtin_prompts():
        source = f"prompt preset {name_or_path!r}"
        text = (resources.files("uniir_cli.models.mllm") / "prompts" / f"{name_or_path}.toml").read_text(encoding="utf-8")
    else:
        raise ConfigError(f"model.options.prompt = {name_or_path!r} is neither a built-in prompt preset "
                          f"({', '.join(builtin_prompts())}) nor a .toml file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    return parse_prompt(data, source, path.stem if path.suffix == ".toml" else name_or_path)


def parse_prompt(data: dict[str, Any], source: str, name: str) -> PromptPreset:
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; a prompt preset has {', '.join(sorted(_KEYS))}")
    templates: dict[str, dict[str, str]] = {}
    for role in ROLES:
        table = data.get(role, data.get("query") if role == "candidate" else None)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{role}] table missing (templates text, image, image_text; "
                              "[candidate] may be left out to reuse [query])")
        extra = sorted(set(table) - set(MODALITIES))
        if extra:
            raise ConfigError(f"{source}: [{role}] has unknown key(s) {', '.join(extra)}; use {', '.join(MODALITIES)}")
        templates[role] = {}
        for modality in MODALITIES:
            template = table.get(modality)
            if not isinstance(template, str):
                raise ConfigError(f"{source}: {role}.{modality} template missing or not a string")
            _check_fields(template, _TEMPLATE_FIELDS[modality], f"{source}: {role}.{modality}")
            templates[role][modality] = template
    wrapper = data.get("wrapper", "{content}")
    _check_fields(wrapper, _WRAPPER_FIELDS, f"{source}: wrapper")
    if "{content}" not in wrapper:
        raise ConfigError(f"{source}: wrapper has no {{content}} placeholder")
    preset = PromptPreset(
        name=name, templates=templates, wrapper=wrapper,
        instruction=data.get("instruction", "user"), system=data.get("system", ""),
        append_eos=data.get("append_eos", False), pooling=data.get("pooling", "last"),
        pool_token=data.get("pool_token", ""), max_length=data.get("max_length", 0),
        description=data.get("description", ""),
    )
    for key, value, allowed in (("instruction", preset.instruction, PLACEMENTS), ("pooling", preset.pooling, POOLINGS)):
        if value not in allowed:
            raise ConfigError(f"{source}: {key} = {value!r}; use one of {', '.join(allowed)}")
    if preset.instruction == "system" and "{system}" not in wrapper:
        raise ConfigError(f"{source}: instruction = \"system\" needs a {{system}} placeholder in the wrapper")
    if (preset.pooling == "before_token") != bool(preset.pool_token):
        raise ConfigError(f"{source}: pool_token goes with pooling = \"before_token\" (and only with it)")
    if not isinstance(preset.append_eos, bool) or not isinstance(preset.max_length, int) or preset.max_length < 0:
        raise ConfigError(f"{source}: append_eos must be true/false and max_length an integer >= 0")
    return preset


def _check_fields(template: str, allowed: set[str], where: str) -> None:
    used = set(_PLACEHOLDER.findall(template))
    unknown = sorted(used - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                          f"this template may use {', '.join('{' + a + '}' for a in sorted(allowed))}")
    missing = sorted(a for a in allowed & {"text", "image"} if a not in used)
    if missing:
        raise ConfigError(f"{where}: the template must contain {', '.join('{' + m + '}' for m in missing)}")
