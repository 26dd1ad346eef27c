"""Every channel and template a send needs is checked before its first message (issue 15,
point 9): a missing secret, an unreachable host, an unwritable folder or a template that
no longer renders stops the send with every problem listed, nothing sent, the plan as it
was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segmint.campaigns import SmtpSink, WebhookSink, delivery_log, plan_campaign, send_campaign
from segmint.errors import ConfigError, DeliveryError
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, tiny_config

HOOK_ENV = "SEGMINT_TEST_PREFLIGHT_HOOK"


def _playbook(smtp_port: int, webhook_url: str, **extra_channels: Any) -> dict[str, Any]:
    """Two channels: e-mail for users with e-mail consent, the webhook (push) for u08, who
    only consented to push."""
    return dict(
        TINY_PLAYBOOK,
        channels={
            "email": dict(TINY_PLAYBOOK["channels"]["email"], port=smtp_port),
            "push": {
                "type": "webhook",
                "url": webhook_url,
                "secret_env": HOOK_ENV,
                "max_retries": 0,
            },
            **extra_channels,
        },
        strategies={"life": {"gold": {"template": "hello", "channels": ["email", "push"]}}},
    )


def _push_consent(store: Store) -> None:
    store.execute(
        "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES "
        "('u08', 'push', 'marketing', CAST('2024-01-01 00:00:00+00' AS TIMESTAMPTZ), TRUE, "
        "'app')"
    )


def _untouched(store: Store, run_id: str) -> None:
    assert delivery_log(store, "gold_once").empty  # nothing claimed, nothing sent
    assert store.scalar(f"SELECT status FROM campaign_runs WHERE run_id = '{run_id}'") == (
        "planned"
    )


def test_missing_webhook_secret_stops_the_send_before_the_first_email(
    tiny: Store, smtp_sink: SmtpSink, webhook_sink: WebhookSink, monkeypatch
) -> None:
    monkeypatch.delenv(HOOK_ENV, raising=False)
    _push_consent(tiny)
    config = tiny_config(_playbook(smtp_sink.port, webhook_sink.url))
    plan = plan_campaign(tiny, config, "gold_once")
    assert set(plan.by_segment["channel"]) == {"email", "push"}
    with pytest.raises(
        ConfigError,
        match=rf"nothing was sent and the plan is unchanged.*channel 'push': environment "
        rf"variable {HOOK_ENV} \(the webhook signing secret\) is not set",
    ):
        send_campaign(tiny, config, "gold_once")
    assert smtp_sink.n_received == 0 and not webhook_sink.requests
    _untouched(tiny, plan.run_id)

    monkeypatch.setenv(HOOK_ENV, "s3cret")  # the fix: the same send completes
    report = send_campaign(tiny, config, "gold_once")
    assert report.complete and report.sent == plan.n_treatment == 5
    assert sorted(smtp_sink.by_recipient.values()) == [1, 1, 1, 1]
    assert len(webhook_sink.requests) == 1


def test_every_problem_is_listed_at_once(
    tiny: Store, smtp_sink: SmtpSink, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv(HOOK_ENV, raising=False)
    _push_consent(tiny)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be")
    with SmtpSink() as probe:  # a port that was free a moment ago and is closed now
        closed = probe.port
    pb = _playbook(
        closed,
        f"http://127.0.0.1:{closed}/push",
        export={"type": "file", "path": str(blocker / "{campaign}.{format}")},
    )
    pb["strategies"] = {"life": {"gold": {"template": "hello", "channels": ["email", "push"]}}}
    config = tiny_config(pb)
    plan = plan_campaign(tiny, config, "gold_once")
    # the template is edited after the plan: it no longer renders for a real user
    pb["templates"] = {"hello": {"subject": "Hi", "body": "{{ 100 // age }}"}}
    pb["campaigns"] = dict(pb["campaigns"], gold_once=dict(pb["campaigns"]["gold_once"]))
    with pytest.raises(ConfigError) as info:
        send_campaign(tiny, tiny_config(pb, root=config.root), "gold_once")
    message = str(info.value)
    assert "fix these 4 problems first" in message
    assert f"cannot connect to SMTP server 127.0.0.1:{closed}" in message
    assert f"{HOOK_ENV} (the webhook signing secret) is not set" in message
    assert f"webhook http://127.0.0.1:{closed}/push: cannot connect" in message
    assert "fails to render: TypeError" in message
    _untouched(tiny, plan.run_id)


def test_unwritable_export_folder_is_a_delivery_error(tiny: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be")
    pb = dict(
        TINY_PLAYBOOK,
        channels={"export": {"type": "file", "path": str(blocker / "out.{format}")}},
        strategies={"life": {"gold": {"template": "hello", "channels": ["export"]}}},
    )
    config = tiny_config(pb)
    plan = plan_campaign(tiny, config, "gold_once")
    with pytest.raises(DeliveryError, match=r"channel 'export' cannot write to .*not-a-folder"):
        send_campaign(tiny, config, "gold_once")
    _untouched(tiny, plan.run_id)


def test_smtp_password_is_checked_when_there_is_a_username(
    tiny: Store, smtp_sink: SmtpSink, monkeypatch
) -> None:
    monkeypatch.delenv("SEGMINT_TEST_SMTP_PASSWORD", raising=False)
    email = dict(
        TINY_PLAYBOOK["channels"]["email"],
        port=smtp_sink.port,
        username="shop",
        password_env="SEGMINT_TEST_SMTP_PASSWORD",
    )
    config = tiny_config(dict(TINY_PLAYBOOK, channels={"email": email}))
    plan = plan_campaign(tiny, config, "gold_once")
    with pytest.raises(ConfigError, match="SEGMINT_TEST_SMTP_PASSWORD .* is not set"):
        send_campaign(tiny, config, "gold_once")
    assert smtp_sink.n_received == 0
    _untouched(tiny, plan.run_id)


def test_unresolvable_webhook_host_is_named(tiny: Store, monkeypatch) -> None:
    monkeypatch.setenv(HOOK_ENV, "k")
    _push_consent(tiny)
    pb = _playbook(9, "http://no-such-host.invalid/push")
    pb["strategies"] = {"life": {"gold": {"template": "hello", "channels": ["push"]}}}
    config = tiny_config(pb)
    plan = plan_campaign(tiny, config, "gold_once")
    with pytest.raises(DeliveryError, match=r"cannot resolve 'no-such-host.invalid'"):
        send_campaign(tiny, config, "gold_once")
    _untouched(tiny, plan.run_id)
