"""Sending for real: aiosmtpd and an HTTP server on loopback, the delivery log, unsubscribe,
frequency caps across campaigns, failures and retries."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
from tests.privacy.sealing import opened_emails

from segmint.campaigns import (
    Channel,
    ChannelUnavailable,
    DeliveryResult,
    EmailChannel,
    EmailChannelSpec,
    InvalidTokenError,
    Message,
    SmtpSink,
    WebhookChannel,
    WebhookChannelSpec,
    WebhookSink,
    delivery_log,
    key_ring,
    load_audience,
    plan_campaign,
    preview,
    send_campaign,
    unsubscribe,
)
from segmint.campaigns._delivery import _RateLimiter
from segmint.config import Config
from segmint.errors import DeliveryError
from segmint.store import Store, open_vault

from .conftest import TINY_PLAYBOOK, build_tiny_store, demo_playbook, open_demo, tiny_config

CAMPAIGN = "winback_at_risk"


def _emails(store: Store, config: Config, run_id: str, arm: str) -> set[str]:
    frame = store.query(
        "SELECT u.email AS email FROM campaign_audiences a JOIN users u "
        f"ON u.user_id = a.user_id WHERE a.run_id = '{run_id}' AND a.arm = '{arm}'"
    )
    return set(opened_emails(frame, open_vault(store, config))["email"])


def test_every_treated_user_gets_one_message_and_control_none(
    demo: Path, smtp_sink: SmtpSink
) -> None:
    store, config = open_demo(demo, demo_playbook(demo, smtp_port=smtp_sink.port))
    plan = plan_campaign(store, config, CAMPAIGN)
    assert plan.n_treatment > 50 and plan.n_control > 0
    report = send_campaign(store, config, CAMPAIGN)
    assert report.sent == plan.n_treatment and report.complete
    treated, control = (
        _emails(store, config, plan.run_id, "treatment"),
        _emails(store, config, plan.run_id, "control"),
    )
    assert set(smtp_sink.by_recipient) == treated
    assert all(n == 1 for n in smtp_sink.by_recipient.values())
    assert not control & set(smtp_sink.by_recipient)
    log = delivery_log(store, CAMPAIGN)
    assert (log["status"] == "sent").all() and len(log) == plan.n_treatment
    # a second send (resume or not) sends nothing again
    again = send_campaign(store, config, CAMPAIGN, resume=False)
    assert again.sent == 0 and again.already_sent == plan.n_treatment
    assert smtp_sink.n_received == plan.n_treatment


def test_messages_carry_headers_and_a_working_unsubscribe(demo: Path, smtp_sink: SmtpSink) -> None:
    store, config = open_demo(demo, demo_playbook(demo, smtp_port=smtp_sink.port))
    plan = plan_campaign(store, config, CAMPAIGN)
    send_campaign(store, config, CAMPAIGN)
    msg = smtp_sink.messages[0]
    assert msg["Message-ID"].endswith("@shop.example>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(msg["List-Unsubscribe"]).replace("\n", "").replace(" ", "").strip("<>")
    assert link.startswith("http://localhost:8000/u/")  # serve.public_url's page
    token = urlparse(link).path.rsplit("/", 1)[1]
    assert token in msg.get_payload(decode=True).decode()
    to = email.utils.parseaddr(msg["To"])[1]
    user = store.scalar(
        "SELECT user_id FROM users WHERE email_index = ?",
        [open_vault(store, config).index(to, "email")],
    )

    keys = key_ring(demo, store)
    result = unsubscribe(store, token, keys=keys)
    assert result.user_id == user and not result.already_unsubscribed
    row = store.query(
        f"SELECT granted, source FROM consents WHERE user_id = '{user}' ORDER BY ts DESC LIMIT 1"
    )
    assert not row["granted"].iloc[0] and row["source"].iloc[0] == "unsubscribe"
    assert unsubscribe(store, token, keys=keys).already_unsubscribed
    # the user drops out of every later audience at once, whatever the campaign
    for name in (CAMPAIGN, "newly_at_risk"):
        later = plan_campaign(store, config, name)
        assert user not in set(load_audience(store, later.run_id)["user_id"])
    replan = plan_campaign(store, config, CAMPAIGN)
    f = replan.funnel.set_index("step")["excluded"]
    assert f["unsubscribed"] == 1
    assert plan.n_eligible - replan.n_eligible == 1


def test_forged_unsubscribe_token_is_refused(demo: Path) -> None:
    from segmint.campaigns import KeyRing, make_token

    store, _ = open_demo(demo)
    keys = key_ring(demo, store)
    forger = KeyRing({keys.active: b"not the key"}, active=keys.active)
    with pytest.raises(InvalidTokenError, match="signature does not match"):
        unsubscribe(store, make_token(forger, "C000001"), keys=keys)
    with pytest.raises(InvalidTokenError, match="malformed"):
        unsubscribe(store, "garbage", keys=keys)


def test_opt_out_between_plan_and_send_is_skipped(demo: Path, smtp_sink: SmtpSink) -> None:
    store, config = open_demo(demo, demo_playbook(demo, smtp_port=smtp_sink.port))
    plan = plan_campaign(store, config, CAMPAIGN)
    victim = load_audience(store, plan.run_id, "treatment")["user_id"].iloc[0]
    store.execute(
        "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES "
        f"('{victim}', 'email', 'marketing', current_timestamp, FALSE, 'preference centre')"
    )
    report = send_campaign(store, config, CAMPAIGN)
    assert report.skipped == 1 and report.sent == plan.n_treatment - 1
    email_of = opened_emails(
        store.query(f"SELECT email FROM users WHERE user_id = '{victim}'"),
        open_vault(store, config),
    )["email"].iat[0]
    assert email_of not in smtp_sink.by_recipient


def test_frequency_cap_counts_across_campaigns(demo: Path, smtp_sink: SmtpSink) -> None:
    pb = demo_playbook(demo, smtp_port=smtp_sink.port)
    pb["frequency_cap"] = {"max_messages": 1, "window_days": 7}
    pb["campaigns"]["winback_again"] = dict(pb["campaigns"][CAMPAIGN])
    store, config = open_demo(demo, pb)
    first = plan_campaign(store, config, CAMPAIGN)
    before = plan_campaign(store, config, "winback_again")
    assert before.funnel.set_index("step")["excluded"]["frequency cap reached"] == 0
    send_campaign(store, config, CAMPAIGN, plan=first)
    after = plan_campaign(store, config, "winback_again")
    capped = after.funnel.set_index("step")["excluded"]["frequency cap reached"]
    assert capped == first.n_treatment
    got = set(load_audience(store, after.run_id)["user_id"])
    assert not got & set(load_audience(store, first.run_id, "treatment")["user_id"])
    # a plan of the campaign that sent does not count its own messages against the cap
    own = plan_campaign(store, config, CAMPAIGN)
    assert own.funnel.set_index("step")["excluded"]["frequency cap reached"] == 0


def test_unreachable_smtp_is_a_clear_error_before_anything_is_sent(demo: Path) -> None:
    with SmtpSink() as probe:  # a port that was free a moment ago and is closed now
        port = probe.port
    store, config = open_demo(demo, demo_playbook(demo, smtp_port=port))
    plan = plan_campaign(store, config, CAMPAIGN)
    with pytest.raises(
        DeliveryError,
        match=rf"nothing was sent and the plan is unchanged.*cannot connect to SMTP server "
        rf"127.0.0.1:{port}",
    ) as info:
        send_campaign(store, config, CAMPAIGN)
    assert info.value.report is not None and info.value.report.sent == 0
    assert delivery_log(store, CAMPAIGN).empty  # checked before the first claim
    assert store.scalar(f"SELECT status FROM campaign_runs WHERE run_id = '{plan.run_id}'") == (
        "planned"
    )
    with SmtpSink(port=port) as sink:
        report = send_campaign(store, config, CAMPAIGN)
    assert report.sent == plan.n_treatment and report.complete
    assert sorted(sink.by_recipient.values()) == [1] * plan.n_treatment


def test_smtp_server_gone_mid_run_is_a_clear_error_and_nothing_is_lost(demo: Path) -> None:
    sink = SmtpSink().start()
    port = sink.port
    store, config = open_demo(demo, demo_playbook(demo, smtp_port=port))
    plan = plan_campaign(store, config, CAMPAIGN)

    def stop_after_five(pm, result) -> None:
        if sink.n_received == 5:
            sink.stop()

    with pytest.raises(DeliveryError, match=rf"SMTP server 127.0.0.1:{port}") as info:
        send_campaign(store, config, CAMPAIGN, _after_send=stop_after_five)
    assert info.value.report is not None and info.value.report.sent == 5
    counts = delivery_log(store, CAMPAIGN)["status"].value_counts().to_dict()
    assert counts == {"sent": 5, "pending": plan.n_treatment - 6, "failed": 1}
    failed = delivery_log(store, CAMPAIGN).query("status == 'failed'")
    assert failed["attempts"].iloc[0] == 1
    with SmtpSink(port=port) as again:
        report = send_campaign(store, config, CAMPAIGN)
    assert report.sent == plan.n_treatment - 5 and report.complete
    assert sorted(again.by_recipient.values()) == [1] * (plan.n_treatment - 5)


def test_invalid_address_is_rejected_not_sent(smtp_sink: SmtpSink) -> None:
    ch = EmailChannel(
        EmailChannelSpec.model_validate(
            {"type": "email", "host": "127.0.0.1", "port": smtp_sink.port, "from": "s@shop.example"}
        )
    )
    with ch:
        bad = ch.send(_message(to="not an address@example.com"))
        none = ch.send(_message(to=None))
        good = ch.send(_message(to="ok@example.com"))
    assert bad.status == none.status == "rejected" and "invalid e-mail" in str(bad.error)
    assert good.status == "sent" and smtp_sink.n_received == 1


def _message(to: str | None = "a@example.com", key: str = "c|u1|main") -> Message:
    return Message(
        key,
        "c",
        "u1",
        to,
        "Subject",
        "Body",
        None,
        "<x@y>",
        "http://u/?token=t",
        {"segment": "s", "offer": {"type": "none"}, "recommendations": []},
    )


class _Flaky(Channel):
    """In-memory channel: fails the first ``n_fail`` calls, then sends."""

    def __init__(self, n_fail: int) -> None:
        self.n_fail = n_fail
        self.sent: list[str] = []

    def send(self, message: Message) -> DeliveryResult:
        if self.n_fail > 0:
            self.n_fail -= 1
            return DeliveryResult("failed", "421 try again later")
        self.sent.append(message.idempotency_key)
        return DeliveryResult("sent")


def test_failures_are_retried_up_to_the_limit(tmp_path: Path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config(dict(TINY_PLAYBOOK, max_attempts=2))
    channel = _Flaky(n_fail=10**6)
    first = send_campaign(store, config, "gold_once", channels={"email": channel})
    assert first.failed == 4 and not first.complete
    second = send_campaign(store, config, "gold_once", channels={"email": channel})
    assert second.failed == 4
    third = send_campaign(store, config, "gold_once", channels={"email": channel})
    assert third.failed == 0 and third.sent == 0  # given up: attempts == max_attempts
    log = delivery_log(store, "gold_once")
    assert set(log["attempts"]) == {2} and set(log["error"]) == {"421 try again later"}
    store.close()


def test_a_failure_is_retried_by_the_next_run(tmp_path: Path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config()
    channel = _Flaky(n_fail=1)
    first = send_campaign(store, config, "gold_once", channels={"email": channel})
    assert (first.sent, first.failed) == (3, 1)
    second = send_campaign(store, config, "gold_once", channels={"email": channel})
    assert (second.sent, second.failed, second.complete) == (1, 0, True)
    assert len(channel.sent) == len(set(channel.sent)) == 4
    store.close()


@pytest.mark.parametrize("group_size", [1, 3])
def test_crash_between_send_and_mark_resends_with_the_same_message_id(
    tmp_path: Path, group_size: int
) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config()
    channel = _Flaky(n_fail=0)
    seen: list[str] = []

    def crash(pm, result) -> None:
        seen.append(pm.message.message_id)
        if len(seen) == 2:
            raise KeyboardInterrupt("simulated crash after the channel accepted")

    with pytest.raises(KeyboardInterrupt):
        send_campaign(
            store,
            config,
            "gold_once",
            channels={"email": channel},
            group_size=group_size,
            _after_send=crash,
        )
    log = delivery_log(store, "gold_once").set_index("idempotency_key")
    assert sorted(log["status"]) == ["pending", "pending", "sending", "sent"]
    resumed = send_campaign(
        store, config, "gold_once", channels={"email": channel}, group_size=group_size
    )
    assert resumed.resent_ambiguous == 1 and resumed.sent == 3 and resumed.complete
    log = delivery_log(store, "gold_once").set_index("idempotency_key")
    ambiguous = log[log["ambiguous"]]
    assert len(ambiguous) == 1 and ambiguous["message_id"].iloc[0] == seen[1]
    assert sorted(channel.sent).count(ambiguous.index[0]) == 2  # the one duplicate, same id
    store.close()


class _HandOver(Channel):
    """In-memory channel with hand-over, like e-mail: ``on_handover`` just before the last
    piece. ``die`` = (n, where) raises KeyboardInterrupt (a kill) at the n-th message,
    ``before`` or ``after`` the hand-over; ``after`` means the receiver has it."""

    supports_handover = True

    def __init__(self, die: tuple[int, str] | None = None) -> None:
        self.die = die
        self.calls = 0
        self.received: list[str] = []

    def send(self, message: Message) -> DeliveryResult:
        self.calls += 1
        dying = self.die is not None and self.calls == self.die[0]
        if dying and self.die[1] == "before":
            raise KeyboardInterrupt("killed before the hand-over")
        if self.on_handover is not None:
            self.on_handover(message)
        self.received.append(message.idempotency_key)
        if dying and self.die[1] == "after":
            raise KeyboardInterrupt("killed after the hand-over, before the answer")
        return DeliveryResult("sent")


def _crash_then_resume(tmp_path: Path, die: tuple[int, str], **kw):
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config(root=tmp_path)
    channel = _HandOver(die)
    with pytest.raises(KeyboardInterrupt):
        send_campaign(store, config, "gold_once", channels={"email": channel}, **kw)
    assert (tmp_path / ".segmint" / "journal" / "gold_once.jsonl").exists()
    channel.die = None
    resumed = send_campaign(store, config, "gold_once", channels={"email": channel}, **kw)
    log = delivery_log(store, "gold_once").set_index("idempotency_key")
    store.close()
    assert not (tmp_path / ".segmint" / "journal" / "gold_once.jsonl").exists()
    return channel, resumed, log


@pytest.mark.parametrize("group_size", [1, 3])
def test_killed_after_the_answer_the_journal_records_it_and_nothing_is_resent(
    tmp_path: Path, group_size: int
) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config(root=tmp_path)
    channel = _HandOver()

    def crash(pm, result) -> None:  # after the channel's answer, before the log has it
        if len(channel.received) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send_campaign(
            store,
            config,
            "gold_once",
            channels={"email": channel},
            _after_send=crash,
            group_size=group_size,
        )
    assert "sending" in set(delivery_log(store, "gold_once")["status"])
    resumed = send_campaign(
        store, config, "gold_once", channels={"email": channel}, group_size=group_size
    )
    log = delivery_log(store, "gold_once")
    store.close()
    assert (resumed.recovered, resumed.unconfirmed, resumed.resent_ambiguous) == (1, 0, 0)
    assert resumed.sent == 2 and resumed.complete
    assert sorted(channel.received) == sorted(set(channel.received)) and len(channel.received) == 4
    assert (log["status"] == "sent").all() and not log["ambiguous"].any()


@pytest.mark.parametrize("group_size", [1, 3])
def test_killed_after_the_hand_over_the_message_is_not_sent_again(
    tmp_path: Path, group_size: int
) -> None:
    channel, resumed, log = _crash_then_resume(tmp_path, (2, "after"), group_size=group_size)
    assert (resumed.recovered, resumed.unconfirmed, resumed.resent_ambiguous) == (0, 1, 0)
    assert resumed.sent == 2 and resumed.complete
    assert len(channel.received) == len(set(channel.received)) == 4  # no duplicate
    unconfirmed = log[log["ambiguous"]]
    assert len(unconfirmed) == 1 and unconfirmed.index[0] == channel.received[1]
    assert unconfirmed["status"].iloc[0] == "sent"
    assert unconfirmed["error"].iloc[0].startswith("unconfirmed")
    assert (log["status"] == "sent").all()


@pytest.mark.parametrize("group_size", [1, 3])
def test_killed_before_the_hand_over_the_message_is_sent_again_safely(
    tmp_path: Path, group_size: int
) -> None:
    channel, resumed, log = _crash_then_resume(tmp_path, (2, "before"), group_size=group_size)
    assert (resumed.recovered, resumed.unconfirmed, resumed.resent_ambiguous) == (0, 0, 0)
    assert resumed.sent == 3 and resumed.complete
    assert len(channel.received) == len(set(channel.received)) == 4
    assert (log["status"] == "sent").all() and not log["ambiguous"].any()


def test_a_second_sender_of_the_same_campaign_is_refused(tmp_path: Path) -> None:
    from segmint.campaigns._journal import DeliveryJournal, journal_path

    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    config = tiny_config(root=tmp_path)
    other = DeliveryJournal(journal_path(tmp_path, "gold_once"))  # another run holds it
    try:
        with pytest.raises(DeliveryError, match="being sent by another process"):
            send_campaign(store, config, "gold_once", channels={"email": _HandOver()})
        assert set(delivery_log(store, "gold_once")["status"]) <= {"pending"}
    finally:
        other.close()
    report = send_campaign(store, config, "gold_once", channels={"email": _HandOver()})
    assert report.sent == 4 and report.complete
    store.close()


def _email_channel(port: int) -> EmailChannel:
    return EmailChannel(
        EmailChannelSpec.model_validate(
            {"type": "email", "host": "127.0.0.1", "port": port, "from": "s@shop.example"}
        )
    )


def test_smtp_answer_lost_after_the_end_of_data_is_sent_unconfirmed_not_resent() -> None:
    with SmtpSink(drop_after=2) as sink, _email_channel(sink.port) as ch:
        results = [ch.send(_message(to=f"u{i}@example.com", key=f"c|u{i}|main")) for i in range(4)]
    assert [r.status for r in results] == ["sent"] * 4
    assert [r.ambiguous for r in results] == [False, True, False, False]
    assert str(results[1].error).startswith("unconfirmed")
    assert sink.n_received == 4 and set(sink.by_recipient.values()) == {1}


def test_smtp_connection_lost_before_the_data_is_resent_once_safely() -> None:
    with SmtpSink(drop_at_rcpt=2) as sink, _email_channel(sink.port) as ch:
        results = [ch.send(_message(to=f"u{i}@example.com", key=f"c|u{i}|main")) for i in range(3)]
    assert [(r.status, r.ambiguous) for r in results] == [("sent", False)] * 3
    assert sink.n_received == 3 and set(sink.by_recipient.values()) == {1}


def test_smtp_hand_over_comes_after_the_body_and_before_the_end() -> None:
    """The hook runs when the server has the whole body but not the end-of-data line."""
    seen: list[int] = []
    with SmtpSink() as sink, _email_channel(sink.port) as ch:
        ch.on_handover = lambda m: seen.append(sink.n_received)
        ch.send(_message(to="a@example.com"))
        ch.send(_message(to="b@example.com", key="c|u2|main"))
    assert seen == [0, 1] and sink.n_received == 2
    body = sink.messages[0].get_payload(decode=True).decode()
    assert body == "Body"


def test_webhook_killed_before_the_last_byte_is_never_handled(
    webhook_sink: WebhookSink, monkeypatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    ch = WebhookChannel(
        WebhookChannelSpec.model_validate(
            {"type": "webhook", "url": webhook_sink.url, "secret_env": "HOOK_SECRET"}
        )
    )

    def killed(message: Message) -> None:
        raise KeyboardInterrupt("killed at the hand-over")

    with ch:
        ch.on_handover = killed
        with pytest.raises(KeyboardInterrupt):
            ch.send(_message())
        ch.on_handover = None
        assert ch.send(_message(key="c|u2|main")).status == "sent"
    end = time.monotonic() + 5
    while not webhook_sink.incomplete and time.monotonic() < end:
        time.sleep(0.01)
    assert webhook_sink.incomplete == 1
    assert [json.loads(r["body"])["idempotency_key"] for r in webhook_sink.requests] == [
        "c|u2|main"
    ]


def test_smtp_socket_sends_the_end_of_data_line_at_once(smtp_sink: SmtpSink) -> None:
    """The body and the end-of-data line are two writes before a read: without
    TCP_NODELAY, Nagle's algorithm and the server's delayed ACK stall every message ~40 ms
    (bench/campaign.py measured 20 messages/s instead of hundreds)."""
    import socket

    with _email_channel(smtp_sink.port) as ch:
        assert ch._smtp is not None
        assert ch._smtp.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        ch.send(_message())
    assert smtp_sink.n_received == 1


def test_dot_stuffing_keeps_lines_that_start_with_a_dot() -> None:
    from segmint.campaigns._channels import _dot_stuffed

    assert _dot_stuffed(b"a\r\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n"


@pytest.mark.postgres
def test_delivery_log_on_postgresql(pg_url: str) -> None:
    store = build_tiny_store(pg_url)
    try:
        config = tiny_config(dict(TINY_PLAYBOOK, holdout=0.3))
        channel = _Flaky(n_fail=1)
        plan = plan_campaign(store, config, "gold_once")
        first = send_campaign(store, config, "gold_once", channels={"email": channel})
        second = send_campaign(store, config, "gold_once", channels={"email": channel})
        assert first.sent + second.sent == plan.n_treatment and second.complete
        assert sorted(channel.sent) == sorted(
            load_audience(store, plan.run_id, "treatment")["idempotency_key"]
        )
    finally:
        store.close()


# -- webhooks --------------------------------------------------------------------------


def _webhook(url: str, **kw) -> WebhookChannel:
    spec = WebhookChannelSpec.model_validate(
        {"type": "webhook", "url": url, "secret_env": "SEGMINT_TEST_HOOK", "backoff": 0.01, **kw}
    )
    return WebhookChannel(spec, "push")


def test_webhook_posts_signed_json(webhook_sink: WebhookSink, monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_HOOK", "s3cret")
    with _webhook(webhook_sink.url) as ch:
        result = ch.send(_message())
    assert result.status == "sent"
    (req,) = webhook_sink.requests
    body = req["body"]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert req["headers"]["X-Segmint-Signature"] == expected
    assert req["headers"]["Idempotency-Key"] == "c|u1|main"
    assert json.loads(body)["user_id"] == "u1"


def test_webhook_500_is_retried_then_recorded(monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_HOOK", "k")
    with WebhookSink(status=500) as sink, _webhook(sink.url, max_retries=2) as ch:
        result = ch.send(_message())
    assert result.status == "failed" and "HTTP 500" in str(result.error)
    assert len(sink.requests) == 3


def test_webhook_timeout_is_retried_then_recorded(monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_HOOK", "k")
    with WebhookSink(delay=0.5) as sink, _webhook(sink.url, max_retries=1, timeout=0.1) as ch:
        result = ch.send(_message())
    assert result.status == "failed" and "timed out" in str(result.error)
    assert len(sink.requests) == 2


def test_webhook_4xx_is_rejected_without_retry(monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_HOOK", "k")
    with WebhookSink(status=422) as sink, _webhook(sink.url, max_retries=3) as ch:
        result = ch.send(_message())
    assert result.status == "rejected" and len(sink.requests) == 1


def test_webhook_unreachable_stops_the_channel(monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_HOOK", "k")
    with SmtpSink() as probe:
        port = probe.port
    with (
        pytest.raises(ChannelUnavailable, match="unreachable after 2 tries"),
        _webhook(f"http://127.0.0.1:{port}/hook", max_retries=1) as ch,
    ):
        ch.send(_message())


def test_webhook_secret_must_be_set(monkeypatch) -> None:
    from segmint.errors import ConfigError

    monkeypatch.delenv("SEGMINT_TEST_HOOK", raising=False)
    with pytest.raises(ConfigError, match="SEGMINT_TEST_HOOK is not set"):
        _webhook("http://127.0.0.1:9/x").open()


def test_push_campaign_through_the_webhook(demo: Path, webhook_sink: WebhookSink) -> None:
    pb = demo_playbook(demo, webhook_url=webhook_sink.url)
    pb["campaigns"]["push_only"] = dict(pb["campaigns"][CAMPAIGN], channels=["push"])
    store, config = open_demo(demo, pb)
    plan = plan_campaign(store, config, "push_only")
    assert set(plan.by_segment["channel"]) == {"push"}
    report = send_campaign(store, config, "push_only")
    assert report.sent == plan.n_treatment == len(webhook_sink.requests)
    users = {json.loads(r["body"])["user_id"] for r in webhook_sink.requests}
    assert users == set(load_audience(store, plan.run_id, "treatment")["user_id"])


# -- file export, rate limit, preview ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_file_channel_exports_one_row_per_message(demo: Path, fmt: str) -> None:
    pb = demo_playbook(demo)
    pb["channels"]["export"]["format"] = fmt
    pb["campaigns"]["export_only"] = dict(pb["campaigns"][CAMPAIGN], channels=["export"])
    store, config = open_demo(demo, pb)
    report = send_campaign(store, config, "export_only")
    out = demo / "campaigns" / f"export_only-{report.run_id}.{fmt}"
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_excel(out)
    assert len(frame) == report.sent == report.n_treatment
    assert frame["idempotency_key"].is_unique
    assert frame["subject"].str.len().min() > 0


def test_file_channel_resumed_does_not_write_a_message_twice(tmp_path: Path) -> None:
    from segmint.campaigns import FileChannel, FileChannelSpec

    spec = FileChannelSpec.model_validate({"type": "file", "format": "csv"})
    with FileChannel(spec, tmp_path / "out") as ch:  # the run that gets killed
        ch.send(_message(key="c|u1|main"))
        ch.send(_message(key="c|u2|main"))
    with FileChannel(spec, tmp_path / "out") as ch:  # the resumed run resends u2
        assert ch.send(_message(key="c|u2|main")).status == "sent"
        ch.send(_message(key="c|u3|main"))
    keys = pd.read_csv(tmp_path / "out.csv")["idempotency_key"].tolist()
    assert keys == ["c|u1|main", "c|u2|main", "c|u3|main"]
    # one byte order mark, at the start (Excel reads the file as UTF-8), none mid-file
    data = (tmp_path / "out.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1


def test_file_channel_writes_formulas_as_text_in_csv_and_xlsx(tmp_path: Path) -> None:
    # issue 15: OWASP CSV injection: a cell starting with = + - @ tab CR must not run
    import csv

    import openpyxl

    from segmint.campaigns import FileChannel, FileChannelSpec

    link = '=HYPERLINK("http://x","y")'
    hostile = Message(
        "c|-cmd|main",
        "c",
        "-cmd",
        "@SUM(A1)",
        link,
        "+1",
        None,
        "<x@y>",
        "http://u/?token=t",
        {"segment": "\t=1+1", "offer": {"type": "none"}, "recommendations": []},
    )
    spec = FileChannelSpec.model_validate({"type": "file", "format": "xlsx"})
    with FileChannel(spec, tmp_path / "out") as ch:
        ch.send(hostile)
        ch.send(_message(key="c|u1|main"))
    with FileChannel(spec, tmp_path / "out") as ch:  # a resumed run: the key is recognised
        ch.send(hostile)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8-sig") as f:
        header, row, plain = list(csv.reader(f))
    cells = dict(zip(header, row, strict=True))
    assert cells["idempotency_key"] == "c|-cmd|main"
    assert (cells["user_id"], cells["to"], cells["subject"], cells["body"]) == (
        "'-cmd",
        "'@SUM(A1)",
        "'" + link,
        "'+1",
    )
    assert cells["segment"] == "'\t=1+1"
    assert plain[header.index("subject")] == "Subject"
    wb = openpyxl.load_workbook(tmp_path / "out.xlsx")
    got = [c for r in wb.active.iter_rows() for c in r]
    assert [c.coordinate for c in got if c.data_type == "f"] == []
    values = {c.value for c in got}
    assert {"-cmd", "@SUM(A1)", link, "+1", "\t=1+1", "Subject"} <= values


def test_rate_limit_spaces_messages() -> None:
    limiter = _RateLimiter(50.0)
    t0 = time.monotonic()
    for _ in range(11):
        limiter.wait()
    assert time.monotonic() - t0 >= 0.19


def test_preview_renders_real_messages_per_segment(demo: Path) -> None:
    store, config = open_demo(demo, demo_playbook(demo))
    shown = preview(store, config, CAMPAIGN, n=2)
    assert len(shown) == 2 and {m.segment for m in shown} == {"At Risk", "Can't Lose Them"}
    for m in shown:
        assert "20% off" in m.subject.lower() and "/u/" in m.body
        assert m.to is not None and "***@" in m.to
    assert store.scalar("SELECT count(*) FROM deliveries") == 0


def test_not_before_defers_a_strategy(tmp_path: Path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    later = {"template": "hello", "timing": {"not_before": "2999-01-01"}}
    pb = dict(TINY_PLAYBOOK, strategies={"life": {"gold": later}})
    channel = _Flaky(n_fail=0)
    first = send_campaign(store, tiny_config(pb), "gold_once", channels={"email": channel})
    assert (first.sent, first.deferred, first.complete) == (0, 4, False)
    now = send_campaign(store, tiny_config(), "gold_once", channels={"email": channel})
    assert (now.sent, now.deferred, now.complete) == (4, 0, True)
    store.close()


def _email_channel(port: int, **kw) -> EmailChannel:
    spec = {"type": "email", "host": "127.0.0.1", "port": port, "from": "s@shop.example", **kw}
    return EmailChannel(EmailChannelSpec.model_validate(spec))


def test_smtp_login_with_the_password_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_SMTP_PASSWORD", "pw")
    with SmtpSink(login=("news", "pw")) as sink:
        with _email_channel(
            sink.port, username="news", password_env="SEGMINT_TEST_SMTP_PASSWORD"
        ) as ch:
            assert ch.send(_message()).status == "sent"
        assert sink.n_received == 1
        monkeypatch.setenv("SEGMINT_TEST_SMTP_PASSWORD", "wrong")
        with pytest.raises(ChannelUnavailable, match="refused the login of 'news'"):
            _email_channel(
                sink.port, username="news", password_env="SEGMINT_TEST_SMTP_PASSWORD"
            ).open()


def test_starttls_against_a_server_without_it_is_a_clear_error(smtp_sink: SmtpSink) -> None:
    with pytest.raises(ChannelUnavailable, match="cannot connect to SMTP server"):
        _email_channel(smtp_sink.port, security="starttls").open()
