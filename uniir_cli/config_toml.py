"""Config from and to TOML: preset loading, merging, overrides, validation, run.toml output.

The defaults live in `uniir_cli.config`. A preset is a TOML delta that may
`extends = [...]` other presets; tables deep-merge, arrays replace. Precedence:
defaults < extended presets < the preset < `--set section.key=value` < dedicated flags.
Unknown keys and wrong types are errors with a "did you mean" hint, naming the layer that
brought them: the preset file, `--set section.key=value` or the dedicated flag.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from uniir_cli.config import NUMERIC_RANGES, Config
from uniir_cli.data.benchmark import DATASET_BY_SLUG, EVAL_PAIR_BY_NAME
from uniir_cli.data.catalog import PAIR_NAME_RE, SLUG_RE
from uniir_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class ResolvedConfig:
    config: Config
    chain: list[str]  # presets applied, base first
    name: str  # preset name for default run-dir names ("custom" without a preset)
    persisted: Config | None = None  # without the one-off flags: what a run keeps in run.toml


# --------------------------------------------------------------------------- presets


def presets_dir() -> Path:
    """Presets ship inside the wheel (uniir_cli/presets); in a source checkout they are ./presets."""
    packaged = Path(str(resources.files("uniir_cli"))) / "presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "presets"


def list_presets() -> list[str]:
    root = presets_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.toml"))


def _preset_path(ref: str, relative_to: Path | None) -> Path:
    if ref.endswith(".toml"):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if path.is_file():
            return path
        raise ConfigError(f"preset file {path} does not exist")
    path = presets_dir() / f"{ref}.toml"
    if path.is_file():
        return path
    hint = _did_you_mean(ref, list_presets())
    raise ConfigError(f"unknown preset {ref!r}{hint}; `uniir train --help` lists presets, or pass a .toml path")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _load_chain(ref: str, relative_to: Path | None, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[str]]:
    """Merged delta of a preset and everything it extends, plus the chain of names."""
    path = _preset_path(ref, relative_to).resolve()
    if path in seen:
        cycle = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"presets extend each other in a cycle: {cycle}")
    raw = _read_toml(path)
    extends = raw.pop("extends", [])
    if isinstance(extends, str):
        extends = [extends]
    if not isinstance(extends, list) or not all(isinstance(e, str) for e in extends):
        raise ConfigError(f"{path}: `extends` must be a list of preset names")
    merged: dict[str, Any] = {}
    chain: list[str] = []
    for parent in extends:
        delta, parent_chain = _load_chain(parent, path.parent, (*seen, path))
        merged = deep_merge(merged, delta)
        chain.extend(c for c in parent_chain if c not in chain)
    _check_keys(raw, source=str(path))
    chain.append(ref)
    return deep_merge(merged, raw), chain


def deep_merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Tables merge recursively; everything else (arrays included) is replaced."""
    out = dict(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- validation


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section_types(section: str) -> dict[str, Any]:
    cls = typing.get_type_hints(Config)[section]
    return typing.get_type_hints(cls)


def _check_keys(raw: dict[str, Any], source: str) -> None:
    sections = [f.name for f in dataclasses.fields(Config)]
    for section, table in raw.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section [{section}]{_did_you_mean(section, sections)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        types = _section_types(section)
        for key, value in table.items():
            if key not in types:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}{_did_you_mean(key, list(types))}"
                )
            _check_type(value, types[key], f"{source}: {section}.{key}")


def _type_label(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any, where: str) -> None:
    origin = typing.get_origin(tp)
    ok: bool
    if tp is Any:
        ok = True
    elif origin is Literal:
        ok = value in typing.get_args(tp)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        ok = isinstance(value, list)
        if ok:
            for i, item in enumerate(value):
                _check_type(item, item_tp, f"{where}[{i}]")
    elif origin is dict:
        _, item_tp = typing.get_args(tp)
        ok = isinstance(value, dict)
        if ok:
            for key, item in value.items():
                _check_type(item, item_tp, f"{where}.{key}")
    else:  # pragma: no cover - schema uses only the types above
        raise AssertionError(f"unsupported schema type {tp}")
    if not ok:
        raise ConfigError(f"{where} = {value!r}: expected {_type_label(tp)}")


def _out_of_range(value: float, low: float | None, high: float | None, low_allowed: bool) -> str:
    """Why `value` is outside its range, or ""."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if low is not None and (value < low or (value == low and not low_allowed)):
        return f"must be {'>=' if low_allowed else '>'} {low}"
    if high is not None and value >= high:
        return f"must be < {high}"
    return ""


def _check_semantics(config: Config, source: str) -> None:
    """Constraints that types alone do not express."""
    mode = config.data.instruction_mode
    if mode not in ("random", "first", "none") and not (
        mode.startswith("index=") and mode[len("index=") :].isdigit()
    ):
        raise ConfigError(
            f"{source}: data.instruction_mode = {mode!r}: expected 'random', 'first', 'none' or 'index=N'"
        )
    # Datasets a tree declares (datasets.toml) are checked against the tree when it is read;
    # here only the shape, and M-BEIR's own names.
    for slug in [*config.data.train_datasets, *config.data.upsample]:
        if not SLUG_RE.fullmatch(slug):
            raise ConfigError(f"{source}: unknown dataset {slug!r} in data.train_datasets/upsample{_did_you_mean(slug, list(DATASET_BY_SLUG))}")
    for task in config.data.tasks:
        match = PAIR_NAME_RE.fullmatch(task)
        if match is None or (match["slug"] in DATASET_BY_SLUG and task not in EVAL_PAIR_BY_NAME):
            hint = _did_you_mean(task, list(EVAL_PAIR_BY_NAME))
            raise ConfigError(f"{source}: data.tasks has unknown pair {task!r}{hint} (pairs are <dataset>_task<N>)")
    for key, bounds in NUMERIC_RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in values:
            problem = _out_of_range(item, *bounds)
            if problem:
                raise ConfigError(f"{source}: {key} = {value}: {problem}")
    if len(config.train.betas) != 2:
        raise ConfigError(f"{source}: train.betas must have two values, got {config.train.betas}")


def build_config(raw: dict[str, Any], source: str = "config") -> Config:
    """A validated `Config` from a (merged) dict of sections."""
    _check_keys(raw, source)
    sections = {}
    for f in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[f.name]
        values = {k: _coerce(v, _section_types(f.name)[k]) for k, v in raw.get(f.name, {}).items()}
        defaults = dataclasses.asdict(cls())
        sections[f.name] = cls(**deep_merge(defaults, values))
    config = Config(**sections)
    _check_semantics(config, source)
    return config


def _coerce(value: Any, tp: Any) -> Any:
    """Ints are valid floats in TOML-land; store them as floats so dumps round-trip."""
    if tp is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(tp) is list and typing.get_args(tp)[0] is float:
        return [float(v) for v in value]
    if typing.get_origin(tp) is dict and typing.get_args(tp)[1] is float:
        return {k: float(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); value is a TOML literal.

    A bare word (no quotes) is accepted for string keys, so `--set model.size=base` works.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, literal = text.split("=", 1)
    parts = [p.strip() for p in dotted.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must be section.key (e.g. train.lr=1e-5)")
    try:
        value = tomllib.loads(f"v = {literal.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = _BareString(literal.strip())
    return parts, value


class _BareString(str):
    """A --set value that is not a TOML literal; valid only where a string is expected."""


def _apply_override(raw: dict[str, Any], parts: list[str], value: Any, origin: str) -> dict[str, Any]:
    section, key = parts[0], parts[1]
    sections = [f.name for f in dataclasses.fields(Config)]
    if section not in sections:
        raise ConfigError(f"{origin}: unknown section {section!r}{_did_you_mean(section, sections)}")
    types = _section_types(section)
    if key not in types:
        raise ConfigError(f"{origin}: unknown key {section}.{key}{_did_you_mean(key, list(types))}")
    if isinstance(value, _BareString):
        target = types[key] if len(parts) == 2 else typing.get_args(types[key])[1]
        is_text = target is str or target is Any or (
            typing.get_origin(target) is Literal and all(isinstance(a, str) for a in typing.get_args(target))
        )
        if not is_text:
            raise ConfigError(f"{origin}: {value!r} is not a TOML value for {'.'.join(parts)}")
        value = str(value)
    delta: Any = value
    for part in reversed(parts[1:]):
        delta = {part: delta}
    return deep_merge(raw, {section: delta})


# --------------------------------------------------------------------------- entry point


# Flags that ask one command for something extra rather than define the run: not kept in run.toml.
ONE_OFF = ("retrieve.rag",)


def resolve_config(
    preset: str | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> ResolvedConfig:
    """Defaults < `base` (an existing run.toml) < preset < --set < dedicated flags.

    The config is validated after each layer, so a wrong type or value is blamed on the layer
    that brought it (the preset, `--set section.key=...` or the flag), not on the preset.
    """
    raw: dict[str, Any] = dict(base or {})
    chain: list[str] = []
    source = "stored run.toml" if base else "config"
    if preset:
        delta, chain = _load_chain(preset, Path.cwd(), ())
        raw = deep_merge(raw, delta)
        source = f"preset {preset}"
    config = build_config(raw, source)
    layers = [(f"--set {text}", *parse_override(text)) for text in overrides or []]
    layers += [(f"flag for {dotted}", dotted.split("."), v) for dotted, v in (flags or {}).items() if v is not None]
    kept = dict(raw)
    for origin, parts, value in layers:
        raw = _apply_override(raw, parts, value, origin)
        config = build_config(raw, origin)
        if ".".join(parts) not in ONE_OFF:
            kept = _apply_override(kept, parts, value, origin)
    persisted = build_config(kept, "config")
    name = Path(preset).stem if preset and preset.endswith(".toml") else (preset or "custom")
    return ResolvedConfig(config=config, chain=chain, name=name.replace("/", "-"), persisted=persisted)


def load_config_file(path: Path) -> dict[str, Any]:
    """A stored run.toml as a raw dict (validated when built)."""
    raw = _read_toml(path)
    _check_keys(raw, str(path))
    return raw


# --------------------------------------------------------------------------- TOML output


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else json.dumps(key)


def to_toml(config: Config) -> str:
    """The resolved config as TOML (what `--show-config` prints and run.toml stores)."""
    lines: list[str] = []
    for section, table in config.to_dict().items():
        lines.append(f"[{section}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)
