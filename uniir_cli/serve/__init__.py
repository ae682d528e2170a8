"""`uniir serve`: one local web page over a run directory: search with the run's model, browse
its retrieval results and compare two runs query by query.

Modules, one job each: `errors` (what a request can get wrong), `images` (image files served
only from inside the data directory; uploads decoded safely), `uploads` (the size-capped form
reader), `results` (the run's retrieval, qrels and metrics files as the browser reads them),
`state` (what is loaded once at start-up), `views` (the data of each page, also the JSON API),
`pages` (the HTML templates), `app` (the routes), `server` (the socket and uvicorn).

Nothing here is imported by `import uniir_cli` or `uniir --help`: FastAPI and uvicorn are the
optional extra `uniir[serve]`.
"""

from __future__ import annotations

import importlib.util

from uniir_cli.serve.errors import MissingExtra

EXTRA_MODULES = ("fastapi", "uvicorn", "python_multipart", "jinja2")


def require_extra() -> None:
    """A one-line error naming the extra when its packages are not installed."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(f"uniir serve needs {', '.join(missing)}: pip install 'uniir[serve]'")
