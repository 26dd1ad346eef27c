"""Sign in and out."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.web._accounts import SESSION_HOURS, end_session, sign_in
from segmint.web._auth import (
    COOKIE,
    LOGIN_COOKIE,
    cookie_name,
    is_secure,
    new_login_token,
    session_of,
)
from segmint.web._core import page, record, workspace
from segmint.web._text import N_

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a path on this site (never ``//host`` or a full URL)."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _form(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    token = new_login_token()
    response = page(
        request, "login.html.j2", title=N_("Sign in"), status=status, login_token=token, **context
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    if session_of(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _form(request, next=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    login_token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    ws = workspace(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, login_token):
        return _form(
            request,
            status=403,
            error=N_("The form has expired; reload the page and try again."),
            next=_safe_next(next),
            name=name,
        )
    client = f"client:{request.client.host if request.client else '?'}"
    if ws.throttle.blocked(f"name:{name}", client):
        return _form(
            request,
            status=429,
            error=N_("Too many failed sign-ins; wait five minutes and try again."),
            next=_safe_next(next),
            name=name,
        )
    with ws.host.hold_store() as store:
        token = sign_in(store, name, password)
        if token is not None:
            record(store, name, "sign_in")
    if token is None:
        ws.throttle.failed(f"name:{name}", client)
        return _form(
            request,
            status=401,
            error=N_("That name and password do not match."),
            next=_safe_next(next),
            name=name,
        )
    ws.throttle.succeeded(f"name:{name}", client)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        cookie_name(request),
        token,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=is_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    from segmint.web._auth import viewer

    session = await viewer(request)  # a CSRF-checked POST, like every change
    ws = workspace(request)
    with ws.host.hold_store() as store:
        end_session(store, session.token_hash)
        record(store, session.name, "sign_out")
    ws.sessions.forget(request.cookies.get(cookie_name(request)) or request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(request), path="/")
    return response
