"""Segment tracking messages into the store, through the validation a file goes through.

:func:`load_messages` takes one micro-batch of messages as the tracking API received them
(Segment's spec: ``track``, ``page``, ``screen``, ``group``, ``identify``, ``alias``) and
turns them, in one pass over the list, into rows in memory, one Arrow table per
canonical table (:class:`~segmint.sources._frame.Frame`). Each table is then loaded by
the file pipeline itself (:func:`~segmint.sources._ingest._ingest_source`): the same
coercions, checks, field issues, duplicate keys, unknown references, cleaning, quarantine
and ``loads`` record, under the source name ``tracking:<source>``; no SQL runs per
message. Everything of one call (every table's load, the identities, the messages'
record in ``tracked_messages`` and the caller's ``inside``) is one transaction.

The mapping (see docs/serve.md, "From messages to rows"):

- ``track`` -> ``events`` (``event``: ``tracking.events[name]``, else the name in
  snake_case; ``event_id``: the messageId), except the event mapped to ``order`` (an
  ``orders`` row and ``order_items`` from ``products[]``) and ``tracking.consent_event``
  (a ``consents`` row); ``page`` / ``screen`` / ``group`` -> events ``page_view`` /
  ``screen_view`` / ``group``;
- ``identify`` -> ``users`` (reserved traits to columns, the rest to ``traits``; traits
  absent from the message keep their stored value) and, with an anonymousId, a link in
  ``identities``; ``alias`` -> a link previousId -> userId;
- a userId not stored becomes a user (a row holding only the id); an anonymous message of
  a linked anonymousId gets the user's id; a new link fills the user's id into the
  anonymous events stored before.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import pandas as pd
import pyarrow as pa

from segmint.config import Config
from segmint.sources._frame import Frame
from segmint.sources._ingest import LoadResult, _ingest_source
from segmint.store import LOAD_ORDER, SEALED_COLUMNS, TABLES, Store, Vault, open_vault

__all__ = ["TrackingLoad", "load_messages"]

ORDER_EVENT = "order"
"""The segmint event type (a value of ``tracking.events``) that stores an order."""

# identify: reserved traits (Segment's spec) -> users columns; address.* is nested
_TRAIT_COLUMNS = {
    "email": "email",
    "phone": "phone",
    "birthday": "birthday",
    "gender": "gender",
    "age": "age",
    "createdAt": "created_at",
    "created_at": "created_at",
    "country": "country",
    "city": "city",
    "income_band": "income_band",
    "acquisition_channel": "acquisition_channel",
}
_USER_COLUMNS = tuple(c for c in TABLES["users"].source_columns if c != "user_id")
_SIMPLE_EVENTS = {"page": "page_view", "screen": "screen_view", "group": "group"}
_EVENT_COLUMNS = ("event_id", "user_id", "anonymous_id", "event", "ts", "channel", "item_id",
                  "properties")  # fmt: skip
if TABLES["events"].column_names != list(_EVENT_COLUMNS):  # pragma: no cover - schema drift
    raise RuntimeError("the events table's columns changed: update _EVENT_COLUMNS and _track")
_DEFAULT_CHANNEL = {"page": "web", "screen": "app"}  # without a context that tells
_IN_LIST = "IN (SELECT unnest(CAST(? AS VARCHAR[])))"


@dataclass(frozen=True)
class TrackingLoad:
    """What one call of :func:`load_messages` stored.

    At the message level ``messages_read == duplicates + accepted + rejected``: a
    duplicate is a message whose (source, messageId) was stored before or came earlier in
    the batch (not stored again); a message is rejected when its main row was (the event,
    the order, the consent, the user of an identify), or when no row could be made of it
    (an unparseable line, no messageId, an unknown type, an alias without both ids); its
    reasons are in the quarantine. The rows of each table went through one load each, in
    ``loads`` (a :class:`~segmint.sources.LoadResult`, source ``tracking:<source>``), whose
    own counts are per row (an order's lines, the users made for new userIds).
    """

    messages_read: int
    duplicates: int
    accepted: int
    rejected: int
    identities_linked: int = 0  # new links anonymous_id -> user_id written
    events_backfilled: int = 0  # stored anonymous events given their user's id
    loads: tuple[LoadResult, ...] = ()
    seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)  # messages (not duplicates) per type

    @property
    def load_ids(self) -> list[str]:
        """The ids of this call's loads (one per source and table with rows)."""
        return [r.load_id for r in self.loads]

    def load_of(self, table: str) -> LoadResult | None:
        """The load of ``table`` (the first, when the batch held several sources)."""
        return next((r for r in self.loads if r.table == table), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        out = asdict(self)
        out["load_ids"] = self.load_ids
        return out


def load_messages(
    store: Store,
    config: Config,
    messages: list[dict[str, Any]],
    *,
    inside: Callable[[], None] | None = None,
    now: datetime | None = None,
) -> TrackingLoad:
    """Load one micro-batch of Segment messages into ``store``, exactly once.

    Parameters
    ----------
    store : Store
        The project's store (schema ensured).
    config : Config
        The project's configuration (``tracking.events``, ``tracking.consent_event``,
        validation and cleaning rules).
    messages : list of dict
        Messages as received, each with ``_source`` (the tracking source's name), ``type``,
        ``messageId``, ``timestamp``, ``userId`` and/or ``anonymousId``, ... A line that
        could not be parsed is ``{"_raw": ..., "_error": ...}``: it is quarantined.
    inside : callable, optional
        Called inside the transaction, after everything is written (the caller records
        how far its spool is loaded): if it raises, nothing of the batch is stored.
    now : datetime, optional
        "Now" for the future-timestamp check and the identities' ``linked_at``.

    Returns
    -------
    TrackingLoad
        Messages read, duplicates, accepted, rejected, and each table's load.
    """
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(messages):
        src = m.get("_source") if isinstance(m, dict) else None
        groups.setdefault(f"tracking:{src or 'default'}", []).append(i)
    parts: list[_Outcome] = []
    with store.ingest_lock(), store.transaction():
        for name, indices in groups.items():
            parts.append(_Batch(store, config, name, messages, indices, now).load())
        if inside is not None:
            inside()
    by_type: dict[str, int] = {}
    for p in parts:
        for k, v in p.by_type.items():
            by_type[k] = by_type.get(k, 0) + v
    return TrackingLoad(
        messages_read=len(messages),
        duplicates=sum(p.duplicates for p in parts),
        accepted=sum(p.accepted for p in parts),
        rejected=sum(p.rejected for p in parts),
        identities_linked=sum(p.linked for p in parts),
        events_backfilled=sum(p.backfilled for p in parts),
        loads=tuple(r for p in parts for r in p.loads),
        seconds=time.perf_counter() - t0,
        by_type=by_type,
    )


@dataclass
class _Outcome:
    duplicates: int
    accepted: int
    rejected: int
    linked: int
    backfilled: int
    loads: list[LoadResult]
    by_type: dict[str, int]


# --- small pure helpers ---------------------------------------------------------------


@lru_cache(maxsize=4096)
def snake_case(name: str) -> str:
    """An event name in snake_case: ``Product Viewed`` and ``productViewed`` ->
    ``product_viewed``."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()


@lru_cache(maxsize=1024)
def _channel_of(library: str, device: str, os_name: str, web: bool, app: bool) -> str:
    library, device, os_name = library.lower(), device.lower(), os_name.lower()
    if device in ("ios", "android") or os_name in ("ios", "ipados", "android"):
        return "app"
    if any(k in library for k in ("ios", "android", "swift", "kotlin", "react-native", "flutter")):
        return "app"
    if web or library in ("analytics.js", "analytics-next", "analytics-browser"):
        return "web"
    return "app" if app else ""


def _sub(context: dict[str, Any], key: str, sub: str) -> str:
    v = context.get(key)
    if isinstance(v, dict):
        text = v.get(sub)
        return text if isinstance(text, str) else ""
    return ""


def channel(context: Any, default: str = "server") -> str:
    """The events channel of a message's ``context``: ``app`` (an iOS or Android device or
    library), ``web`` (a page or a browser's user agent, analytics.js), ``app`` (any other
    context naming an app), else ``default`` (``server``: a server library, or no context;
    ``web`` for a ``page``, ``app`` for a ``screen``)."""
    if not isinstance(context, dict) or not context:
        return default
    found = _channel_of(
        _sub(context, "library", "name"),
        _sub(context, "device", "type"),
        _sub(context, "os", "name"),
        "page" in context or "userAgent" in context,
        "app" in context,
    )
    return found or default


def _id(value: Any) -> str | None:
    """An id as text (Segment allows numbers), None when absent or blank."""
    if value is None or isinstance(value, bool):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _text(value: Any) -> str | None:
    """A value as the text a file would hold: None stays None, objects become JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _dumps(value)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _json(value: Any) -> str | None:
    return _dumps(value) if value else None


def _stored_text(value: Any) -> str | None:
    """A stored value (from a store query) as text to load again."""
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return _text(value)


def _opened(vault: Vault, rec: dict[Any, Any]) -> dict[str, Any]:
    """A stored users row with its sealed values opened (the loader seals them again: the
    same text, sealing is deterministic)."""
    out = {str(k): v for k, v in rec.items()}
    for table, col in SEALED_COLUMNS:
        if table == "users" and isinstance(out.get(col), str):
            out[col] = vault.open(out[col], f"users.{col}")
    traits = out.get("traits")
    if isinstance(traits, str):
        out["traits"] = vault.open_json_text(traits, "users.traits")
    elif isinstance(traits, dict):
        out["traits"] = json.dumps(vault.open_json(traits, "users.traits"))
    return out


def _received(m: dict[str, Any], now: datetime) -> datetime:
    value = m.get("receivedAt")
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        except ValueError:
            pass
    return now


# --- one source's messages -------------------------------------------------------------


class _Columns:
    """Rows of one table in the making, column by column (our names, as text)."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.names = ["_row", "message_id", *columns]
        self.rows: list[tuple[Any, ...]] = []  # in the order of names; transposed once

    def add(self, **values: Any) -> int:
        """Add a row by column name (a column not given is NULL); returns its index."""
        self.rows.append(tuple(values.get(c) for c in self.names))
        return len(self.rows) - 1

    def add_row(self, *values: Any) -> int:
        """Add a row holding a value for each of :attr:`names`, in order (the fast path)."""
        self.rows.append(values)
        return len(self.rows) - 1

    def set(self, row: int, column: str, value: Any) -> None:
        at = self.names.index(column)
        old = self.rows[row]
        self.rows[row] = (*old[:at], value, *old[at + 1 :])

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self, table: str, name: str, unparsed: list[tuple[int, str, str]]) -> Frame:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(self.names)
        arrays = {
            c: pa.array(v, pa.int64() if c == "_row" else pa.string())
            for c, v in zip(self.names, columns, strict=True)
        }
        mapped = tuple(c for c in self.names if c not in ("_row", "message_id"))
        return Frame(table, pa.table(arrays), mapped, tuple(unparsed), location=name)


class _Batch:
    """The messages of one tracking source in a batch, turned into rows and loaded."""

    def __init__(
        self,
        store: Store,
        config: Config,
        name: str,
        messages: list[dict[str, Any]],
        indices: list[int],
        now: datetime,
    ) -> None:
        self.store, self.config, self.name, self.now = store, config, name, now
        self.messages, self.indices = messages, indices
        self.event_map = config.tracking.events
        self.consent_event = config.tracking.consent_event
        self.status: dict[int, str] = {}  # message index -> dup / rej / acc (default)
        self.main: dict[int, tuple[str, int]] = {}  # message index -> (table, _row)
        self.unparsed: list[tuple[int, str, str]] = []  # into the events load
        self.links: dict[str, tuple[str, int]] = {}  # anonymous id -> (user id, message)
        self.identify: dict[str | None, list[int]] = {}  # user id -> identify messages
        self.by_type: dict[str, int] = {}
        self.tables = {t: _Columns(TABLES[t].source_columns) for t in LOAD_ORDER if t != "items"}
        self.anonymous_rows: dict[str, list[tuple[str, int]]] = {}  # anon id -> rows to fill
        self.user_ids: set[str] = set()
        self.item_row = len(messages)  # row numbers past the messages' (order lines, users)
        self.new_links: dict[str, tuple[str, int]] = {}  # links not stored yet
        self.load_ids: dict[str, str] = {}  # table -> this batch's load of it
        self.mids: dict[int, str] = {}  # message index -> its messageId, as text

    # -- the pass over the messages ----------------------------------------------------
    def load(self) -> _Outcome:
        fresh = self._deduplicate()
        for i in fresh:
            self._message(i, self.messages[i])
        self._resolve_anonymous()
        self._users()
        loads = self._load_tables()
        linked, backfilled = self._link()
        self._record(fresh)
        n = {s: 0 for s in ("dup", "rej", "acc")}
        for i in self.indices:
            n[self.status.get(i, "acc")] += 1
        return _Outcome(n["dup"], n["acc"], n["rej"], linked, backfilled, loads, self.by_type)

    def _reject(self, i: int, raw: str, reason: str) -> None:
        self.status[i] = "rej"
        self.unparsed.append((i + 1, raw, reason))

    def _deduplicate(self) -> list[int]:
        """The messages to store: each messageId once, and not stored before."""
        seen: dict[str, int] = {}
        for i in self.indices:
            m = self.messages[i]
            if not isinstance(m, dict):
                self._reject(i, _dumps(m), "not a JSON object")
            elif "_raw" in m:
                raw = m.get("_raw")
                why = m.get("_error") or "unparseable message"
                self._reject(i, raw if isinstance(raw, str) else _dumps(raw), f"{why}")
            elif (mid := _id(m.get("messageId"))) is None:
                self._reject(i, _dumps(m), "missing messageId")
            elif mid in seen:
                self.status[i] = "dup"
            else:
                seen[mid] = i
                self.mids[i] = mid
        if not seen:
            return []
        stored = self.store.query(
            f"SELECT message_id FROM tracked_messages WHERE source = ? AND message_id {_IN_LIST}",
            [self.name, list(seen)],
        )
        for mid in stored["message_id"]:
            self.status[seen.pop(str(mid))] = "dup"
        return sorted(seen.values())

    def _message(self, i: int, m: dict[str, Any]) -> None:
        kind = m.get("type")
        uid, aid = _id(m.get("userId")), _id(m.get("anonymousId"))
        if kind == "alias":
            prev, uid = _id(m.get("previousId")), uid
            if prev is None or uid is None:
                self._reject(i, _dumps(m), "an alias needs both previousId and userId")
            else:
                self.links.setdefault(prev, (uid, i))
                self.user_ids.add(uid)
        elif kind == "identify":
            if uid is not None and aid is not None:
                self.links.setdefault(aid, (uid, i))
            self.identify.setdefault(uid, []).append(i)
        elif kind in ("track", "page", "screen", "group"):
            if uid is None and aid is None:
                self._reject(i, _dumps(m), "neither userId nor anonymousId")
                return
            self._track(i, m, str(kind), uid, aid)
        else:
            self._reject(i, _dumps(m), f"unknown message type {kind!r}")
            return
        self.by_type[str(kind)] = self.by_type.get(str(kind), 0) + 1

    def _user(self, table: str, row: int, uid: str | None, aid: str | None) -> None:
        if uid is not None:
            self.user_ids.add(uid)
        elif aid is not None:
            self.anonymous_rows.setdefault(aid, []).append((table, row))

    def _track(
        self, i: int, m: dict[str, Any], kind: str, uid: str | None, aid: str | None
    ) -> None:
        props = m.get("properties")
        props = props if isinstance(props, dict) else {}
        ts = _text(m.get("timestamp") or m.get("receivedAt"))
        mid = self.mids[i]
        if kind == "track":
            name = m.get("event")
            event = None
            if isinstance(name, str) and name.strip():
                event = self.event_map.get(name) or snake_case(name)
            if name == self.consent_event:
                self._consent(i, mid, props, ts, uid, aid)
                return
            if isinstance(name, str) and self.event_map.get(name) == ORDER_EVENT:
                self._order(i, mid, props, ts, uid, aid)
                return
        else:
            event = _SIMPLE_EVENTS[kind]
            if kind == "group":
                props = {"group_id": m.get("groupId"), "traits": m.get("traits")}
            elif m.get("name") is not None:
                props = {"name": m.get("name"), **props}
        events = self.tables["events"]
        # in the order of the events columns (_EVENT_COLUMNS)
        row = events.add_row(
            i + 1, mid, mid, uid, aid, event, ts,
            channel(m.get("context"), _DEFAULT_CHANNEL.get(kind, "server")),
            _text(props.get("product_id") or props.get("sku")), _dumps(props) if props else None,
        )  # fmt: skip
        self.main[i] = ("events", i + 1)
        self._user("events", row, uid, aid)

    def _order(
        self,
        i: int,
        mid: str,
        props: dict[str, Any],
        ts: str | None,
        uid: str | None,
        aid: str | None,
    ) -> None:
        order_id = _id(props.get("order_id")) or _text(mid)
        amount = next(
            (props[k] for k in ("total", "revenue", "value") if props.get(k) is not None), None
        )
        row = self.tables["orders"].add(
            _row=i + 1, message_id=mid, order_id=order_id, user_id=uid, ts=ts,
            amount=_text(amount), currency=_text(props.get("currency")) or self.config.currency,
            channel="online", discount=_text(props.get("discount")) or "0", status="completed",
        )  # fmt: skip
        self.main[i] = ("orders", i + 1)
        self._user("orders", row, uid, aid)
        products = props.get("products")
        for line, p in enumerate(products if isinstance(products, list) else [], start=1):
            p = p if isinstance(p, dict) else {}
            self.item_row += 1
            self.tables["order_items"].add(
                _row=self.item_row, message_id=mid, order_id=order_id, line=str(line),
                item_id=_id(p.get("product_id")) or _id(p.get("sku")),
                quantity=_text(p.get("quantity", 1)), unit_price=_text(p.get("price")),
            )  # fmt: skip

    def _consent(
        self,
        i: int,
        mid: str,
        props: dict[str, Any],
        ts: str | None,
        uid: str | None,
        aid: str | None,
    ) -> None:
        row = self.tables["consents"].add(
            _row=i + 1, message_id=mid, user_id=uid, channel=_text(props.get("channel")),
            purpose=_text(props.get("purpose")) or "marketing", ts=ts,
            granted=_text(props.get("granted")), source="tracking",
        )  # fmt: skip
        self.main[i] = ("consents", i + 1)
        self._user("consents", row, uid, aid)

    # -- identities and users -----------------------------------------------------------
    def _resolve_anonymous(self) -> None:
        """Anonymous rows of a linked anonymousId get the user's id; which links are new."""
        wanted = list(self.anonymous_rows.keys() | self.links.keys())
        stored: dict[str, str] = {}
        if wanted:
            found = self.store.query(
                f"SELECT anonymous_id, user_id FROM identities WHERE anonymous_id {_IN_LIST}",
                [wanted],
            )
            stored = dict(
                zip(found["anonymous_id"].astype(str), found["user_id"].astype(str), strict=True)
            )
        self.new_links = {a: link for a, link in self.links.items() if a not in stored}
        known = {**{a: u for a, (u, _) in self.new_links.items()}, **stored}
        for aid, rows in self.anonymous_rows.items():
            uid = known.get(aid)
            if uid is None:
                continue
            self.user_ids.add(uid)
            for table, row in rows:
                self.tables[table].set(row, "user_id", uid)

    def _users(self) -> None:
        """The users rows: each identified user once (its identifies merged in order over
        the stored row), and a row holding only the id for each new userId."""
        ids = self.user_ids | {u for u in self.identify if u is not None}
        if not ids:
            return
        exists = self.store.query(
            f"SELECT user_id FROM users WHERE user_id {_IN_LIST}", [list(ids)]
        )
        stored_ids = set(exists["user_id"].astype(str))
        identified = [u for u in self.identify if u is not None and u in stored_ids]
        stored: dict[str, dict[str, Any]] = {}
        if identified:
            cols = ", ".join(_USER_COLUMNS)
            rows = self.store.query(
                f"SELECT user_id, {cols} FROM users WHERE user_id {_IN_LIST}", [identified]
            )
            vault = open_vault(self.store, self.config)
            for rec in rows.to_dict("records"):
                stored[str(rec["user_id"])] = _opened(vault, rec)
        users = self.tables["users"]
        for uid, msgs in self.identify.items():
            values, traits = self._traits(stored.get(uid) if uid is not None else None, msgs)
            row = msgs[-1] + 1
            users.add(_row=row, message_id=self.mids[msgs[-1]], user_id=uid,
                      traits=_json(traits), **values)  # fmt: skip
            for i in msgs:
                self.main[i] = ("users", row)
        for uid in sorted(ids - stored_ids - set(self.identify)):
            self.item_row += 1
            users.add(_row=self.item_row, user_id=uid)

    def _traits(
        self, stored: dict[str, Any] | None, msgs: list[int]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A user's columns (as text) and free traits: the stored ones, then each
        identify's in order (a trait absent from a message keeps its value)."""
        values: dict[str, Any] = {}
        traits: dict[str, Any] = {}
        if stored is not None:
            values = {c: _stored_text(stored.get(c)) for c in _USER_COLUMNS if c != "traits"}
            old = stored.get("traits")
            if isinstance(old, str) and old:
                try:
                    parsed = json.loads(old)
                    traits = parsed if isinstance(parsed, dict) else {}
                except ValueError:
                    traits = {}
        for i in msgs:
            t = self.messages[i].get("traits")
            t = t if isinstance(t, dict) else {}
            for key, value in t.items():
                col = _TRAIT_COLUMNS.get(key)
                if col is not None:
                    values[col] = _text(value)
                elif key == "address" and isinstance(value, dict):
                    for part in ("country", "city"):
                        if value.get(part) is not None:
                            values[part] = _text(value[part])
                    rest = {k: v for k, v in value.items() if k not in ("country", "city")}
                    if rest:
                        traits["address"] = rest
                else:
                    traits[key] = value
        return values, traits

    # -- loading -----------------------------------------------------------------------
    def _load_tables(self) -> list[LoadResult]:
        """Each table's rows through the file pipeline, in reference order; the messages
        whose main row was rejected are marked so."""
        results: list[LoadResult] = []
        for table, cols in self.tables.items():
            unparsed = self.unparsed if table == "events" else []
            if not len(cols) and not unparsed:
                continue
            result = _ingest_source(
                self.store, self.config, self.name, force=True, now=self.now, callback=None,
                _before_commit=None, frame=cols.frame(table, self.name, unparsed),
            )  # fmt: skip
            results.append(result)
            self.load_ids[table] = result.load_id
            if result.rows_rejected:
                rejected = set(
                    self.store.query(
                        "SELECT \"row\" FROM quarantine WHERE load_id = ? AND kind = 'rejected'",
                        [result.load_id],
                    )["row"].astype(int)
                )
                for i, (t, row) in self.main.items():
                    if t == table and row in rejected:
                        self.status[i] = "rej"
        return results

    def _link(self) -> tuple[int, int]:
        """Write the new links, and fill their user's id into the anonymous events stored
        before. Returns (links written, events filled)."""
        if not self.new_links:
            return 0, 0
        links = [(a, u, i) for a, (u, i) in self.new_links.items() if self.status.get(i) != "rej"]
        if not links:
            return 0, 0
        self.store.insert(
            "identities",
            pa.table(
                {
                    "anonymous_id": pa.array([a for a, _, _ in links], pa.string()),
                    "user_id": pa.array([u for _, u, _ in links], pa.string()),
                    "source": pa.array([self.name] * len(links), pa.string()),
                    "linked_at": pa.array([self.now] * len(links), pa.timestamp("us", tz="UTC")),
                    "message_id": pa.array([self.mids[i] for _, _, i in links], pa.string()),
                }
            ),
        )
        anon = [a for a, _, _ in links]
        where = f"user_id IS NULL AND anonymous_id {_IN_LIST}"
        n = int(self.store.scalar(f"SELECT count(*) FROM events WHERE {where}", [anon]) or 0)
        if n:
            self.store.execute(
                "UPDATE events SET user_id = (SELECT i.user_id FROM identities i "
                f"WHERE i.anonymous_id = events.anonymous_id) WHERE {where}",
                [anon],
            )
        return len(links), n

    def _record(self, fresh: list[int]) -> None:
        """Every message stored (accepted or quarantined) in ``tracked_messages``: a replay
        is a duplicate."""
        if not fresh:
            return
        unparsed = {r for r, _, _ in self.unparsed}  # quarantined by the events load
        rows = []
        for i in fresh:
            m = self.messages[i]
            main = self.main.get(i)
            table = main[0] if main else "events" if i + 1 in unparsed else None
            load_id = self.load_ids.get(table) if table else None  # an alias: no load
            rows.append((self.mids[i], _received(m, self.now), load_id))
        self.store.insert(
            "tracked_messages",
            pa.table(
                {
                    "source": pa.array([self.name] * len(rows), pa.string()),
                    "message_id": pa.array([r[0] for r in rows], pa.string()),
                    "received_at": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                    "load_id": pa.array([r[2] for r in rows], pa.string()),
                }
            ),
        )
