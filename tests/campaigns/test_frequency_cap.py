"""The frequency cap holds at send time: campaigns planned before any of them is sent never
give a person more messages than the cap (issue 15, point 8), counted at the SMTP sink."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import segmint
from segmint.campaigns import (
    SmtpSink,
    delivery_log,
    load_audience,
    plan_campaign,
    send_campaign,
)
from segmint.store import Store, open_store

from .conftest import TINY_PLAYBOOK, build_tiny_store, demo_playbook, open_demo, tiny_config

CAMPAIGN = "winback_at_risk"


def _two_campaigns(demo: Path, port: int) -> tuple[Store, object]:
    pb = demo_playbook(demo, smtp_port=port)
    pb["frequency_cap"] = {"max_messages": 1, "window_days": 7}
    pb["campaigns"]["winback_again"] = dict(pb["campaigns"][CAMPAIGN])
    return open_demo(demo, pb)


def test_cap_holds_for_campaigns_planned_before_either_is_sent(
    demo: Path, smtp_sink: SmtpSink
) -> None:
    store, config = _two_campaigns(demo, smtp_sink.port)
    a = plan_campaign(store, config, CAMPAIGN)
    b = plan_campaign(store, config, "winback_again")
    both = set(load_audience(store, a.run_id, "treatment")["user_id"]) & set(
        load_audience(store, b.run_id, "treatment")["user_id"]
    )
    assert len(both) > 50  # the same people: at plan time nobody was capped yet
    first = send_campaign(store, config, CAMPAIGN, plan=a)
    second = send_campaign(store, config, "winback_again", plan=b)
    # every person has exactly one message at the sink
    assert smtp_sink.by_recipient and set(smtp_sink.by_recipient.values()) == {1}
    assert smtp_sink.n_received == first.sent + second.sent
    assert first.capped == 0 and second.capped == len(both)
    assert second.sent == b.n_treatment - len(both) and second.complete
    print(
        f"cap at send time: A sent {first.sent}, B sent {second.sent}, B capped {second.capped}; per-address counts {sorted(set(smtp_sink.by_recipient.values()))} over {len(smtp_sink.by_recipient)} addresses"
    )
    log = delivery_log(store, "winback_again").query("status == 'skipped'")
    assert len(log) == len(both)
    assert set(log["error"]) == {
        "frequency cap reached at send time: 1 messages in the last 7 days"
    }


def test_cli_reports_the_capped_messages(demo: Path, smtp_sink: SmtpSink) -> None:
    import json

    from typer.testing import CliRunner

    from segmint.cli import app

    store, config = _two_campaigns(demo, smtp_sink.port)
    plan_campaign(store, config, CAMPAIGN)
    plan_campaign(store, config, "winback_again")
    store.close()
    runner = CliRunner()
    first = runner.invoke(app, ["campaign", "send", CAMPAIGN, "-p", str(demo), "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["capped"] == 0
    second = runner.invoke(app, ["campaign", "send", "winback_again", "-p", str(demo)])
    assert second.exit_code == 0, second.output
    with segmint.open_project(demo) as s:
        n = int(s.store.scalar("SELECT count(*) FROM deliveries WHERE status = 'skipped'"))
    assert n > 50
    assert re.search(rf"frequency cap reached at send time\s*│\s*{n:,}", second.stdout)
    assert set(smtp_sink.by_recipient.values()) == {1}


def test_a_later_plan_sends_a_capped_message_once_the_window_allows(tiny: Store) -> None:
    from .test_send import _Flaky

    pb = dict(TINY_PLAYBOOK, frequency_cap={"max_messages": 1, "window_days": 7})
    pb["campaigns"] = dict(pb["campaigns"], gold_again=pb["campaigns"]["gold_once"])
    config = tiny_config(pb)
    channel = _Flaky(n_fail=0)
    a = plan_campaign(tiny, config, "gold_once")
    b = plan_campaign(tiny, config, "gold_again")
    send_campaign(tiny, config, "gold_once", plan=a, channels={"email": channel})
    capped = send_campaign(tiny, config, "gold_again", plan=b, channels={"email": channel})
    assert capped.capped == b.n_treatment and capped.sent == 0
    # a week later the messages of gold_once leave the window: a new plan of gold_again
    # includes the users again and its send delivers the messages skipped before
    tiny.execute(
        "UPDATE deliveries SET sent_at = sent_at - INTERVAL 8 DAY WHERE campaign = 'gold_once'"
    )
    later = send_campaign(tiny, config, "gold_again", resume=False, channels={"email": channel})
    assert later.sent == b.n_treatment and later.capped == 0
    assert len(channel.sent) == len(set(channel.sent)) == 2 * b.n_treatment


@pytest.mark.postgres
def test_cap_holds_at_send_time_on_postgresql(pg_url: str, smtp_sink: SmtpSink) -> None:
    pb = dict(TINY_PLAYBOOK, frequency_cap={"max_messages": 1, "window_days": 7})
    pb["channels"] = {"email": dict(pb["channels"]["email"], port=smtp_sink.port)}
    pb["campaigns"] = dict(pb["campaigns"], gold_again=pb["campaigns"]["gold_once"])
    store = build_tiny_store(pg_url)
    try:
        config = tiny_config(pb)
        a = plan_campaign(store, config, "gold_once")
        b = plan_campaign(store, config, "gold_again")
        assert a.n_treatment == b.n_treatment == 4
        first = send_campaign(store, config, "gold_once", plan=a)
        second = send_campaign(store, config, "gold_again", plan=b)
        assert (first.sent, second.sent, second.capped) == (4, 0, 4)
        assert smtp_sink.by_recipient == {
            "ann@example.com": 1,
            "bob@example.com": 1,
            "gus@example.com": 1,
            "jon@example.com": 1,
        }
    finally:
        store.close()


@pytest.mark.postgres
def test_a_send_waits_for_another_sends_claim_on_postgresql(
    pg_url: str, smtp_sink: SmtpSink
) -> None:
    """While this send is between two groups, another sender takes the lock and claims
    (without committing yet) a message to bob: this send's next claim waits for that
    commit, then sees bob's claim and caps him."""
    from segmint.campaigns._delivery import SEND_LOCK

    pb = dict(TINY_PLAYBOOK, frequency_cap={"max_messages": 1, "window_days": 7})
    pb["channels"] = {"email": dict(pb["channels"]["email"], port=smtp_sink.port)}
    store = build_tiny_store(pg_url)
    other = open_store(pg_url)
    holding = threading.Event()

    def other_sender() -> None:
        with other.lock(SEND_LOCK):
            other.execute(
                "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, "
                "channel, status, attempts, ambiguous, created_at, claimed_at) VALUES "
                "('rival|u02|main', 'rival', 'c-9', 'u02', 'main', 'email', 'sending', 1, "
                "FALSE, ?, ?)",
                [datetime.now(UTC), datetime.now(UTC)],
            )
            holding.set()
            time.sleep(1.0)

    rival = threading.Thread(target=other_sender)

    def after_claim(pm) -> None:
        if pm.message.user_id == "u01":  # the first group is claimed: the rival comes in
            rival.start()
            assert holding.wait(10)

    try:
        config = tiny_config(pb)
        plan_campaign(store, config, "gold_once")
        report = send_campaign(store, config, "gold_once", group_size=1, _after_claim=after_claim)
        rival.join()
        assert report.capped == 1 and report.sent == 3
        assert "bob@example.com" not in smtp_sink.by_recipient
        assert set(smtp_sink.by_recipient.values()) == {1}
    finally:
        other.close()
        store.close()


@pytest.mark.postgres
def test_store_lock_serialises_holders_of_the_same_name(pg_url: str) -> None:
    first, second = open_store(pg_url), open_store(pg_url)
    order: list[str] = []
    inside = threading.Event()

    def hold() -> None:
        with first.lock("x"):
            inside.set()
            time.sleep(0.5)
            order.append("first out")

    try:
        t = threading.Thread(target=hold)
        t.start()
        assert inside.wait(10)
        with second.lock("another name"):  # another name does not wait
            order.append("other name")
        with second.lock("x"):
            order.append("second in")
        t.join()
        assert order == ["other name", "first out", "second in"]
    finally:
        first.close()
        second.close()


def test_store_lock_on_duckdb_is_a_transaction(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"))
    try:
        store.execute("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError), store.lock("x"):
            store.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("rolled back")
        assert store.scalar("SELECT count(*) FROM t") == 0
    finally:
        store.close()
