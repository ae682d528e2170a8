"""The CLI surface: help for every command, versions, the error boundary, --show-config."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from uniir_cli.app import COMMANDS, build_app

runner = CliRunner()
APP = build_app()
NAMES = [name for name, _ in COMMANDS]


def test_root_help_lists_every_command() -> None:
    result = runner.invoke(APP, ["--help"])
    assert result.exit_code == 0
    listed = re.findall(r"^│ (\w+) ", result.output, flags=re.MULTILINE)
    assert sorted(listed) == sorted(NAMES)  # Typer lists the groups (download, data) last


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = runner.invoke(APP, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"uniir {name}" in result.output
    # A flag takes no value, so its help shows none (Typer's own --help line aside).
    flagged = [line for line in result.output.splitlines() if "<bool>" in line and "--help" not in line]
    assert flagged == []


def test_version_lists_libraries_and_cuda() -> None:
    result = runner.invoke(APP, ["--version"])
    assert result.exit_code == 0
    for word in ["uniir", "torch", "open_clip", "transformers", "faiss", "CUDA visible"]:
        assert word in result.output


def test_version_lists_the_registered_models() -> None:
    from uniir_cli.registry import registered_models

    result = runner.invoke(APP, ["--version"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("models: "))
    listed = line.removeprefix("models: ").split(", ")
    assert listed == registered_models() and {"clip_sf", "clip_ff"} <= set(listed)


@pytest.mark.parametrize("name", ["train", "embed", "index", "retrieve", "score", "eval"])
def test_show_config_prints_resolved_toml(name: str) -> None:
    result = runner.invoke(APP, [name, "--preset", "clip-sf-large", "--set", "train.lr=2e-5", "--show-config"])
    assert result.exit_code == 0, result.output
    assert "[train]" in result.output and "lr = 2e-05" in result.output


def test_config_error_is_one_line_with_exit_2() -> None:
    result = runner.invoke(APP, ["train", "--preset", "clip-sf-large", "--set", "train.bach_size=3"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "train.bach_size" in lines[0] and "did you mean 'batch_size'" in lines[0]


def test_traceback_only_with_uniir_debug() -> None:
    args = [sys.executable, "-m", "uniir_cli", "train", "--preset", "no-such-preset"]
    plain = subprocess.run(args, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "unknown preset 'no-such-preset'" in plain.stderr
    debug = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "UNIIR_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr



def test_error_text_with_brackets_is_printed_verbatim() -> None:
    result = runner.invoke(APP, ["train", "--preset", "[/data] x.toml"])
    assert result.exit_code == 2
    assert "[/data] x.toml does not exist" in result.output


def test_a_hub_warning_is_printed_once() -> None:
    import subprocess
    import sys

    code = ("from uniir_cli.app import configure_logging; configure_logging(False); import logging; "
            "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5]')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert stderr.count("Retrying in 1s") == 1, stderr
