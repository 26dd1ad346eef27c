"""Errors as RFC 9457 problem details: every error the service returns is JSON with a
``type``, ``title``, ``status`` and a ``detail`` a person can act on, never a traceback.

A :class:`~segmint.errors.SegmintError` keeps its message (it is written for users); an
unexpected exception becomes a 500 whose detail names an incident id that is also in the
server's log line with the traceback, so an operator can find it and a client learns
nothing about the internals.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segmint.errors import (
    ConfigError,
    InvalidTokenError,
    NotFoundError,
    RequestError,
    SegmintError,
    StoreError,
)

__all__ = [
    "PROBLEM_JSON",
    "RequestError",
    "PROBLEM_SCHEMA",
    "document_problems",
    "install_problem_handlers",
    "problem",
    "problem_response",
    "problem_responses",
]

log = logging.getLogger("segmint.serve")

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem-detail response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _status_of(exc: SegmintError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidTokenError):
        return 400
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    return 500


def _where(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    return ".".join(loc) or "request"


#: the OpenAPI schema of a problem detail (components/schemas/Problem)
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem detail.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_response(description: str) -> dict[str, Any]:
    """One OpenAPI response answered with a problem detail (the Problem schema)."""
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}


def problem_responses(*statuses: int, html: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answered with a problem detail (or, for a
    page, ``html=True``, with an HTML page)."""
    content = (
        {"text/html": {"schema": {"type": "string"}}}
        if html
        else {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
    )
    return {
        code: {"description": _TITLES.get(code, "Error"), "content": content} for code in statuses
    }


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers below do: a request that fails
    validation is a 400 problem detail (FastAPI documents a 422 it never sends here), and
    the Problem schema is a component."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is None:
                    continue
                bad = responses.setdefault("400", {"description": "The request is not valid"})
                bad.setdefault("content", {})[PROBLEM_JSON] = {"schema": _PROBLEM_REF}
        for name in ("HTTPValidationError", "ValidationError"):
            doc["components"]["schemas"].pop(name, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through :func:`problem`."""

    @app.exception_handler(RequestError)
    async def _problem(request: Request, exc: RequestError) -> JSONResponse:
        return problem(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _where(e), "message": str(e.get("msg", "invalid"))} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        detail = f"{first['field']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem(400, detail, errors=errors)

    @app.exception_handler(SegmintError)
    async def _segmint(request: Request, exc: SegmintError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return problem(status, str(exc))

    app.add_middleware(_CatchAll)
    document_problems(app)


class _CatchAll:
    """ASGI middleware: an exception no handler took becomes a 500 problem detail here, so
    it never reaches the server (which would log it again and drop the connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("incident %s on %s %s", incident, scope.get("method"), scope.get("path"))
            if started:  # too late for a problem detail: the status line is out
                raise
            response = problem(
                500,
                f"the server failed on this request (incident {incident}); the server log "
                "has the details",
                incident=incident,
            )
            await response(scope, receive, send)
