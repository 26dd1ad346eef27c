"""Mounting the workspace on the service's app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from segmint.errors import AccessDenied
from segmint.web._core import STATIC, Host, Workspace, page
from segmint.web._text import N_

__all__ = ["install"]


def install(app: FastAPI, host: Host) -> None:
    """Serve the workspace from ``app`` (pages at ``/``, assets at ``/static/web``)."""
    from segmint.web import (
        _campaigns,
        _jobs,
        _overview,
        _people,
        _quality,
        _segments,
        _settings,
        _signin,
    )

    app.state.workspace = Workspace(host)
    app.mount("/static/web", StaticFiles(directory=STATIC), name="web-static")
    app.add_exception_handler(AccessDenied, _denied)  # type: ignore[arg-type]
    for module in (_signin, _overview, _segments, _people, _campaigns, _quality, _jobs, _settings):
        app.include_router(module.router, include_in_schema=False)


def _denied(request: Request, exc: AccessDenied) -> Response:
    if exc.next_url is not None:
        return RedirectResponse(exc.next_url, status_code=303)
    wants_html = "text/html" in request.headers.get("accept", "")
    if request.headers.get("x-requested-with") == "fragment" or not wants_html:
        return PlainTextResponse(exc.detail, status_code=exc.status)
    return message(
        request, exc.status, N_("Not allowed") if exc.status != 401 else N_("Sign in"), exc.detail
    )


def message(
    request: Request, status: int, heading: str, text: str, back: str = "/"
) -> HTMLResponse:
    """A page with one message (``heading`` and ``text`` are English message ids)."""
    return page(
        request,
        "message.html.j2",
        title=heading,
        status=status,
        heading=heading,
        text=text,
        back=back,
    )
