"""The routes of `uniir serve`: HTML pages and the same data as JSON under /api.

Every route reads what `state.load_state` loaded at start-up; a query only encodes and
searches. A `UniirError` becomes its HTTP status and one-line message (JSON under /api, a
page elsewhere); the server keeps running. No route writes anything.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from uniir_cli.errors import ConfigError, UniirError
from uniir_cli.serve import views
from uniir_cli.serve.errors import BadUpload, NotFound, UploadTooLarge
from uniir_cli.serve.images import decode_upload, media_type, safe_image_file, thumbnail_data_url
from uniir_cli.serve.pages import STATIC_DIR, render
from uniir_cli.serve.state import ServeState
from uniir_cli.serve.uploads import read_form

# Most specific first: UploadTooLarge is a BadUpload.
STATUS: tuple[tuple[type[UniirError], int], ...] = (
    (UploadTooLarge, 413), (BadUpload, 400), (ConfigError, 400), (NotFound, 404), (UniirError, 409),
)


def status_of(exc: UniirError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def create_app(state: ServeState) -> FastAPI:
    """The app over a loaded state (`state.load_state`)."""
    app = FastAPI(title="uniir", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(render(template, status=views.status(state), **context), status_code=status_code)

    @app.exception_handler(UniirError)
    async def on_error(request: Request, exc: UniirError) -> Response:
        code = status_of(exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=code)
        return page("error.html", code, title="Error", error=str(exc))

    # ------------------------------------------------------------------ search
    async def search_form(request: Request) -> dict[str, Any]:
        form = await read_form(request, state.max_upload_bytes)
        fields = form.fields

        def work() -> dict[str, Any]:
            image = decode_upload(form.image, state.max_pixels) if form.image is not None else None
            preview = thumbnail_data_url(image) if image is not None else None
            return views.search(state, fields.get("text"), image, fields.get("instruction"),
                                fields.get("pool") or "global", _int(fields.get("k"), state.k), preview)

        return await run_in_threadpool(work)

    def search_get(text: str | None, instruction: str | None, pool: str, k: int | None) -> dict[str, Any]:
        return views.search(state, text, None, instruction, pool, k or state.k)

    @app.get("/api/search")
    def api_search(text: Optional[str] = None, instruction: Optional[str] = None, pool: str = "global",
                   k: Optional[int] = None) -> dict[str, Any]:
        return search_get(text, instruction, pool, k)

    @app.post("/api/search")
    async def api_search_upload(request: Request) -> dict[str, Any]:
        return await search_form(request)

    @app.get("/", response_class=HTMLResponse)
    def search_page(text: Optional[str] = None, instruction: Optional[str] = None, pool: str = "global",
                    k: Optional[int] = None) -> HTMLResponse:
        result = search_get(text, instruction, pool, k) if text else None
        return page("search.html", title="Search", result=result, instructions=state.runs[0].instructions,
                    form={"text": text, "instruction": instruction, "pool": pool, "k": k or state.k})

    @app.post("/", response_class=HTMLResponse)
    async def search_page_upload(request: Request) -> HTMLResponse:
        result = await search_form(request)
        query = result["query"]
        return page("search.html", title="Search", result=result, instructions=state.runs[0].instructions, form=query)

    # ------------------------------------------------------------------ results browser
    @app.get("/api/status")
    def api_status() -> dict[str, Any]:
        return views.status(state)

    @app.get("/api/sets")
    def api_sets(pool: Optional[str] = None, dataset: Optional[str] = None, task: Optional[int] = None) -> dict[str, Any]:
        return views.query_sets(state, pool or views.default_pool(state), dataset, task)

    @app.get("/api/queries")
    def api_queries(name: str = Query(alias="set"), pool: Optional[str] = None, k: Optional[int] = None,
                    failed: bool = False, winner: Optional[str] = None, page: int = 0) -> dict[str, Any]:
        return views.queries(state, name, pool or views.default_pool(state), k, failed, winner, page)

    @app.get("/api/query")
    def api_query(qid: str, name: str = Query(alias="set"), pool: Optional[str] = None, k: Optional[int] = None) -> dict[str, Any]:
        return views.query(state, name, pool or views.default_pool(state), qid, k)

    @app.get("/browse", response_class=HTMLResponse)
    def browse_page(pool: Optional[str] = None, dataset: Optional[str] = None, task: Optional[str] = None) -> HTMLResponse:
        data = views.query_sets(state, pool or views.default_pool(state), dataset or None, _int(task, None))
        return page("sets.html", title="Results", data=data)

    @app.get("/browse/set", response_class=HTMLResponse)
    def set_page(name: str = Query(alias="set"), pool: Optional[str] = None, k: Optional[int] = None,
                 failed: bool = False, winner: Optional[str] = None, page_number: int = Query(0, alias="page")) -> HTMLResponse:
        data = views.queries(state, name, pool or views.default_pool(state), k, failed, winner or None, page_number)
        return page("queries.html", title=name, data=data)

    @app.get("/browse/query", response_class=HTMLResponse)
    def query_page(qid: str, name: str = Query(alias="set"), pool: Optional[str] = None, k: Optional[int] = None) -> HTMLResponse:
        data = views.query(state, name, pool or views.default_pool(state), qid, k)
        return page("query.html", title=f"{name} {qid}", data=data)

    # ------------------------------------------------------------------ images
    @app.get("/image/{side}/{relative:path}")
    def image(side: str, relative: str) -> Response:
        run = state.run(side)
        path = safe_image_file(run.image_roots, relative) if run is not None else None
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=media_type(path), headers={"Cache-Control": "max-age=3600"})

    return app


def _int(value: str | None, default: int | None) -> int | None:
    """A form's number, its default when empty; a `ConfigError` when it is no number."""
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a whole number") from None
