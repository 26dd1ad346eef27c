"""Consent end to end: consent rows ingested from a file (and an unsubscribe), then a real
campaign planned and sent to the SMTP sink, counting messages per person.

Four treated users of the demo's win-back campaign get new consent rows:

- A opts out as ``Email`` / ``Marketing`` (case as a CRM exports it) -> 0 messages;
- B has a grant and a revoke with the same timestamp -> 0 (the revoke wins);
- C has a grant dated 12 h ahead (accepted: within the 24 h tolerance), then unsubscribes
  now -> 0 (a row dated ahead takes effect when it was recorded);
- D gets a normal grant -> exactly 1.

Once with the consent rows in the store before the plan (the audience decides), once
between the plan and the send (the send-time re-check decides).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from tests.privacy.sealing import opened_emails

import segmint
from segmint.campaigns import (
    SmtpSink,
    key_ring,
    load_audience,
    make_token,
    plan_campaign,
    send_campaign,
    unsubscribe,
)
from segmint.config import load_config
from segmint.sources import LoadResult
from segmint.store import open_vault

from .conftest import demo_playbook, write_playbook

CAMPAIGN = "winback_at_risk"


def _add_consent_source(root: Path, rows: list[tuple[str, str, str, str, str]]) -> None:
    (root / "crm_consents.csv").write_text(
        "customer,medium,why,answer,at\n" + "".join(",".join(r) + "\n" for r in rows),
        encoding="utf-8",
    )
    path = root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["sources"]["crm_consents"] = {
        "type": "csv",
        "path": "crm_consents.csv",
        "table": "consents",
        "columns": {
            "user_id": "customer",
            "channel": "medium",
            "purpose": "why",
            "granted": "answer",
            "ts": "at",
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _consent_rows(users: list[str], now: datetime) -> list[tuple[str, str, str, str, str]]:
    a, b, c, d = users
    hour_ago = (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    ahead = (now + timedelta(hours=12)).strftime("%Y-%m-%d %H:%M:%S")
    return [
        (a, "Email", "Marketing", "false", hour_ago),
        (b, "email", "marketing", "true", hour_ago),
        (b, "email", "marketing", "false", hour_ago),
        (c, "email", "marketing", "true", ahead),
        (d, "email", "marketing", "true", hour_ago),
    ]


def _messages_per_person(p: segmint.Project, sink: SmtpSink, users: list[str]) -> list[int]:
    store = p.store
    frame = store.query(
        "SELECT user_id, email FROM users WHERE user_id IN ("
        + ", ".join(f"'{u}'" for u in users)
        + ")"
    )
    emails = opened_emails(frame, open_vault(store, p.config)).set_index("user_id")["email"]
    return [sink.by_recipient.get(emails[u], 0) for u in users]


def _ingest_and_unsubscribe(p: segmint.Project, users: list[str]) -> LoadResult:
    now = datetime.now(UTC)
    _add_consent_source(p.root, _consent_rows(users, now))
    p.config = load_config(p.root)  # with the new source
    (load,) = p.ingest(["crm_consents"])
    c = users[2]
    keys = key_ring(p.root, p.store, secret_env=p.config.playbook.secret_env)
    token = make_token(keys, c)
    result = unsubscribe(p.store, token, keys=keys)
    assert not result.already_unsubscribed
    return load


def _treated(p: segmint.Project) -> list[str]:
    plan = plan_campaign(p.store, p.config, CAMPAIGN)
    return sorted(load_audience(p.store, plan.run_id, "treatment")["user_id"])[:4]


def test_opt_outs_hold_when_the_audience_is_built(demo: Path, smtp_sink: SmtpSink) -> None:
    write_playbook(demo, demo_playbook(demo, smtp_port=smtp_sink.port))
    with segmint.open_project(demo) as p:
        users = _treated(p)
        load = _ingest_and_unsubscribe(p, users)
        plan = plan_campaign(p.store, p.config, CAMPAIGN)
        report = send_campaign(p.store, p.config, CAMPAIGN, plan=plan)
        assert _messages_per_person(p, smtp_sink, users) == [0, 0, 0, 1]
        assert report.sent == plan.n_treatment and report.sent > 50
        assert max(smtp_sink.by_recipient.values()) == 1
        assert (load.rows_read, load.rows_accepted) == (5, 5), load.rejected_by_rule


def test_opt_outs_between_plan_and_send_hold(demo: Path, smtp_sink: SmtpSink) -> None:
    write_playbook(demo, demo_playbook(demo, smtp_port=smtp_sink.port))
    with segmint.open_project(demo) as p:
        plan = plan_campaign(p.store, p.config, CAMPAIGN)
        users = sorted(load_audience(p.store, plan.run_id, "treatment")["user_id"])[:4]
        load = _ingest_and_unsubscribe(p, users)
        report = send_campaign(p.store, p.config, CAMPAIGN, plan=plan)
        assert _messages_per_person(p, smtp_sink, users) == [0, 0, 0, 1]
        assert report.skipped == 3 and report.sent == plan.n_treatment - 3
        assert max(smtp_sink.by_recipient.values()) == 1
        assert (load.rows_read, load.rows_accepted) == (5, 5), load.rejected_by_rule
