"""Presets, overrides, strict keys and TOML round trips."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from uniir_cli.config import Config
from uniir_cli.config_toml import (
    build_config,
    deep_merge,
    list_presets,
    parse_override,
    presets_dir,
    resolve_config,
    to_toml,
)
from uniir_cli.data.catalog import MBEIR_CATALOG
from uniir_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_resolves_and_round_trips(name: str) -> None:
    resolved = resolve_config(name)
    assert resolved.chain[-1] == name
    dumped = to_toml(resolved.config)
    assert build_config(tomllib.loads(dumped)) == resolved.config


def test_shipped_top_level_presets_exist() -> None:
    names = set(list_presets())
    assert {"clip-sf-large", "clip-sf-base", "clip-ff-large", "clip-ff-base", "demo"} <= names


def test_clip_sf_large_has_upstream_recipe() -> None:
    config = resolve_config("clip-sf-large").config
    assert (config.model.name, config.model.size, config.model.pretrained) == ("clip_sf", "large", "openai")
    assert config.train.batch_size == 105
    assert config.train.lr == 1e-5
    assert config.train.betas == [0.9, 0.98]
    assert config.train.eps == 1e-6
    assert config.train.weight_decay == 0.2
    assert config.train.epochs == 20
    assert config.data.instruction_mode == "random"


def test_clip_ff_large_overrides_batch_and_t5_lr() -> None:
    config = resolve_config("clip-ff-large").config
    assert config.train.batch_size == 90
    assert config.train.param_group_lr == {"t5": 5e-4}


def test_defaults_live_in_dataclasses() -> None:
    assert resolve_config(None).config == Config()


PINNED = "# Pinned on purpose"  # first line of a preset that repeats default values on purpose (recipes)


def _repeats(table: dict, inherited: dict, prefix: str) -> list[str]:
    """Keys of `table` whose value equals what the preset gets anyway (tables compared key by key)."""
    found: list[str] = []
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(inherited.get(key), dict):
            found += _repeats(value, inherited[key], f"{prefix}{key}.")
        elif key in inherited and inherited[key] == value:
            found.append(f"{prefix}{key} = {value!r}")
    return found


@pytest.mark.parametrize("name", list_presets())
def test_presets_do_not_repeat_defaults(name: str, tmp_path: Path) -> None:
    """Only a preset whose first line says "# Pinned on purpose: why" may restate a value it
    would get anyway from the schema defaults or the presets it extends."""
    path = presets_dir() / f"{name}.toml"
    if path.read_text().startswith(PINNED):
        return
    raw = tomllib.loads(path.read_text())
    extends = json.dumps(raw.pop("extends", []))
    parents = _write(tmp_path / "parents.toml", f"extends = {extends}\n")
    inherited = resolve_config(str(parents)).config.to_dict()
    assert _repeats(raw, inherited, "") == [], f"{path} repeats defaults; remove them or start it with {PINNED!r}"


def test_deep_merge_merges_tables_and_replaces_arrays() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    merged = deep_merge(base, {"a": {"y": [3]}, "c": 2})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_chain_and_precedence(tmp_path: Path) -> None:
    _write(tmp_path / "base.toml", 'extends = ["clip-sf-large"]\n[train]\nlr = 2e-5\nepochs = 3\n')
    mine = _write(tmp_path / "mine.toml", 'extends = ["base.toml"]\n[train]\nepochs = 5\n')
    resolved = resolve_config(
        str(mine), overrides=["train.epochs=7", "train.batch_size=8"], flags={"train.batch_size": 16}
    )
    assert resolved.chain[-2:] == ["base.toml", str(mine)]
    assert "clip-sf-large" in resolved.chain
    config = resolved.config
    assert config.train.lr == 2e-5  # from base.toml, beats clip-sf-large
    assert config.train.epochs == 7  # --set beats the preset
    assert config.train.batch_size == 16  # a dedicated flag beats --set
    assert resolved.name == "mine"


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.toml", 'extends = ["b.toml"]\n')
    _write(tmp_path / "b.toml", 'extends = ["a.toml"]\n')
    with pytest.raises(ConfigError, match="cycle"):
        resolve_config(str(tmp_path / "a.toml"))


def test_unknown_key_in_preset_names_file_and_suggests(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", "[train]\nbatch_szie = 4\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(str(bad))
    message = str(info.value)
    assert str(bad) in message and "train.batch_szie" in message and "did you mean 'batch_size'" in message


def test_unknown_section_suggests(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", "[trian]\nlr = 1.0\n")
    with pytest.raises(ConfigError, match=r"unknown section \[trian\].*'train'"):
        resolve_config(str(bad))


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", '[train]\nbatch_size = "big"\n')
    with pytest.raises(ConfigError, match=r"train.batch_size = 'big': expected int"):
        resolve_config(str(bad))
    with pytest.raises(ConfigError, match=r"retrieve.pool = 'all': expected 'local' \| 'global' \| 'both'"):
        resolve_config(None, overrides=['retrieve.pool="all"'])
    with pytest.raises(ConfigError, match=r"train.gradient_checkpointing = 1: expected bool"):
        resolve_config(None, overrides=["train.gradient_checkpointing=1"])


def test_wrong_type_is_blamed_on_the_layer_that_brought_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config("demo", overrides=['train.lr="a"'])
    assert str(info.value) == """--set train.lr="a": train.lr = 'a': expected float"""
    with pytest.raises(ConfigError, match=r"^--set train.batch_size=0: train.batch_size = 0: must be >= 1$"):
        resolve_config("demo", overrides=["train.epochs=2", "train.batch_size=0"])
    with pytest.raises(ConfigError, match=r"^flag for retrieve.pool: retrieve.pool = 'all': expected"):
        resolve_config("demo", overrides=["retrieve.pool=both"], flags={"retrieve.pool": "all"})
    with pytest.raises(ConfigError, match=r"^flag for train.batch_size: train.batch_size = 'x': expected int"):
        resolve_config("demo", flags={"train.batch_size": "x"})
    bad = _write(tmp_path / "bad.toml", 'extends = ["demo"]\n[train]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match=rf"^{bad}: train.lr = 'fast': expected float"):
        resolve_config(str(bad), overrides=["train.lr=1e-4"])  # a later --set does not excuse the file
    child = _write(tmp_path / "child.toml", 'extends = ["bad.toml"]\n')
    with pytest.raises(ConfigError, match=rf"^{bad}: train.lr"):  # the file that holds the value, not the child
        resolve_config(str(child))


def test_wrong_type_from_set_on_the_command_line() -> None:
    from typer.testing import CliRunner

    from uniir_cli.app import build_app

    result = CliRunner().invoke(build_app(), ["train", "--preset", "demo", "--set", 'train.lr="a"', "--show-config"])
    assert result.exit_code == 2
    assert """--set train.lr="a": train.lr = 'a': expected float""" in result.output
    assert "preset demo" not in result.output


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", "[train\n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid TOML"):
        resolve_config(str(bad))


def test_unknown_preset_suggests_close_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'clip-sf-large'"):
        resolve_config("clip-sf-larg")


def test_override_parsing() -> None:
    assert parse_override("train.lr=3e-5") == (["train", "lr"], 3e-5)
    assert parse_override("train.betas=[0.9, 0.99]") == (["train", "betas"], [0.9, 0.99])
    assert parse_override('model.size="base"') == (["model", "size"], "base")
    for bad in ["train.lr", "lr=1", ".lr=1", "train.=1"]:
        with pytest.raises(ConfigError):
            parse_override(bad)


def test_bare_words_are_strings_only_where_strings_belong() -> None:
    config = resolve_config(None, overrides=["model.size=base", "retrieve.pool=both"]).config
    assert (config.model.size, config.retrieve.pool) == ("base", "both")
    with pytest.raises(ConfigError, match="not a TOML value for train.epochs"):
        resolve_config(None, overrides=["train.epochs=many"])


def test_nested_model_options_and_int_to_float() -> None:
    config = resolve_config(None, overrides=["model.options.drop_path=0", "train.lr=1"]).config
    assert config.model.options == {"drop_path": 0}
    assert isinstance(config.train.lr, float)


def test_semantic_checks() -> None:
    with pytest.raises(ConfigError, match="instruction_mode"):
        resolve_config(None, overrides=['data.instruction_mode="sometimes"'])
    assert resolve_config(None, overrides=['data.instruction_mode="index=2"']).config.data.instruction_mode == "index=2"
    with pytest.raises(ConfigError, match="did you mean 'mscoco_task0'"):
        resolve_config(None, overrides=['data.tasks=["mscoco_task00"]'])
    with pytest.raises(ConfigError, match="train.batch_size = 0: must be >= 1"):
        resolve_config(None, overrides=["train.batch_size=0"])


def test_to_toml_escapes_strings() -> None:
    config = Config()
    config.data.instructions = 'odd "name"\\with\ttab.tsv'
    config.model.options = {"a key": "x", "n": 1.5}
    parsed = tomllib.loads(to_toml(config))
    assert parsed["data"]["instructions"] == config.data.instructions
    assert build_config(parsed) == config
    assert set(parsed) == {f.name for f in dataclasses.fields(Config)}


def test_upsampling_names_datasets() -> None:
    config = resolve_config("data/mbeir-per-dataset").config
    assert config.data.upsample["webqa"] == 100_000 and len(config.data.train_datasets) == 10
    with pytest.raises(ConfigError, match="unknown dataset 'Web QA'"):
        resolve_config(None, overrides=["data.upsample={ 'Web QA' = 5 }"])
    # a slug of the right shape is checked against the data tree's datasets when training reads it
    config = resolve_config(None, overrides=["data.upsample={ webqq = 5 }"]).config
    with pytest.raises(ConfigError, match="data.upsample: unknown dataset 'webqq' \\(did you mean 'webqa'\\?\\)"):
        MBEIR_CATALOG.datasets_named(config.data.upsample, "data.upsample")


def test_every_numeric_setting_has_a_checked_range() -> None:
    import typing

    from uniir_cli.config import NUMERIC_RANGES

    numeric = set()
    for section, cls in typing.get_type_hints(Config).items():
        for name, hint in typing.get_type_hints(cls).items():
            if hint in (int, float) or typing.get_args(hint)[-1:] in ((int,), (float,)):
                numeric.add(f"{section}.{name}")
    assert numeric == set(NUMERIC_RANGES)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("score.rank_cutoff=-5", "score.rank_cutoff = -5: must be >= 1"),
        ("train.lr=-1", "train.lr = -1.0: must be > 0"),
        ("train.lr=nan", "train.lr = nan: must be a finite number"),
        ("embed.num_workers=-2", "embed.num_workers = -2: must be >= 0"),
        ("train.betas=[0.9, 1.0]", "train.betas = [0.9, 1.0]: must be < 1"),
        ("data.upsample={cirr = 0}", "data.upsample = {'cirr': 0}: must be >= 1"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_key(setting: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config("demo", [setting])
    assert str(caught.value) == f"--set {setting}: {message}"
