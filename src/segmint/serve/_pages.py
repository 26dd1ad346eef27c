"""Unsubscribe and preference pages: where the links in every sent message lead.

- ``GET /u/{token}`` (and the older ``GET /unsubscribe?token=...``): a confirmation page.
- ``POST`` to the same URL: the opt-out. A mail client's RFC 8058 one-click request (body
  ``List-Unsubscribe=One-Click``, sent to the ``List-Unsubscribe`` header's URL without a
  person looking) gets a short plain answer; a person's form gets a page.
- ``GET /u/{token}/preferences``: each channel and purpose, on or off; ``POST`` saves the
  changes. Every change appends to the consent history (source ``unsubscribe`` or
  ``preferences``); nothing is overwritten.

Pages are in the person's language (``Accept-Language``: English or Chinese, else the
project's ``locale:``), work without JavaScript, and read on a phone. A malformed, forged
or tampered token gets a 400 page that says the link is not valid and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from segmint._i18n import Language, pick_language
from segmint.errors import InvalidTokenError, NotFoundError
from segmint.serve._problems import problem_responses

__all__ = ["TEXTS", "pick_locale", "router"]

log = logging.getLogger("segmint.serve")

router = APIRouter(tags=["unsubscribe"])

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

#: every sentence the pages show (message ids of the gettext catalog)
TEXTS = (
    "Unsubscribe",
    "Stop {purpose} messages by {channel}?",
    "You will no longer receive {purpose} messages by {channel}.",
    "You are unsubscribed",
    "You were already unsubscribed",
    "Choose what you receive",
    "Your preferences",
    "Save",
    "Your preferences are saved",
    "This link is not valid",
    "It may be incomplete, or it was not sent by us. Nothing was changed.",
    "We could not find you",
    "Your details may have been deleted. Nothing was changed.",
    "Manage all your preferences",
    "On",
    "Off",
    "Changes saved: {n}",
)

CHANNEL_WORDS = {"email": "e-mail", "sms": "SMS", "push": "push notification", "in_app": "in-app"}


def pick_locale(request: Request, default: str) -> Language:
    """English or Chinese by ``Accept-Language`` (highest weight first), else ``default``."""
    return pick_language(request.headers.get("accept-language", ""), default)


def _keys(request: Request) -> Any:
    from segmint.campaigns import key_ring

    project = request.app.state.project
    return key_ring(project.root, secret_env=project.config.playbook.secret_env)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = pick_locale(request, request.app.state.project.config.locale)
    html = _ENV.get_template(template).render(
        t=lang.t, lang="zh-CN" if lang.name == "zh-CN" else "en", **context
    )
    return HTMLResponse(html, status_code=status)


def _invalid(request: Request) -> HTMLResponse:
    return _page(
        request,
        "message.html.j2",
        400,
        title="This link is not valid",
        text="It may be incomplete, or it was not sent by us. Nothing was changed.",
    )


def _unknown(request: Request) -> HTMLResponse:
    return _page(
        request,
        "message.html.j2",
        404,
        title="We could not find you",
        text="Your details may have been deleted. Nothing was changed.",
    )


def _words(lang: Language, channel: str, purpose: str) -> dict[str, str]:
    return {
        "channel": lang.t(CHANNEL_WORDS.get(channel, channel)),
        "purpose": lang.t(purpose),
    }


def _verify(request: Request, token: str) -> tuple[str, str, str]:
    from segmint.campaigns import verify_token

    return verify_token(_keys(request), token)


def _user_exists(request: Request, user_id: str) -> bool:
    from segmint.serve._app import store_access

    with store_access(request) as store:
        return bool(store.scalar("SELECT count(*) FROM users WHERE user_id = ?", [user_id]))


_PAGE_ERRORS = problem_responses(400, 404, html=True)


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    summary="Confirm an unsubscribe",
    responses=_PAGE_ERRORS,
)
@router.get("/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
def confirm(request: Request, token: str = "") -> HTMLResponse:
    """The confirmation page of an unsubscribe link."""
    try:
        user_id, channel, purpose = _verify(request, token)
    except InvalidTokenError:
        return _invalid(request)
    if not _user_exists(request, user_id):
        return _unknown(request)
    lang = pick_locale(request, request.app.state.project.config.locale)
    return _page(
        request,
        "confirm.html.j2",
        question=lang.t("Stop {purpose} messages by {channel}?", **_words(lang, channel, purpose)),
        detail=lang.t(
            "You will no longer receive {purpose} messages by {channel}.",
            **_words(lang, channel, purpose),
        ),
        action=request.url.path + (f"?token={token}" if request.url.path == "/unsubscribe" else ""),
        preferences=f"/u/{token}/preferences",
    )


async def _is_one_click(request: Request) -> bool:
    body = (await request.body()).decode("utf-8", errors="replace")
    return "List-Unsubscribe=One-Click" in body


@router.post(
    "/u/{token}",
    summary="Unsubscribe (a person's form, or RFC 8058 one-click)",
    responses=_PAGE_ERRORS,
)
@router.post("/unsubscribe", include_in_schema=False)
async def perform(request: Request, token: str = "") -> Response:
    """Record the opt-out. Idempotent: a second request records nothing more."""
    from starlette.concurrency import run_in_threadpool

    one_click = await _is_one_click(request)
    try:
        result = await run_in_threadpool(_unsubscribe, request, token)
    except InvalidTokenError:
        if one_click:
            return PlainTextResponse("invalid unsubscribe link", status_code=400)
        return _invalid(request)
    except NotFoundError:
        if one_click:
            return PlainTextResponse("unknown recipient", status_code=404)
        return _unknown(request)
    if one_click:
        return PlainTextResponse("unsubscribed")
    title = (
        "You were already unsubscribed" if result.already_unsubscribed else "You are unsubscribed"
    )
    return _page(
        request,
        "message.html.j2",
        title=title,
        text="",
        preferences=f"/u/{token}/preferences",
    )


def _unsubscribe(request: Request, token: str) -> Any:
    from segmint.campaigns import unsubscribe
    from segmint.serve._app import store_access

    with store_access(request) as store:
        return unsubscribe(store, token, keys=_keys(request))


# -- preferences ------------------------------------------------------------------------


def _choices(request: Request, user_id: str, channel: str, purpose: str) -> list[dict[str, Any]]:
    """(channel, purpose, granted) rows: the token's pair, the playbook's channels and
    campaign purposes, and every pair in the person's consent history."""
    from segmint.serve._app import store_access
    from segmint.store import latest_consent_sql

    config = request.app.state.project.config
    channels = {channel} | {c.consent for c in config.playbook.channels.values()}
    purposes = {purpose} | {c.purpose for c in config.playbook.campaigns.values()}
    with store_access(request) as store:
        rows = store.query(latest_consent_sql("?"), [user_id])
    state = {(r.channel, r.purpose): bool(r.granted) for r in rows.itertuples()}
    pairs = {(c, p) for c in channels for p in purposes} | set(state)
    return [
        {"channel": c, "purpose": p, "granted": state.get((c, p), False), "key": f"{c}.{p}"}
        for c, p in sorted(pairs)
    ]


@router.get(
    "/u/{token}/preferences",
    response_class=HTMLResponse,
    summary="Preferences page",
    responses=_PAGE_ERRORS,
)
def preferences(request: Request, token: str, saved: int | None = None) -> HTMLResponse:
    """Each channel and purpose with a switch."""
    try:
        user_id, channel, purpose = _verify(request, token)
    except InvalidTokenError:
        return _invalid(request)
    if not _user_exists(request, user_id):
        return _unknown(request)
    lang = pick_locale(request, request.app.state.project.config.locale)
    rows = _choices(request, user_id, channel, purpose)
    for r in rows:
        r.update(_words(lang, r["channel"], r["purpose"]))
    return _page(
        request,
        "preferences.html.j2",
        rows=rows,
        action=f"/u/{token}/preferences",
        saved=None if saved is None else lang.t("Changes saved: {n}", n=saved),
    )


@router.post(
    "/u/{token}/preferences",
    response_class=HTMLResponse,
    summary="Save preferences",
    responses=_PAGE_ERRORS,
)
async def save_preferences(request: Request, token: str) -> Response:
    """Append a consent row for every switch that changed (source ``preferences``)."""
    from starlette.concurrency import run_in_threadpool

    # the page's form is urlencoded; parsed here (no multipart parser needed)
    body = (await request.body()).decode("utf-8", errors="replace")
    wanted = {k for k, v in parse_qsl(body, keep_blank_values=True) if v == "on"}
    try:
        user_id, channel, purpose = _verify(request, token)
    except InvalidTokenError:
        return _invalid(request)
    if not await run_in_threadpool(_user_exists, request, user_id):
        return _unknown(request)
    changed = await run_in_threadpool(_save, request, user_id, channel, purpose, wanted)
    return _page(
        request,
        "message.html.j2",
        title="Your preferences are saved",
        text="",
        preferences=f"/u/{token}/preferences",
        count=changed,
    )


def _save(request: Request, user_id: str, channel: str, purpose: str, wanted: set[str]) -> int:
    from segmint.serve._app import store_access

    rows = _choices(request, user_id, channel, purpose)
    now = datetime.now(UTC)
    changes = [
        {
            "user_id": user_id,
            "channel": r["channel"],
            "purpose": r["purpose"],
            "ts": now,
            "granted": r["key"] in wanted,
            "source": "preferences",
            "recorded_at": now,
        }
        for r in rows
        if (r["key"] in wanted) != r["granted"]
    ]
    if changes:
        with store_access(request) as store, store.transaction():
            store.insert("consents", pd.DataFrame(changes))
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    log.info("preferences: user #%s changed %d", digest, len(changes))
    return len(changes)
