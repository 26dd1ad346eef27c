"""The ASGI application behind ``segmint serve``.

One FastAPI app per project. It holds the project (configuration and store) in
``app.state``; endpoints reach the store through :func:`store_access`, which serialises
use of the store's connection (a DuckDB connection is not safe to share between threads
at once; FastAPI runs plain ``def`` endpoints in a thread pool).

Every error is a problem detail (:mod:`segmint.serve._problems`); the OpenAPI document is
at ``/openapi.json`` and its pages at ``/docs`` (Swagger UI) with every asset served from
the installed ``swagger-ui-bundle`` package, so the pages work offline.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from segmint.errors import RequestError
from segmint.serve import _decide, _scheduler
from segmint.serve._auth import KeyRing, install_auth_docs
from segmint.serve._claim import StoreHolder
from segmint.serve._limits import PublicPageLimit, RateLimits
from segmint.serve._problems import install_problem_handlers

__all__ = [
    "PROJECT_ENV",
    "AccessLog",
    "Worker",
    "app_from_environment",
    "create_app",
    "hold_store",
    "loggable_path",
    "store_access",
]

log = logging.getLogger("segmint.serve")

PROJECT_ENV = "SEGMINT_PROJECT"
"""Environment variable naming the project folder for :func:`app_from_environment` (how
``segmint serve --workers N`` hands the project to each worker process)."""

DESCRIPTION = """segmint as a service: event tracking compatible with the Segment HTTP API
(`/v1/track` ... `/v1/batch`, a write key as the Basic user name), personalization decisions
(`/v1/decide`, a decide key), the unsubscribe and preference pages linked from every
message, scheduled jobs and API keys (an admin key), health and version.

Keys: HTTP Basic with the key as user name, or `Authorization: Bearer KEY`
(`segmint keys create NAME --scope write|decide|admin`). Every error is an RFC 9457 problem
detail (`application/problem+json`)."""


def _swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def create_app(project: Any) -> FastAPI:
    """The service for an open :class:`~segmint.project.Project`."""
    from segmint import __version__

    app = FastAPI(
        title="segmint",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # served below with local assets
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.project = project
    app.state.holder = StoreHolder(project)
    app.state.store_lock = app.state.holder.lock
    app.state.keys = KeyRing(lambda: _key_rows(app))
    serve = project.config.serve
    app.state.rates = RateLimits(serve.rate_per_second, serve.burst)
    install_problem_handlers(app)
    install_auth_docs(app)
    app.add_middleware(PublicPageLimit)
    app.add_middleware(AccessLog)
    app.mount("/static/swagger", StaticFiles(directory=_swagger_dir()), name="swagger")
    from segmint.serve._pages import router as pages

    app.include_router(pages)
    # -- routers: one include_router line each ------------------------------------------
    app.include_router(_scheduler.router)
    from segmint.serve._keys import router as keys

    app.include_router(keys)
    from segmint.serve._privacy_api import router as privacy_api

    app.include_router(privacy_api)
    from segmint.serve._tracking import router as tracking

    app.include_router(tracking)
    app.include_router(_decide.router)
    _decide.install_cors(app)  # serve.cors_origins, for /v1/decide and the tracking API
    # -- background workers (started in this order, stopped in reverse): one line each ----
    app.state.workers = []
    from segmint.serve._loader import tracking_worker

    app.state.workers.append(tracking_worker(app))
    app.state.workers += _decide.decision_workers(app)
    app.state.workers.append(_scheduler.scheduler_for(app))

    app.include_router(service)  # /docs, /healthz, /readyz, /version
    from segmint.serve._host import ServiceHost
    from segmint.web import install as install_workspace

    install_workspace(app, ServiceHost(app))  # the marketer's workspace at /
    return app


# -- the service's own endpoints ---------------------------------------------------------
service = APIRouter()
"""Health, readiness, version and the API docs page (local assets); ``/`` is the
workspace's (:mod:`segmint.web`)."""


@service.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="segmint API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/swagger/favicon-32x32.png",
    )


@service.get("/healthz", tags=["service"], summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@service.get(
    "/readyz",
    tags=["service"],
    summary="The store answers and is at this segmint's schema version",
    responses={503: {"description": "The store cannot be reached or is not ready"}},
)
def readyz(request: Request) -> dict[str, Any]:
    from segmint.store import SCHEMA_VERSION

    try:
        with store_access(request) as store:
            version = int(store.scalar("SELECT max(version) FROM schema_version"))
    except RequestError:
        raise
    except Exception as exc:  # the store is down: say so, do not crash
        raise RequestError(503, f"the store is not reachable: {str(exc)[:200]}") from None
    if version != SCHEMA_VERSION:
        raise RequestError(
            503,
            f"the store is at schema version {version}, this segmint needs {SCHEMA_VERSION}",
        )
    return {"status": "ready", "schema_version": version}


@service.get("/version", tags=["service"], summary="Versions of segmint, its schema and Python")
def version() -> dict[str, Any]:
    from segmint import __version__
    from segmint.store import SCHEMA_VERSION

    return {
        "segmint": __version__,
        "schema_version": SCHEMA_VERSION,
        "python": platform.python_version(),
    }


class Worker(Protocol):
    """Something the service runs beside its endpoints (a loader thread, the scheduler):
    started when the app starts, stopped (and drained) when it stops."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    started: list[Worker] = []
    try:
        for worker in app.state.workers:
            worker.start()
            started.append(worker)
        yield
    finally:
        for worker in reversed(started):
            try:
                worker.stop()
            except Exception:  # one worker's failure to stop must not hide the others'
                log.exception("stopping %s failed", type(worker).__name__)
        app.state.holder.close()
        from segmint.store import remove_claim

        remove_claim(app.state.project.root)  # ours only (segmint serve wrote it)


access_log = logging.getLogger("segmint.serve.access")

_PERSONAL_SEGMENTS = (
    (re.compile(r"^/u/[^/]+"), "/u/{token}"),
    (re.compile(r"^/v1/decide/[^/]+"), "/v1/decide/{user_id}"),
)


def loggable_path(path: str) -> str:
    """The request path as the access log writes it: what names a person (an unsubscribe
    token, the user id of a decision) becomes ``{token}`` / ``{user_id}``; query strings
    (``?anonymous_id=``) are never logged."""
    for pattern, mask in _PERSONAL_SEGMENTS:
        path = pattern.sub(mask, path)
    return path


class AccessLog:
    """ASGI middleware: one access-log line per request with no personal data — method,
    path with tokens masked, no query string, no client address, status, milliseconds.
    ``segmint serve`` turns uvicorn's own access log (which prints the full URL and the
    client's address) off in favour of this one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracked(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            access_log.info(
                "%s %s %d %.1fms",
                scope.get("method", "?"),
                loggable_path(scope.get("path", "")),
                status,
                (time.perf_counter() - started) * 1000,
            )


@contextmanager
def store_access(request: Request) -> Iterator[Any]:
    """The project's store, held by this request alone until the block ends."""
    with hold_store(request.app) as store:
        yield store


@contextmanager
def hold_store(app: FastAPI) -> Iterator[Any]:
    """The project's store for code without a request (background workers): held by the
    caller alone until the block ends. A DuckDB file is opened on demand and let go when
    idle (see :class:`segmint.serve._claim.StoreHolder`): never keep the store beyond the
    block, and never use ``project.store`` in the service."""
    with app.state.holder.hold() as store:
        yield store


def _key_rows(app: FastAPI) -> list[tuple[Any, ...]]:
    with hold_store(app) as store:
        frame = store.query(
            "SELECT key_id, name, scope, key_hash, rate_per_second FROM api_keys "
            "WHERE revoked_at IS NULL"
        )
    return [tuple(None if v != v else v for v in row) for row in frame.itertuples(index=False)]


def app_from_environment() -> FastAPI:
    """The app for the project named by ``$SEGMINT_PROJECT`` (a uvicorn factory)."""
    from segmint.project import open_project

    path = os.environ.get(PROJECT_ENV)
    if not path:
        from segmint.errors import ConfigError

        raise ConfigError(f"set {PROJECT_ENV} to the project folder (segmint serve does this)")
    return create_app(open_project(path))
