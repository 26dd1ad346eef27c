"""The workspace's People pages: find a person, and see what segmint knows and does about them.

- ``GET /people``: a search box and the people active most recently.
- ``POST /people``: the search (a form post, so an e-mail address never lands in a URL
  or an access log): a whole user id, the start of one (a short list), an e-mail address
  (exact, any case) or a phone number, both found by their blind index (nothing is
  decrypted to search). One match opens the person's page.
- ``GET /people/{user_id}``: the profile (:meth:`segmint.project.Project.profile`), the
  decision the site gets now (``ws.host.decide``), the segments in every run of each
  segmentation, the latest recommendations, and one timeline of events, orders, messages
  and consent changes, newest first, 100 at a time (``?before=`` pages back in time,
  ``?show=`` keeps one kind). Every view is written to the audit log (``person.view``):
  it shows personal data; the contacts the profile opens from their sealed form add a
  ``personal.read`` entry naming the fields.

Each query looks at one user's rows (``WHERE user_id = ?``) and is bounded by a LIMIT;
the timeline is one round trip (a UNION of four bounded selects).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import pandas as pd
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint._labels import feature_label, segment_label
from segmint.errors import NotFoundError
from segmint.store import PREFIX, open_vault
from segmint.web._app import message
from segmint.web._auth import Viewer
from segmint.web._core import language_of, page, record, workspace
from segmint.web._text import N_

router = APIRouter()
log = logging.getLogger(__name__)

PAGE = 100
"""Timeline entries per page."""
MATCHES = 20
"""At most this many people listed for an id prefix."""
RECENT = 12
"""People listed as recently active."""
RUNS_PER_SEGMENTATION = 12
"""Runs shown per segmentation in "segments over time" (the newest)."""
KINDS = ("event", "order", "message", "consent")
MAX_QUERY = 320

#: features shown as key numbers on a person's page: (feature, format)
KEY_FEATURES = (
    ("monetary", "money"),
    ("frequency", "count"),
    ("avg_order_value", "money"),
    ("recency_days", "count"),
    ("spend_365d", "money"),
    ("orders_365d", "count"),
    ("refund_rate", "pct"),
    ("discount_share", "pct"),
    ("last_active_days", "count"),
    ("events_30d", "count"),
    ("favourite_category", "text"),
)
#: words a page shows from the data (statuses, channels, kinds): translated when known
WORDS = (
    N_("sent"),
    N_("failed"),
    N_("pending"),
    N_("sending"),
    N_("rejected"),
    N_("skipped"),
    N_("completed"),
    N_("refunded"),
    N_("cancelled"),
    N_("online"),
    N_("offline"),
    N_("web"),
    N_("app"),
    N_("store"),
    N_("social"),
    N_("email"),
    N_("sms"),
    N_("push"),
    N_("webhook"),
    N_("file"),
    N_("granted"),
    N_("withdrawn"),
    N_("event"),
    N_("order"),
    N_("message"),
    N_("consent"),
    N_("treatment"),
    N_("control"),
    N_("grid"),
    N_("list"),
    N_("hero"),
)


# -- searching -----------------------------------------------------------------------------
@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, session: Viewer) -> HTMLResponse:
    with workspace(request).project() as p:
        recent = _recent(p.store)
    return _people(request, recent=recent)


@router.post("/people", response_class=HTMLResponse)
def people_search(request: Request, session: Viewer, q: Annotated[str, Form()] = "") -> Response:
    """Find people by id, id prefix or e-mail (the text searched is never logged)."""
    query = q.strip()
    matches: list[dict[str, Any]] = []
    more = False
    with workspace(request).project() as p:
        if query and len(query) <= MAX_QUERY:
            matches, more = _find(p.store, open_vault(p.store, p.config), query)
        if len(matches) == 1:
            return RedirectResponse(_href(matches[0]["user_id"]), status_code=303)
        recent = _recent(p.store)
    log.debug("people search: %d match(es)", len(matches))
    return _people(request, recent=recent, query=query, matches=matches, more=more, searched=True)


def _people(request: Request, **context: Any) -> HTMLResponse:
    context.setdefault("query", "")
    context.setdefault("searched", False)
    return page(
        request, "people.html.j2", active="people", title=N_("People"), href=_href, **context
    )


def _href(user_id: Any) -> str:
    return "/people/" + quote(str(user_id), safe="")


def _escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _find(store: Any, vault: Any, query: str) -> tuple[list[dict[str, Any]], bool]:
    """People matching ``query`` (an e-mail: exact, any case, by its blind index; else the
    user id; else a phone number, by its blind index; else ids starting with it, any
    case), at most :data:`MATCHES`; and whether there are more. Nothing is decrypted."""
    cols = "user_id, created_at, country, city"
    if "@" in query:
        # the index of a sealed address; an address stored in clear (a store from before
        # encryption) compared as it is
        frame = store.query(
            f"SELECT {cols} FROM users WHERE email_index = ? OR (email NOT LIKE ? "
            "AND lower(email) = lower(?)) ORDER BY user_id LIMIT ?",
            [vault.index(query, "email"), PREFIX + "%", query, MATCHES + 1],
        )
        return _records(frame.head(MATCHES)), len(frame) > MATCHES
    frame = store.query(f"SELECT {cols} FROM users WHERE user_id = ?", [query])
    if frame.empty and _PHONE.fullmatch(query):
        frame = store.query(
            f"SELECT {cols} FROM users WHERE phone_index = ? ORDER BY user_id LIMIT ?",
            [vault.index(query, "phone"), MATCHES + 1],
        )
    if frame.empty:
        frame = store.query(
            f"SELECT {cols} FROM users WHERE lower(user_id) LIKE lower(?) ESCAPE '!' "
            "ORDER BY user_id LIMIT ?",
            [_escape_like(query) + "%", MATCHES + 1],
        )
    return _records(frame.head(MATCHES)), len(frame) > MATCHES


_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{5,}")
"""What a phone number typed in the search box looks like (6 digits or more)."""


def _recent(store: Any) -> list[dict[str, Any]]:
    """The people with the latest events or orders (the newest rows only are read)."""
    frame = store.query(
        """SELECT r.user_id, r.last_seen, u.country, u.city
           FROM (SELECT user_id, max(ts) AS last_seen FROM (
                   (SELECT user_id, ts FROM events WHERE user_id IS NOT NULL
                    ORDER BY ts DESC LIMIT 500)
                   UNION ALL
                   (SELECT user_id, ts FROM orders ORDER BY ts DESC LIMIT 500)) AS t
                 GROUP BY user_id) AS r
           JOIN users AS u ON u.user_id = r.user_id
           ORDER BY r.last_seen DESC, r.user_id LIMIT ?""",
        [RECENT],
    )
    return _records(frame)


# -- one person ----------------------------------------------------------------------------
@router.get("/people/{user_id:path}", response_class=HTMLResponse)
def person_page(
    request: Request,
    session: Viewer,
    user_id: Annotated[str, Path(max_length=256)],
    before: str | None = None,
    show: str = "all",
) -> HTMLResponse:
    """One person: profile, decision, segments over time, recommendations, timeline."""
    started = time.perf_counter()
    ws = workspace(request)
    cursor = _parse_before(before)
    kinds = (show,) if show in KINDS else KINDS
    try:
        with ws.project() as p:
            profile = p.profile(user_id, actor=session.name, why="person page")
            recs = _recommendations(p.store, profile.extras.get("recommendations"))
            history = _history(p.store, user_id)
            timeline = _timeline(p.store, user_id, kinds, cursor)
            record(p.store, session.name, "person.view", user_id)
    except NotFoundError:
        return message(
            request,
            404,
            N_("Not found"),
            N_("Nobody with this user id is in the store."),
            back="/people",
        )
    decision = ws.host.decide(user_id)
    log.debug("person page in %.1f ms", (time.perf_counter() - started) * 1000)
    lang = language_of(request)
    return page(
        request,
        "person.html.j2",
        active="people",
        title=N_("Person"),
        user_id=user_id,
        href=_href,
        profile=profile,
        key_numbers=_key_numbers(profile),
        favourites=_records(profile.favourite_categories),
        consents=_records(profile.consents),
        recommendations=recs,
        history=history,
        timeline=timeline,
        show=kinds[0] if len(kinds) == 1 else "all",
        before=cursor,
        decision=decision,
        decision_json=_decision_json(decision),
        seg=_translator(segment_label, lang),
        feature=_translator(feature_label, lang),
    )


def _decision_json(decision: dict[str, Any] | None) -> str:
    """The decision as ``/v1/decide`` sends it (times in ISO 8601, UTC as ``Z``)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        return str(value)

    return json.dumps(decision, default=default, indent=2, ensure_ascii=False)


def _translator(fn: Callable[[str, Any], str], lang: Any) -> Callable[[Any], str]:
    return lambda name: fn(str(name), lang)


def _parse_before(before: str | None) -> datetime | None:
    """The timeline's paging cursor (an ISO timestamp; a bad one shows the newest)."""
    if not before:
        return None
    try:
        when = datetime.fromisoformat(before.strip().replace(" ", "+"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _key_numbers(profile: Any) -> list[tuple[str, str, Any]]:
    """(feature, format, value) of the key features the profile has, then any predicted
    value (customer lifetime value, churn) the features or the profile carry."""
    features = dict(profile.features)
    out = [(name, kind, features[name]) for name, kind in KEY_FEATURES if name in features]
    predicted = {**features, **profile.extras}
    for name, value in predicted.items():
        if any(word in name for word in ("clv", "churn", "p_alive")) and _is_number(value):
            out.append((name, "money" if "clv" in name else "num", value))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _recommendations(store: Any, recs: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The profile's recommendations with each item's category (None: no batch run)."""
    if recs is None:
        return None
    ids = [str(r["item_id"]) for r in recs]
    categories: dict[str, Any] = {}
    if ids:
        marks = ", ".join("?" for _ in ids)
        found = store.query(f"SELECT item_id, category FROM items WHERE item_id IN ({marks})", ids)
        categories = dict(zip(found["item_id"], found["category"], strict=True))
    return [
        {
            **{k: (None if _blank(v) else v) for k, v in r.items()},
            "category": categories.get(str(r["item_id"])),
        }
        for r in recs
    ]


def _history(store: Any, user_id: str) -> list[dict[str, Any]]:
    """Per segmentation, the person's segment in each of its newest runs (oldest first),
    with ``changed`` set where it differs from the run before."""
    frame = store.query(
        """SELECT r.segmentation, r.run_id, r.created_at, r.as_of, a.segment
           FROM (SELECT segmentation, run_id, created_at, as_of FROM segment_runs
                 QUALIFY row_number() OVER (PARTITION BY segmentation
                                            ORDER BY created_at DESC, run_id DESC) <= ?) AS r
           LEFT JOIN segment_assignments AS a ON a.run_id = r.run_id AND a.user_id = ?
           ORDER BY r.segmentation, r.created_at, r.run_id""",
        [RUNS_PER_SEGMENTATION, user_id],
    )
    out: list[dict[str, Any]] = []
    for name, runs in frame.groupby("segmentation", sort=True):
        rows: list[dict[str, Any]] = []
        previous: str | None = None
        for rec in runs.to_dict(orient="records"):
            segment = None if pd.isna(rec["segment"]) else str(rec["segment"])
            rec["segment"] = segment
            rec["changed"] = bool(rows) and segment != previous
            rows.append(rec)
            previous = segment
        out.append(
            {"segmentation": str(name), "runs": rows, "n_changes": sum(r["changed"] for r in rows)}
        )
    return out


_TIMELINE_PARTS = {
    "event": """(SELECT 'event' AS kind, ts, event AS what, channel, item_id AS ref,
        CAST(NULL AS DOUBLE) AS amount, CAST(NULL AS VARCHAR) AS currency,
        CAST(NULL AS VARCHAR) AS status, CAST(NULL AS VARCHAR) AS extra
        FROM events WHERE user_id = ? AND ts < ? ORDER BY ts DESC LIMIT ?)""",
    "order": """(SELECT 'order' AS kind, ts, order_id AS what, channel,
        CAST(NULL AS VARCHAR) AS ref, amount, currency, status, CAST(NULL AS VARCHAR) AS extra
        FROM orders WHERE user_id = ? AND ts < ? ORDER BY ts DESC LIMIT ?)""",
    "message": """(SELECT 'message' AS kind, d.sent_ts AS ts, d.campaign AS what, d.channel,
          d.step AS ref, CAST(NULL AS DOUBLE) AS amount, CAST(NULL AS VARCHAR) AS currency,
          d.status,
          (SELECT a.arm FROM campaign_assignments AS a
           WHERE a.campaign = d.campaign AND a.user_id = d.user_id) AS extra
        FROM (SELECT campaign, channel, step, status, user_id,
                     coalesce(sent_at, updated_at, created_at) AS sent_ts
              FROM deliveries WHERE user_id = ?) AS d
        WHERE d.sent_ts < ? ORDER BY d.sent_ts DESC LIMIT ?)""",
    "consent": """(SELECT 'consent' AS kind, ts, purpose AS what, channel,
          CAST(NULL AS VARCHAR) AS ref, CAST(NULL AS DOUBLE) AS amount,
          CAST(NULL AS VARCHAR) AS currency,
          CASE WHEN granted THEN 'granted' ELSE 'withdrawn' END AS status, source AS extra
        FROM consents WHERE user_id = ? AND ts < ? ORDER BY ts DESC LIMIT ?)""",
}
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def _timeline(
    store: Any, user_id: str, kinds: tuple[str, ...], before: datetime | None
) -> dict[str, Any]:
    """The person's events, orders, messages and consent changes before ``before``,
    newest first, :data:`PAGE` at most; ``next`` is the cursor of the next page (None:
    nothing older). A page never splits entries that share one timestamp."""
    union = "\nUNION ALL\n".join(_TIMELINE_PARTS[k] for k in kinds)
    params: list[Any] = []
    for _ in kinds:
        params += [user_id, before or _FAR_FUTURE, PAGE + 1]
    frame = store.query(
        f"""SELECT t.*, i.title FROM ({union}) AS t
            LEFT JOIN items AS i ON t.kind = 'event' AND i.item_id = t.ref
            ORDER BY t.ts DESC, t.kind, t.what LIMIT ?""",
        [*params, PAGE + 1],
    )
    rows = _records(frame)
    cursor = None
    if len(rows) > PAGE:
        cut = rows[PAGE]["ts"]
        kept = [r for r in rows[:PAGE] if r["ts"] != cut]
        rows = kept or rows[:PAGE]
        cursor = pd.Timestamp(rows[-1]["ts"]).isoformat()
    return {"rows": rows, "next": cursor}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts, missing values as None."""
    return [
        {str(k): (None if _blank(v) else v) for k, v in rec.items()}
        for rec in frame.to_dict(orient="records")
    ]


def _blank(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
