"""`uniir serve`: a local web page to search with a run's model, browse its results and compare
it with another run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from uniir_cli.commands import options
from uniir_cli.errors import ConfigError


def run(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run to serve: its model, embeddings and retrieval results.", exists=True, file_okay=False)],
    compare_run_dir: Annotated[Optional[Path], typer.Option("--compare-run-dir", help="A second run to show beside it, query by query (e.g. the untrained model).", exists=True, file_okay=False)] = None,
    data_dir: options.DataDir = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; another than 127.0.0.1 lets other machines see your data.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).", min=0, max=65535)] = 8000,
    device: Annotated[str, typer.Option("--device", help="Where the model encodes queries: auto (a GPU when there is one), cpu or cuda.")] = "auto",
    k: Annotated[int, typer.Option("-k", help="How many candidates a search shows by default.", min=1, max=100)] = 10,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest image upload accepted.", min=0.1)] = 10.0,
    access_log: Annotated[bool, typer.Option("--access-log", metavar="", help="Log every request.")] = False,
) -> None:
    """Serve a web page over a run: search with its model, browse its results, compare two runs.

    Search takes a text, an image upload and an instruction; the results browser lists the
    queries (failed at k, by dataset and task) and shows each next to its top-k with the
    positives marked; a second run (--compare-run-dir) shows beside it, query by query.

    Example: uniir serve --run-dir runs/demo --compare-run-dir runs/demo/untrained
    """
    from uniir_cli.serve import require_extra

    require_extra()
    from uniir_cli.serve.app import create_app
    from uniir_cli.serve.server import address_of, bind, is_loopback, run_server
    from uniir_cli.serve.state import load_state

    console = Console()
    sock = bind(host, port)  # a port in use fails here, before the model loads
    try:
        device = _device(device)
        runs = [run_dir] if compare_run_dir is None else [run_dir, compare_run_dir]
        console.print(f"loading {', '.join(map(str, runs))} on {device} ...")
        state = load_state(runs, data_dir, device, k=k, max_upload_bytes=int(max_upload_mb * 1e6))
        for served in state.runs:
            if served.problem or served.search_problem:
                console.print(f"[yellow]{served.side.upper()} {escape(served.label)}:[/] {escape(served.problem or served.search_problem)}", highlight=False)
        if not is_loopback(host):
            console.print(f"[yellow]listening on {host}: anyone who reaches this machine can see the data and query the model[/]")
        console.print(f"serving {address_of(sock)} (loaded in {state.load_seconds:.1f} s); Ctrl+C stops", highlight=False)
        run_server(create_app(state), sock, access_log)
    finally:
        sock.close()


def _device(name: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu; a named device must exist."""
    if name not in ("auto", "cpu") and not name.startswith("cuda"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda (cuda:N)")
    if name == "cpu":
        return name
    import torch

    if torch.cuda.is_available():
        return "cuda" if name == "auto" else name
    if name == "auto":
        return "cpu"
    raise ConfigError(f"--device {name}: no CUDA GPU is visible; pass --device cpu")
