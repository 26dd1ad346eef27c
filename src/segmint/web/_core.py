"""What every workspace page shares: the host it runs in, the templates, the language,
formatting, the configuration as the file says it now, and the audit log.

A page module defines ``router = APIRouter()`` with its routes, each depending on
:func:`segmint.web._auth.viewer` or :func:`~segmint.web._auth.editor`, and answers with
:func:`page` (a whole page in the layout) or :func:`fragment` (a piece that a live region
or a form's preview swaps in). Store work goes through ``workspace(request).project()``
(a :class:`~segmint.project.Project` on the service's store, held for the block).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from segmint._i18n import Language, language, pick_language
from segmint.store import append_audit
from segmint.web._accounts import Session
from segmint.web._auth import LoginThrottle, SessionCache
from segmint.web._text import N_

__all__ = [
    "LANG_COOKIE",
    "N_",
    "Host",
    "Workspace",
    "fragment",
    "page",
    "record",
    "workspace",
]

log = logging.getLogger("segmint.web")

LANG_COOKIE = "segmint_lang"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


class Host(Protocol):
    """What the workspace needs from the service it runs in (``segmint serve`` provides
    it; see :class:`segmint.serve.ServiceHost`)."""

    @property
    def project(self) -> Any:
        """The service's :class:`~segmint.project.Project` (its ``config`` is replaced when
        ``segmint.yaml`` changes; never use its ``store``)."""

    def hold_store(self) -> AbstractContextManager[Any]:
        """The service's store, held by the caller alone for the block."""

    def jobs(self, *, limit: int = 20, job: str | None = None) -> dict[str, Any]:
        """The scheduler's jobs and their recent runs (``JobScheduler.overview``)."""

    def run_job(self, name: str) -> datetime:
        """Start job ``name`` now in the background; returns its slot."""

    def decide(self, user_id: str) -> dict[str, Any] | None:
        """The decision ``/v1/decide/{user_id}`` gives for this person now (None while
        the first snapshot builds)."""

    def tracking(self) -> dict[str, Any]:
        """The tracking pipeline's state: events waiting in the spool, last load."""


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


class Workspace:
    """The workspace's state in one service process (``app.state.workspace``)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.env = _env()
        self.sessions = SessionCache()
        self.throttle = LoginThrottle()
        self._config_lock = threading.Lock()
        self._config_seen: tuple[int, int] | None = self._stat()
        self._config_checked = time.monotonic()
        self.config_error: str | None = None

    # -- the configuration: segmint.yaml is the source of truth -------------------------
    @property
    def config_path(self) -> Path:
        from segmint.config import CONFIG_FILE

        return Path(self.host.project.root) / CONFIG_FILE

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.config_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def config(self) -> Any:
        """The project's configuration as ``segmint.yaml`` says now: the file is looked at
        at most once a second; a changed file that is valid replaces the service's
        configuration, an invalid one is reported (``config_error``) and the last valid
        one stays in use."""
        now = time.monotonic()
        if now - self._config_checked >= 1.0:
            with self._config_lock:
                self._config_checked = now
                seen = self._stat()
                if seen != self._config_seen:
                    self._config_seen = seen
                    self.reload_config()
        return self.host.project.config

    def reload_config(self) -> None:
        from segmint.config import load_config
        from segmint.errors import ConfigError

        try:
            self.host.project.config = load_config(self.config_path)
            self.config_error = None
            log.info("segmint.yaml changed: configuration reloaded")
        except ConfigError as exc:
            self.config_error = str(exc)
            log.warning("segmint.yaml changed but is not valid; the last valid one stays")

    def note_saved(self) -> None:
        """After the workspace wrote ``segmint.yaml``: load it now."""
        with self._config_lock:
            self._config_seen = self._stat()
            self.reload_config()

    # -- the store ---------------------------------------------------------------------
    @contextmanager
    def project(self) -> Iterator[Any]:
        """A :class:`~segmint.project.Project` on the service's store, held for the block
        (keep blocks short: the tracking loader and the scheduler wait meanwhile)."""
        from segmint.project import Project

        config = self.config()
        with self.host.hold_store() as store, Project(config, store=store) as p:
            yield p


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace  # type: ignore[no-any-return]


# -- language and formatting ----------------------------------------------------------------
def language_of(request: Request) -> Language:
    """``?lang=`` (then remembered in a cookie), else the cookie, else the browser's
    ``Accept-Language``, else the project's ``locale:``."""
    wanted = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if wanted in ("en", "zh-CN"):
        return language(wanted)
    default = workspace(request).config().locale
    return pick_language(request.headers.get("accept-language", ""), default)


class Formats:
    """Number, money, percent and date formatting for templates, in one language."""

    def __init__(self, lang: Language, currency: str) -> None:
        self.lang = lang
        self.currency = currency

    def count(self, x: Any) -> str:
        """A whole number: ``12,345``."""
        return "–" if _missing(x) else self.lang.integer(float(x))

    def num(self, x: Any, digits: int = 3) -> str:
        return "–" if _missing(x) else self.lang.number(float(x), digits)

    def money(self, x: Any, currency: str | None = None) -> str:
        return "–" if _missing(x) else self.lang.money(float(x), currency or self.currency)

    def pct(self, x: Any, digits: int = 1) -> str:
        return "–" if _missing(x) else self.lang.percent(float(x), digits)

    def date(self, x: Any) -> str:
        if _missing(x):
            return "–"
        if isinstance(x, str):
            return x[:10]
        if isinstance(x, datetime):  # a datetime (or pandas Timestamp) is a date too
            return self.lang.date(x.date())
        return self.lang.date(x if isinstance(x, date) else x.date())

    def when(self, x: Any) -> str:
        """A timestamp as ``YYYY-MM-DD HH:MM`` UTC (sortable, unambiguous)."""
        if _missing(x):
            return "–"
        if isinstance(x, str):
            return x[:16].replace("T", " ")
        if getattr(x, "tzinfo", None) is not None:
            x = x.astimezone(UTC)
        return f"{x:%Y-%m-%d %H:%M}"


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(x != x)
    except (TypeError, ValueError):
        return False


# -- answers ---------------------------------------------------------------------------------
NAV = (
    ("overview", "/", N_("Overview")),
    ("segments", "/segments", N_("Segments")),
    ("people", "/people", N_("People")),
    ("campaigns", "/campaigns", N_("Campaigns")),
    ("quality", "/quality", N_("Data quality")),
    ("jobs", "/jobs", N_("Jobs")),
    ("settings", "/settings", N_("Settings")),
)


def _context(request: Request, **context: Any) -> dict[str, Any]:
    ws = workspace(request)
    lang = language_of(request)
    config = ws.config()
    session: Session | None = getattr(request.state, "session", None)
    return {
        "t": lang.t,
        "n": lang.n,
        "f": Formats(lang, config.currency),
        "lang": lang.name,
        "config": config,
        "config_error": ws.config_error,
        "session": session,
        "csrf": session.csrf if session else "",
        "can_edit": bool(session and session.can_edit),
        "nav": NAV,
        "path": request.url.path,
        "tojson": lambda v: Markup(json.dumps(v, default=str)),
        **context,
    }


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Every workspace answer's Content-Security-Policy: nothing loads from another host (an
e-mail previewed in a ``srcdoc`` frame inherits it, so its tracking pixel never fires),
no inline script, and no other site may frame the workspace."""


def _harden(response: HTMLResponse) -> HTMLResponse:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def page(
    request: Request,
    template: str,
    *,
    active: str = "",
    title: str = "",
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page: ``template`` extends ``base.html.j2``; ``active`` is the nav entry
    (``overview``, ``segments`` ...), ``title`` an English message id."""
    ctx = _context(request, active=active, title=title, **context)
    html = workspace(request).env.get_template(template).render(**ctx)
    response = HTMLResponse(html, status_code=status)
    wanted = request.query_params.get("lang")
    if wanted in ("en", "zh-CN"):
        response.set_cookie(LANG_COOKIE, wanted, max_age=365 * 86400, samesite="lax")
    return _harden(response)


def fragment(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A piece of a page (no layout), for a live region or a form's preview."""
    ctx = _context(request, **context)
    html = workspace(request).env.get_template(template).render(**ctx)
    return _harden(HTMLResponse(html, status_code=status))


# -- the audit log -------------------------------------------------------------------------
def record(store: Any, actor: str, action: str, target: str | None = None, **detail: Any) -> None:
    """Append to the audit log (hash-chained, :func:`segmint.store.append_audit`): who
    (``actor``), did what (``action``: ``config.save``, ``campaign.send``,
    ``segment.export``, ``job.run``, ``sign_in`` ...), to what, with details (never
    personal data; ``why`` in the details becomes the entry's reason)."""
    why = detail.pop("why", None)
    append_audit(store, actor, action, target, why=why, **detail)
