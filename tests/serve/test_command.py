"""`uniir serve` as a command: its help, and the one-line errors it gives before serving."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniir_cli.app import build_app

runner = CliRunner()


def test_the_cli_does_not_import_the_web_stack() -> None:
    code = ("import sys; from uniir_cli.app import build_app; build_app(); import uniir_cli; "
            "print(sorted({'fastapi', 'uvicorn', 'starlette', 'jinja2', 'python_multipart', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_help_names_the_options() -> None:
    result = runner.invoke(build_app(), ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--run-dir", "--compare-run-dir", "--host", "--port", "--device", "--max-upload-mb"):
        assert option in result.output


def test_a_missing_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uniir_cli.serve

    monkeypatch.setattr(uniir_cli.serve, "EXTRA_MODULES", ("fastapi", "no_such_module_uniir_test"))
    result = runner.invoke(build_app(), ["serve", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: uniir serve needs no_such_module_uniir_test: pip install 'uniir[serve]'"


def test_a_port_in_use_is_one_line_before_anything_loads(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(build_app(), ["serve", "--run-dir", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: port {port} on 127.0.0.1 is in use (another server?); pass another --port, or stop that server"
