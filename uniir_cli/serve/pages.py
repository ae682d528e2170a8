"""The HTML pages: Jinja2 templates shipped in the package (`templates/`, `static/`), rendered
on the server with autoescaping; no JavaScript, no build step, nothing fetched from outside."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"


def url(path: str, **params: Any) -> str:
    """`path?query` with the parameters that are set (None, False and "" are left out)."""
    kept = {key: (1 if value is True else value) for key, value in params.items() if value not in (None, False, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


@functools.cache
def environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["url"] = url
    env.filters["score"] = score
    env.filters["percent"] = percent
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
