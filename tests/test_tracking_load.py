"""Segment tracking messages into the store (issue 19): segmint.sources.load_messages.

The messages go through the file pipeline (validation, field issues, quarantine, loads),
exactly once per (source, messageId), in one transaction with the caller's ``inside``.
Each test runs on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segmint.config import Config
from segmint.sources import TrackingLoad, load_messages
from segmint.sources._tracking import channel, snake_case
from segmint.store import Store, open_store, open_vault

NOW = datetime(2026, 12, 2, tzinfo=UTC)
T = "2026-12-01T10:00:00Z"


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        str(tmp_path / "s.duckdb")
        if request.param == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    s = open_store(url)
    s.ensure_schema()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The master key from the environment (Config() has no project folder to keep one)."""
    monkeypatch.setenv("SEGMINT_MASTER_KEY", "5a" * 32)


def clear(store: Store, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Users rows with their sealed values opened (issue 21: sealed at rest)."""
    vault = open_vault(store, Config())
    out = []
    for u in users:
        u = dict(u)
        for col in ("email", "phone", "birthday"):
            if col in u:
                u[col] = vault.open(u[col], f"users.{col}")
        if u.get("traits") is not None:
            u["traits"] = vault.open_json_text(u["traits"], "users.traits")
        out.append(u)
    return out


def msg(mid: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "_source": "web",
        "type": kind,
        "messageId": mid,
        "timestamp": T,
        "receivedAt": T,
        **fields,
    }


def rows(store: Store, sql: str) -> list[dict[str, Any]]:
    """The rows of a query, missing values as None (pandas gives NaN, NaT or None)."""
    out = store.query(sql).astype(object).to_dict("records")
    return [
        {
            k: None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
            for k, v in r.items()
        }
        for r in out
    ]


def load(
    store: Store, messages: list[dict[str, Any]], config: Config | None = None, **kw: Any
) -> TrackingLoad:
    result = load_messages(store, config or Config(), messages, now=NOW, **kw)
    # the message-level invariant, on every call
    assert result.messages_read == result.duplicates + result.accepted + result.rejected
    for r in result.loads:  # and each table's load, as recorded
        assert r.rows_read == r.rows_accepted + r.rows_rejected
    return result


def order(
    mid: str, order_id: str, total: Any, products: list[dict[str, Any]], user: str | None = "u1"
) -> dict[str, Any]:
    props = {"order_id": order_id, "total": total, "currency": "EUR", "products": products}
    return msg(mid, "track", event="Order Completed", userId=user, properties=props)


MIXED = [
    msg("m1", "track", event="Product Viewed", anonymousId="a1", properties={"product_id": "p1", "price": 5},
        context={"library": {"name": "analytics.js"}, "page": {"url": "https://shop"}}),
    msg("m2", "identify", userId="u1", anonymousId="a1",
        traits={"email": "ann@example.com", "phone": "+33 1", "birthday": "1990-02-03", "gender": "f",
                "age": 36, "createdAt": "2025-01-02T03:04:05Z", "name": "Ann",
                "address": {"country": "FR", "city": "Paris", "street": "1 rue X"}}),
    order("m3", "o1", 30.5, [{"product_id": "p1", "price": 10, "quantity": 2}, {"sku": "s2", "price": 10.5}]),
    msg("m4", "page", userId="u2", name="Home", properties={"url": "https://shop/"}),
    msg("m5", "screen", anonymousId="a9", name="Cart", context={"device": {"type": "ios"}}),
    msg("m6", "alias", previousId="a9", userId="u3"),
    msg("m7", "track", event="Consent Updated", userId="u1",
        properties={"channel": "email", "purpose": "marketing", "granted": True}),
    msg("m8", "group", userId="u2", groupId="g1", traits={"name": "Acme"}),
    msg("m9", "track", event="Video Played", userId="u2", properties={"sku": "v1"}),
]  # fmt: skip


def test_mapping_table_by_table(store: Store) -> None:
    r = load(store, MIXED)
    assert (r.messages_read, r.duplicates, r.accepted, r.rejected) == (9, 0, 9, 0)
    assert {x.table for x in r.loads} == {"users", "orders", "order_items", "events", "consents"}
    assert all(x.source == "tracking:web" for x in r.loads)

    events = {e["event_id"]: e for e in rows(store, "SELECT * FROM events")}
    assert set(events) == {
        "m1",
        "m4",
        "m5",
        "m8",
        "m9",
    }  # the order, consent, identify, alias are not events
    assert events["m1"]["event"] == "product_view" and events["m1"]["item_id"] == "p1"
    assert events["m1"]["channel"] == "web" and events["m1"]["anonymous_id"] == "a1"
    assert events["m1"]["user_id"] == "u1"  # linked by the identify of the same batch
    assert json.loads(events["m1"]["properties"]) == {"product_id": "p1", "price": 5}
    assert (events["m4"]["event"], events["m4"]["channel"]) == ("page_view", "web")
    page_name = json.loads(events["m4"]["properties"])["name"]  # "name" is personal: sealed
    assert open_vault(store, Config()).open(page_name, "events.properties.name") == "Home"
    assert (events["m5"]["event"], events["m5"]["channel"], events["m5"]["user_id"]) == (
        "screen_view",
        "app",
        "u3",
    )
    assert (
        events["m8"]["event"] == "group"
        and json.loads(events["m8"]["properties"])["group_id"] == "g1"
    )
    assert (events["m9"]["event"], events["m9"]["item_id"], events["m9"]["channel"]) == (
        "video_played",
        "v1",
        "server",
    )

    (o,) = rows(store, "SELECT * FROM orders")
    assert (o["order_id"], o["user_id"], o["amount"], o["currency"], o["status"]) == (
        "o1",
        "u1",
        30.5,
        "EUR",
        "completed",
    )
    lines = rows(store, "SELECT * FROM order_items ORDER BY line")
    assert [(x["line"], x["item_id"], x["quantity"], x["unit_price"]) for x in lines] == [
        (1, "p1", 2, 10.0),
        (
            2,
            "s2",
            1,
            10.5,
        ),  # quantity defaults to 1; an unknown product is kept (no reference to items)
    ]
    users = {u["user_id"]: u for u in clear(store, rows(store, "SELECT * FROM users"))}
    assert set(users) == {"u1", "u2", "u3"}  # u2, u3: new userIds become users
    u1 = users["u1"]
    assert (u1["email"], u1["phone"], u1["gender"], u1["age"], u1["country"], u1["city"]) == (
        "ann@example.com", "+33 1", "f", 36, "FR", "Paris")  # fmt: skip
    assert str(u1["birthday"])[:10] == "1990-02-03" and str(u1["created_at"])[:10] == "2025-01-02"
    assert json.loads(u1["traits"]) == {"name": "Ann", "address": {"street": "1 rue X"}}
    assert users["u2"]["email"] is None
    (c,) = rows(store, "SELECT * FROM consents")
    assert (c["user_id"], c["channel"], c["purpose"], bool(c["granted"]), c["source"]) == (
        "u1", "email", "marketing", True, "tracking")  # fmt: skip
    links = {x["anonymous_id"]: x["user_id"] for x in rows(store, "SELECT * FROM identities")}
    assert links == {"a1": "u1", "a9": "u3"}
    tracked = rows(store, "SELECT * FROM tracked_messages")
    assert {t["message_id"] for t in tracked} == {f"m{i}" for i in range(1, 10)}
    by_id = {t["message_id"]: t["load_id"] for t in tracked}
    load_of = {x.table: x.load_id for x in r.loads}
    assert by_id["m3"] == load_of["orders"] and by_id["m2"] == load_of["users"]
    assert by_id["m1"] == load_of["events"] and by_id["m7"] == load_of["consents"]
    recorded = rows(
        store, "SELECT source, target_table, rows_read, rows_accepted, rows_rejected FROM loads"
    )
    assert {(x["source"], x["target_table"]) for x in recorded} == {
        ("tracking:web", t) for t in load_of
    }


def test_bad_values_are_quarantined_and_counts_add_up(store: Store) -> None:
    batch = [
        msg("b1", "track", event="Product Viewed", userId="u1", timestamp="yesterday-ish"),
        order("b2", "o-neg", -5, [{"product_id": "p1", "price": 1}]),
        order("b3", "o-ok", 12, [{"product_id": "p1", "price": -3, "quantity": 1}, {"product_id": "p2", "quantity": 0}]),
        {"_source": "web", "_raw": '{"type": "track", "messageId": ', "_error": "malformed JSON line"},
        msg("b5", "teleport", userId="u1"),
        {"_source": "web", "type": "track", "event": "X", "userId": "u1", "timestamp": T},  # no messageId
        msg("b7", "alias", userId="u1"),  # no previousId
        msg("b8", "track", event="Consent Updated", userId="u1", properties={"channel": "pigeon", "granted": True}),
        msg("b9", "track", event="Product Viewed", userId="u1"),
    ]  # fmt: skip
    r = load(store, batch)
    assert (r.messages_read, r.duplicates, r.accepted, r.rejected) == (9, 0, 2, 7)
    q = rows(
        store,
        'SELECT target_table, "row", rule, reason, kind, field, raw FROM quarantine ORDER BY target_table, "row"',
    )
    vault = open_vault(store, Config())
    for x in q:  # the raw rows are sealed at rest (issue 21): a JSON string of sealed text
        sealed = json.loads(x["raw"]) if x["raw"].startswith('"enc1:') else x["raw"]
        assert sealed.startswith("enc1:"), "raw rows are sealed at rest"
        x["raw"] = vault.open(sealed, "quarantine.raw")
    rejected = {(x["target_table"], x["rule"]) for x in q if x["kind"] == "rejected"}
    assert rejected == {
        ("events", "unparseable_timestamp"),
        ("events", "unparseable_row"),  # the raw line, the unknown type, no messageId, the alias
        ("orders", "negative_amount"),
        ("order_items", "unknown_reference"),  # the lines of the rejected order
        ("order_items", "bad_quantity"),
        ("consents", "unknown_value"),
    }
    reasons = " | ".join(x["reason"] for x in q)
    for words in ("malformed JSON line", "unknown message type 'teleport'", "missing messageId",
                  "previousId", "negative amount", "pigeon", "unparseable timestamp in ts"):  # fmt: skip
        assert words in reasons
    issues = [x for x in q if x["kind"] == "field_issue"]
    assert [(x["target_table"], x["field"], x["rule"]) for x in issues] == [
        ("order_items", "unit_price", "negative_amount")  # the line is kept, its price NULL
    ]
    assert rows(store, "SELECT item_id, unit_price FROM order_items") == [
        {"item_id": "p1", "unit_price": None}
    ]
    raw = json.loads(next(x["raw"] for x in q if x["rule"] == "unparseable_timestamp"))
    assert raw["message_id"] == "b1" and raw["ts"] == "yesterday-ish"
    assert any(json.loads(x["raw"]) == '{"type": "track", "messageId": ' for x in q)
    for x in r.loads:  # each table's loads row: read = accepted + rejected, as quarantined
        n_q = sum(1 for y in q if y["target_table"] == x.table and y["kind"] == "rejected")
        assert x.rows_rejected == n_q
    recorded = rows(store, "SELECT rows_read, rows_accepted, rows_rejected FROM loads")
    assert all(x["rows_read"] == x["rows_accepted"] + x["rows_rejected"] for x in recorded)
    # the quarantine of a batch adds to the earlier ones (a stream, not a file replaced)
    load(store, [msg("b10", "track", event="X", userId="u1", timestamp="never")])
    assert store.scalar("SELECT count(*) FROM quarantine") == len(q) + 1


def test_a_bad_email_never_costs_the_customer(store: Store) -> None:
    r = load(
        store,
        [
            msg(
                "i1",
                "identify",
                userId="u7",
                traits={"email": "not-an-email", "birthday": "31/31/1990", "city": "Lyon"},
            )
        ],
    )
    assert (r.accepted, r.rejected) == (1, 0)
    (u,) = clear(store, rows(store, "SELECT user_id, email, birthday, city FROM users"))
    assert (u["user_id"], u["email"], u["city"]) == ("u7", None, "Lyon") and u["birthday"] is None
    issues = {
        x["field"]: x["rule"]
        for x in rows(store, "SELECT field, rule FROM quarantine WHERE kind = 'field_issue'")
    }
    assert issues == {"email": "malformed_email", "birthday": "unparseable_timestamp"}
    assert r.load_of("users") is not None and r.load_of("users").field_issues == 2  # type: ignore[union-attr]


def test_identify_merges_traits_over_the_stored_user(store: Store) -> None:
    load(store, [msg("i1", "identify", userId="u1", traits={"email": "a@b.co", "plan": "free"})])
    load(store, [msg("i2", "identify", userId="u1", traits={"phone": "123", "plan": "pro", "seats": 3}),
                 msg("i3", "identify", userId="u1", traits={"city": "Oslo"})])  # fmt: skip
    (u,) = clear(store, rows(store, "SELECT email, phone, city, traits FROM users"))
    assert (u["email"], u["phone"], u["city"]) == ("a@b.co", "123", "Oslo")
    assert json.loads(u["traits"]) == {"plan": "pro", "seats": 3}


def test_the_same_messages_twice_are_stored_once(store: Store) -> None:
    first = load(store, MIXED + [MIXED[0]])  # a duplicate inside the batch too
    assert (first.duplicates, first.accepted) == (1, 9)
    counts = {
        t: store.count(t)
        for t in ("events", "orders", "order_items", "users", "consents", "identities", "loads")
    }
    again = load(store, MIXED)
    assert (again.messages_read, again.duplicates, again.accepted, again.rejected) == (9, 9, 0, 0)
    assert again.loads == ()  # nothing to load: no loads row either
    assert {t: store.count(t) for t in counts} == counts
    assert store.count("tracked_messages") == 9
    # another tracking source may reuse a messageId: its own stream
    other = load(store, [{**MIXED[0], "_source": "ios"}])
    assert (other.accepted, other.duplicates) == (1, 0)


def test_identity_stitching_fills_earlier_and_later_events(store: Store) -> None:
    load(store, [msg("e1", "track", event="Product Viewed", anonymousId="anon-1"),
                 msg("e2", "page", anonymousId="anon-2")])  # fmt: skip
    assert rows(store, "SELECT count(*) AS n FROM events WHERE user_id IS NULL")[0]["n"] == 2
    r = load(store, [msg("i1", "identify", userId="u1", anonymousId="anon-1"),
                     msg("al", "alias", previousId="anon-2", userId="u2")])  # fmt: skip
    assert (r.identities_linked, r.events_backfilled) == (2, 2)
    got = {e["event_id"]: e["user_id"] for e in rows(store, "SELECT event_id, user_id FROM events")}
    assert got == {"e1": "u1", "e2": "u2"}
    later = load(store, [msg("e3", "track", event="Cart Viewed", anonymousId="anon-2")])
    assert later.accepted == 1
    assert rows(store, "SELECT user_id, anonymous_id FROM events WHERE event_id = 'e3'") == [
        {"user_id": "u2", "anonymous_id": "anon-2"}
    ]
    # an anonymous order of a linked id is the user's; an unlinked one has no user: rejected
    r2 = load(store, [order("o1", "o1", 5, [], user=None) | {"anonymousId": "anon-1"},
                      order("o2", "o2", 5, [], user=None) | {"anonymousId": "nobody"}])  # fmt: skip
    assert (r2.accepted, r2.rejected) == (1, 1)
    assert rows(store, "SELECT order_id, user_id FROM orders") == [
        {"order_id": "o1", "user_id": "u1"}
    ]


def test_nothing_is_stored_when_inside_raises(store: Store) -> None:
    def boom() -> None:
        raise RuntimeError("spool offset not written")

    with pytest.raises(RuntimeError, match="spool offset"):
        load_messages(store, Config(), MIXED, inside=boom, now=NOW)
    for table in ("events", "orders", "order_items", "users", "consents", "identities",
                  "tracked_messages", "loads", "quarantine"):  # fmt: skip
        assert store.count(table) == 0, table
    # the store is usable at once (the ingest lock was released): the batch loads in full
    calls: list[int] = []
    r = load(store, MIXED, inside=lambda: calls.append(store.count("events")))
    assert r.accepted == 9 and calls == [5]  # inside ran in the transaction, after the writes
    empty = load(store, [], inside=lambda: calls.append(-1))  # an empty batch: inside still runs
    assert (empty.messages_read, empty.loads, calls[-1]) == (0, (), -1)


def test_an_event_name_map_in_config_overrides_one_name(store: Store) -> None:
    config = Config.model_validate({"tracking": {"events": {"Product Viewed": "view"}}})
    assert config.tracking.events["Order Completed"] == "order"  # the other defaults stay
    load(store, [msg("v1", "track", event="Product Viewed", userId="u1"),
                 msg("v2", "track", event="Product Added", userId="u1"),
                 order("v3", "o9", 9, [])], config)  # fmt: skip
    got = {e["event_id"]: e["event"] for e in rows(store, "SELECT event_id, event FROM events")}
    assert got == {"v1": "view", "v2": "add_to_cart"}
    assert store.count("orders") == 1


def test_snake_case_channel_and_the_event_map() -> None:
    with pytest.raises(ValueError, match="no event type for 'Signed Up'"):
        Config.model_validate({"tracking": {"events": {"Signed Up": " "}}})
    assert snake_case("Product Viewed") == "product_viewed"
    assert snake_case("productViewed") == "product_viewed"
    assert snake_case("  Signed-In (web) ") == "signed_in_web"
    assert channel({"library": {"name": "analytics-ios"}}) == "app"
    assert channel({"os": {"name": "Android"}}) == "app"
    assert channel({"userAgent": "Mozilla/5.0"}) == "web"
    assert channel({"library": {"name": "analytics-python"}}) == "server"
    assert channel(None) == "server" and channel(None, "web") == "web"


@pytest.mark.parametrize("outer", [False, True], ids=["own-transaction", "in-callers-transaction"])
def test_a_failed_batch_leaves_the_ingest_lock_free(pg_url: str, outer: bool) -> None:
    """PostgreSQL: the ingest lock is released after a failed batch, also when the batch
    ran inside the caller's transaction (a session lock's unlock would fail there)."""
    s = open_store(pg_url)
    s.ensure_schema()
    other = open_store(pg_url)
    other.lock_timeout = 0.5
    try:
        bad = [msg("x1", "track", event="Product Viewed", userId="u1")]

        def boom() -> None:
            s.execute("SELECT * FROM no_such_table")  # a failed statement aborts the transaction

        with pytest.raises(Exception, match="no_such_table"):
            if outer:
                with s.transaction():
                    load_messages(s, Config(), bad, inside=boom, now=NOW)
            else:
                load_messages(s, Config(), bad, inside=boom, now=NOW)
        with other.ingest_lock():  # another session gets the lock at once
            pass
        assert s.count("events") == 0
        r = load(s, bad)  # and the failed session loads again
        assert r.accepted == 1
    finally:
        other.close()
        s.close()


def test_a_batch_in_the_callers_transaction_rolls_back_with_it(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        r = load(store, MIXED)
        assert r.accepted == 9 and store.count("events") == 5  # visible inside
        raise RuntimeError("the caller's own write failed")
    assert store.count("events") == store.count("tracked_messages") == store.count("loads") == 0


def test_numbers_as_ids_anonymous_identify_and_unmapped_names(store: Store) -> None:
    batch = [
        msg("n1", "track", event="order", userId=42, properties={"total": 5}) | {"messageId": 1001},
        msg("n2", "identify", anonymousId="a5", traits={"email": "x@y.zz"}),  # no userId: no user
        msg(
            "n3",
            "track",
            event="Order Completed",
            userId="u9",
            properties={"revenue": "12.5", "products": "nope"},
        ),
    ]
    r = load(store, batch)
    assert (r.accepted, r.rejected) == (2, 1)
    assert rows(store, "SELECT event_id, user_id, event FROM events") == [
        {"event_id": "1001", "user_id": "42", "event": "order"}  # only a mapped name makes an order
    ]
    assert rows(store, "SELECT order_id, user_id, amount FROM orders") == [
        {"order_id": "n3", "user_id": "u9", "amount": 12.5}  # no order_id: the messageId
    ]
    assert store.count("order_items") == 0 and store.count("identities") == 0
    (q,) = rows(store, "SELECT target_table, rule FROM quarantine")
    assert q == {"target_table": "users", "rule": "missing_required"}
    assert sorted(store.query("SELECT message_id FROM tracked_messages")["message_id"]) == [
        "1001",
        "n2",
        "n3",
    ]
