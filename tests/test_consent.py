"""Consent as loaded and as read: a validated vocabulary, both facts of a tie kept (the
revoke wins), and no row dated ahead outranking a later real action. Every test runs on a
DuckDB file and on PostgreSQL; the consent in force is read through the one definition,
``segmint.store.latest_consent_sql``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tests.helpers import make_project

import segmint
from segmint.errors import ConfigError
from segmint.store import latest_consent_sql

USERS = "id,mail\nu1,a@example.com\nu2,b@example.com\n"
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture()
def opened() -> Iterator[list[segmint.Project]]:
    projects: list[segmint.Project] = []
    yield projects
    for p in projects:
        p.close()


def _project(
    root: Path, store: str, consents_csv: str, opened: list[segmint.Project], **extra: Any
) -> segmint.Project:
    sources = {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "email": "mail"},
        },
        "prefs": {
            "type": "csv",
            "path": "consents.csv",
            "table": "consents",
            "columns": {
                "user_id": "uid",
                "channel": "ch",
                "purpose": "why",
                "ts": "at",
                "granted": "ok",
            },
        },
    }
    files = {"users.csv": USERS, "consents.csv": consents_csv}
    make_project(root, store=store, files=files, sources=sources, extra=extra)
    opened.append(segmint.open_project(root))
    opened[-1].ingest(["people"], now=NOW)
    return opened[-1]


def _in_force(p: segmint.Project) -> dict[tuple[str, str, str], bool]:
    got = p.store.query(latest_consent_sql())
    return {
        (u, c, w): bool(g)
        for u, c, w, g in zip(
            got["user_id"], got["channel"], got["purpose"], got["granted"], strict=True
        )
    }


# -- point 5: a vocabulary with normalised case ------------------------------------------


def test_channel_and_purpose_are_trimmed_and_lower_cased(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    csv = (
        "uid,ch,why,at,ok\n"
        "u1,email,marketing,2025-01-01 00:00:00,true\n"
        "u1, Email ,MARKETING,2025-06-01 00:00:00,false\n"  # the opt-out is honoured
        "u2,In_App,Personalization,2025-06-01 00:00:00,true\n"
    )
    p = _project(tmp_path, store, csv, opened)
    (r,) = p.ingest(["prefs"], now=NOW)
    assert (r.rows_read, r.rows_accepted) == (3, 3)
    assert _in_force(p) == {
        ("u1", "email", "marketing"): False,
        ("u2", "in_app", "personalization"): True,
    }


def test_an_unknown_channel_or_purpose_is_quarantined_with_a_did_you_mean(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    csv = (
        "uid,ch,why,at,ok\n"
        "u1,e-mail,marketing,2025-01-01 00:00:00,false\n"
        "u1,email,marketting,2025-01-01 00:00:00,false\n"
        "u2,carrier pigeon,marketing,2025-01-01 00:00:00,true\n"
        "u2,sms,marketing,2025-01-01 00:00:00,true\n"
    )
    p = _project(tmp_path, store, csv, opened)
    (r,) = p.ingest(["prefs"], now=NOW)
    assert (r.rows_read, r.rows_accepted, r.rejected_by_rule) == (4, 1, {"unknown_value": 3})
    reasons = p.quarantine("prefs").set_index("row")["reason"]
    assert reasons[2].startswith(
        "channel 'e-mail' is not one of email, sms, push, phone, post, web, in_app, any; "
        "did you mean 'email'? (add it under consent.channels in segmint.yaml"
    )
    assert "purpose 'marketting' is not one of marketing," in reasons[3]
    assert "did you mean 'marketing'?" in reasons[3]
    assert "carrier pigeon" in reasons[4] and "did you mean" not in reasons[4]


def test_a_project_extends_the_vocabulary(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    csv = "uid,ch,why,at,ok\nu1,WhatsApp,surveys,2025-01-01 00:00:00,true\n"
    p = _project(
        tmp_path, store, csv, opened, consent={"channels": ["WhatsApp"], "purposes": ["surveys"]}
    )
    assert p.config.consent.all_channels[-1] == "whatsapp"
    (r,) = p.ingest(["prefs"], now=NOW)
    assert r.rows_accepted == 1
    assert _in_force(p) == {("u1", "whatsapp", "surveys"): True}


def test_the_playbook_consent_words_must_be_in_the_vocabulary() -> None:
    from segmint.config import Config

    playbook: dict[str, Any] = {
        "channels": {
            "mail": {"type": "email", "from": "s@x.org", "consent": "e-mail"},
            "app": {"type": "webhook", "url": "http://127.0.0.1:9/", "consent": "Push"},
        },
        "templates": {"t": {"subject": "s", "body": "b"}},
        "strategies": {"life": {"*": {"template": "t", "channels": ["mail"]}}},
        "campaigns": {"c": {"segmentation": "life", "purpose": "marketting"}},
    }
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"playbook": playbook})
    msg = str(info.value)
    assert "channels.mail.consent: unknown consent channel 'e-mail'" in msg
    assert "did you mean 'email'?" in msg
    assert "campaigns.c.purpose: unknown consent purpose 'marketting'" in msg
    assert "did you mean 'marketing'?" in msg
    assert "Push" not in msg  # a different case is the same word
    playbook["channels"]["mail"]["consent"] = " EMAIL "
    playbook["campaigns"]["c"]["purpose"] = "Marketing"
    config = Config.model_validate({"playbook": playbook})
    assert config.playbook.channels["mail"].consent == "email"
    assert config.playbook.channels["app"].consent == "push"
    assert config.playbook.campaigns["c"].purpose == "marketing"


def test_a_playbook_consent_typo_is_a_config_error_at_load(tmp_path: Path) -> None:
    from segmint.config import load_config

    (tmp_path / "segmint.yaml").write_text(
        "playbook:\n  channels:\n    mail: {type: email, from: s@x.org, consent: e-mail}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "segmint.yaml:1: playbook:" in str(info.value)  # the file and the line
    assert "channels.mail.consent: unknown consent channel 'e-mail'; did you mean 'email'?" in str(
        info.value
    )


# -- point 6: a grant and a revoke at the same instant -----------------------------------


def test_a_grant_and_a_revoke_at_the_same_instant_are_both_kept_and_the_revoke_wins(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    csv = (
        "uid,ch,why,at,ok\n"
        "u1,email,marketing,2025-06-01 10:00:00,false\n"
        "u1,email,marketing,2025-06-01 10:00:00,true\n"  # after the revoke in the file
        "u2,email,marketing,2025-06-01 10:00:00,true\n"
        "u2,email,marketing,2025-06-01 10:00:00,false\n"  # before it
    )
    p = _project(tmp_path, store, csv, opened)
    (r,) = p.ingest(["prefs"], now=NOW)
    assert (r.rows_read, r.rows_accepted, r.rows_rejected) == (4, 4, 0)
    assert p.store.count("consents") == 4
    assert _in_force(p) == {
        ("u1", "email", "marketing"): False,
        ("u2", "email", "marketing"): False,
    }
    (again,) = p.ingest(["prefs"], now=NOW, force=True)
    assert (again.rows_inserted, again.rows_unchanged) == (0, 4)


# -- point 7: a row dated ahead never outranks a later real action -----------------------


def test_a_grant_dated_ahead_does_not_outrank_a_later_unsubscribe(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    from segmint.campaigns import key_ring, make_token, unsubscribe

    ahead = (NOW + timedelta(hours=12)).strftime("%Y-%m-%d %H:%M:%S")
    csv = f"uid,ch,why,at,ok\nu1,email,marketing,{ahead},true\n"
    p = _project(tmp_path, store, csv, opened)
    (r,) = p.ingest(["prefs"], now=NOW)  # within the 24 h tolerance: accepted
    assert r.rows_accepted == 1
    recorded = p.store.scalar("SELECT recorded_at FROM consents")
    assert recorded == NOW  # recorded at the load's time
    later = NOW + timedelta(minutes=5)
    keys = key_ring(p.root, p.store)
    token = make_token(keys, "u1", "email", "marketing")
    result = unsubscribe(p.store, token, keys=keys, now=later)
    assert not result.already_unsubscribed
    assert _in_force(p) == {("u1", "email", "marketing"): False}
    # the grant still takes effect when it was recorded, not when it is dated, on a reload
    (again,) = p.ingest(["prefs"], now=NOW + timedelta(hours=1), force=True)
    assert again.rows_unchanged == 1
    assert p.store.scalar("SELECT recorded_at FROM consents WHERE granted") == NOW
    assert _in_force(p) == {("u1", "email", "marketing"): False}
    assert unsubscribe(
        p.store, token, keys=keys, now=later + timedelta(minutes=1)
    ).already_unsubscribed


def test_the_profile_shows_the_consent_in_force(
    tmp_path: Path, store: str, opened: list[segmint.Project]
) -> None:
    csv = (
        "uid,ch,why,at,ok\n"
        "u1,email,marketing,2025-06-01 10:00:00,true\n"
        "u1,EMAIL,marketing,2025-06-01 10:00:00,false\n"
    )
    p = _project(tmp_path, store, csv, opened)
    p.ingest(["prefs"], now=NOW)
    from segmint.profiles import user_profile

    pr = user_profile(p.store, "u1")
    assert pr.consents[["channel", "purpose", "granted"]].values.tolist() == [
        ["email", "marketing", False]
    ]
