"""Sign-in, sessions and CSRF for the workspace's pages.

- The session cookie (``segmint_session``; ``__Host-segmint_session`` over HTTPS) is
  HttpOnly, SameSite=Lax, Secure over HTTPS (the request's scheme, or ``serve.public_url``),
  path ``/``. Only its SHA-256 is stored.
- Every request that changes something (any method but GET/HEAD) must carry the session's
  CSRF token, as the form field ``csrf_token`` or the header ``X-CSRF-Token``, and, when the
  browser sends an ``Origin``, come from this host. The sign-in form itself is protected by
  a double-submit cookie (``segmint_login``).
- Dependencies for routes: :func:`viewer` (anyone signed in) and :func:`editor` (the
  ``editor`` role). A page without a session redirects to ``/login?next=...``; anything
  else without one is refused with 401.
- Five failed sign-ins for a name (or from one client) within five minutes lock further
  tries for five minutes (429), whatever the password.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request

from segmint.errors import AccessDenied
from segmint.web._accounts import Session, find_session
from segmint.web._text import N_

__all__ = [
    "COOKIE",
    "Editor",
    "Viewer",
    "LOGIN_COOKIE",
    "LoginThrottle",
    "SessionCache",
    "cookie_name",
    "editor",
    "is_secure",
    "session_of",
    "viewer",
]

COOKIE = "segmint_session"
LOGIN_COOKIE = "segmint_login"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_secure(request: Request) -> bool:
    """HTTPS: the request's scheme (behind ``--proxy-headers``) or an https public URL."""
    if request.url.scheme == "https":
        return True
    return str(request.app.state.project.config.serve.public_url).startswith("https://")


def cookie_name(request: Request) -> str:
    return f"__Host-{COOKIE}" if is_secure(request) else COOKIE


class SessionCache:
    """Sessions looked up in the store, remembered for ``ttl`` seconds (a sign-out in this
    process takes effect at once; in another worker process within ``ttl``)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Session | None]] = {}

    def get(self, token: str, load: Any) -> Session | None:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(token)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        session = load(token)
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[token] = (now, session)
        return session

    def forget(self, token: str) -> None:
        with self._lock:
            self._items.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class LoginThrottle:
    """Failed sign-ins per key (a name, a client), over a sliding window."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                fails = self._fails[key]
                while fails and now - fails[0] > self.window:
                    fails.popleft()
                if len(fails) >= self.limit:
                    return True
        return False

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._fails[key].append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._fails.pop(key, None)


def _token(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request)) or request.cookies.get(COOKIE)


def session_of(request: Request) -> Session | None:
    """The request's live session, or None."""
    token = _token(request)
    if not token or len(token) > 200:
        return None
    ws = request.app.state.workspace

    def load(tok: str) -> Session | None:
        with ws.host.hold_store() as store:
            return find_session(store, tok)

    return ws.sessions.get(token, load)  # type: ignore[no-any-return]


def _wants_page(request: Request) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and "fragment" not in request.headers.get("x-requested-with", "").lower() + request.url.path
    )


async def _check_csrf(request: Request, session: Session) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise AccessDenied(403, N_("This request came from another site; nothing was changed."))
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # cached by Starlette for the endpoint's Form(...)
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise AccessDenied(403, N_("The form has expired; reload the page and try again."))


async def viewer(request: Request) -> Session:
    """Route dependency: a signed-in person (any role); CSRF-checked if it changes state."""
    session = session_of(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise AccessDenied(
            401,
            N_("Sign in to continue."),
            next_url=f"/login?next={quote(target)}" if _wants_page(request) else None,
        )
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session)
    request.state.session = session
    return session


async def editor(request: Request) -> Session:
    """Route dependency: a signed-in editor (CSRF-checked); a viewer gets 403."""
    session = await viewer(request)
    if not session.can_edit:
        raise AccessDenied(403, N_("Your role is viewer: you can look but not change anything."))
    return session


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


Viewer = Annotated[Session, Depends(viewer)]
"""A route parameter: the signed-in person (``session: Viewer``)."""
Editor = Annotated[Session, Depends(editor)]
"""A route parameter: the signed-in editor (``session: Editor``); viewers get 403."""
