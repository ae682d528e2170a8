"""Builds the `uniir` Typer app: registers one command per module (each wrapped in the
error boundary of `commands.boundary`) and answers `--version`."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from typing import Annotated

import typer

from uniir_cli.commands.boundary import with_error_boundary
from uniir_cli.version import __version__

# (command name, module under uniir_cli.commands), in the order `uniir --help` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("download", "download"),
    ("train", "train"),
    ("embed", "embed"),
    ("index", "index"),
    ("retrieve", "retrieve"),
    ("score", "score"),
    ("report", "report"),
    ("eval", "evaluate"),
    ("search", "search"),
    ("serve", "serve"),
    ("validate", "validate"),
    ("data", "data"),
    ("convert", "convert"),
    ("demo", "demo"),
)

def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def faiss_version() -> str:
    for dist in ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss"):
        version = _installed(dist)
        if version != "not installed":
            return f"{version} ({dist})"
    return "not installed"


def version_report() -> str:
    """The versions that decide whether numbers reproduce, CUDA visibility and the models."""
    import torch

    from uniir_cli.registry import registered_models

    cuda = f"yes ({torch.cuda.device_count()} device(s))" if torch.cuda.is_available() else "no"
    return "\n".join([
        f"uniir {__version__}",
        f"torch {torch.__version__}",
        f"open_clip {_installed('open_clip_torch')}",
        f"transformers {_installed('transformers')}",
        f"faiss {faiss_version()}",
        f"CUDA visible: {cuda}",
        "models: " + ", ".join(registered_models()),
    ])


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(version_report())
        raise typer.Exit()


_console_log = logging.StreamHandler()
_console_log.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def configure_logging(verbose: bool) -> None:
    """INFO and up reach the run's log files; the terminal shows warnings (everything with -v).

    Progress and summaries are printed by the commands themselves.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if _console_log not in root.handlers:
        root.addHandler(_console_log)
    _console_log.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("accelerate", "matplotlib", "PIL", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # huggingface_hub prints through a handler of its own and also propagates to the root
    # logger: every Hub warning (e.g. each retry) showed twice. It now goes through ours only.
    import huggingface_hub  # noqa: F401  (it installs its handler on import)

    hub = logging.getLogger("huggingface_hub")
    for handler in list(hub.handlers):
        hub.removeHandler(handler)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="uniir",
        help="Universal multimodal retrieval (UniIR / M-BEIR): train, embed, index, retrieve, score.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version_callback, is_eager=True, metavar="", help="Print versions and CUDA visibility, then exit."),
        ] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", metavar="", help="Log debug messages.")] = False,
    ) -> None:
        configure_logging(verbose)
        from uniir_cli.threads import choose_torch_threads

        choose_torch_threads()

    for name, module_name in COMMANDS:
        module = importlib.import_module(f"uniir_cli.commands.{module_name}")
        if isinstance(getattr(module, "app", None), typer.Typer):
            app.add_typer(module.app, name=name)
        else:
            app.command(name=name)(with_error_boundary(module.run))
    return app


def main() -> None:
    build_app()()
