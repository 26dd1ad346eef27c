"""Readers of personal data read it sealed and open it only where it is used (issue 21):
audiences by blind index, messages rendered with the clear values, contact lists and
profiles opened, the People search by index, one audit entry per decrypting call."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tests.campaigns.conftest import TINY_PLAYBOOK, build_tiny_store, tiny_config
from tests.privacy.sealing import seal_users
from tests.profiles._lists_project import write_shop

import segmint
from segmint.campaigns import plan_campaign, send_campaign
from segmint.campaigns._messages import MessageBuilder
from segmint.store import Store, is_sealed, open_vault, verify_audit

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
PLAYBOOK: dict[str, Any] = {
    **TINY_PLAYBOOK,
    "templates": {"hello": {"subject": "Hi {{ first_name }}", "body": "To {{ email }}"}},
}


def _tiny(tmp_path: Path, name: str, *, seal: bool, config: Any) -> Store:
    store = build_tiny_store(str(tmp_path / f"{name}.duckdb"), seal=False)
    store.execute("""UPDATE users SET traits = CAST('{"first_name": "Ann"}' AS JSON)
                     WHERE user_id = 'u01'""")
    vault = open_vault(store, config)
    if seal:
        seal_users(store, vault)
    else:  # in clear, indexed (privacy.encrypt: false)
        for uid, email in store.query("SELECT user_id, email FROM users").itertuples(False):
            store.execute(
                "UPDATE users SET email_index = ? WHERE user_id = ?",
                [vault.index(email, "email") if "@" in email else None, uid],
            )
    return store


def _audit(store: Store, action: str = "personal.read") -> pd.DataFrame:
    return store.query(
        "SELECT actor, target, why, CAST(detail AS VARCHAR) AS detail FROM audit_log "
        "WHERE action = ? ORDER BY seq",
        [action],
    )


def test_audience_counts_equal_sealed_and_in_clear(tmp_path: Path) -> None:
    funnels = []
    for seal in (True, False):
        config = tiny_config(PLAYBOOK)
        store = _tiny(tmp_path, f"s{seal}", seal=seal, config=config)
        assert is_sealed(store.scalar("SELECT email FROM users WHERE user_id = 'u01'")) is seal
        plan = plan_campaign(store, config, "gold_once", as_of=NOW.date(), now=NOW)
        funnels.append(plan.funnel.to_dict("records"))
    assert funnels[0] == funnels[1]
    excluded = {r["step"]: r["excluded"] for r in funnels[0]}
    assert excluded["no usable address"] == 1  # u03's address is malformed
    assert excluded["suppressed"] == 1  # u06, by user id


def test_rendered_messages_carry_the_clear_values_and_one_audit_entry(tmp_path: Path) -> None:
    config = tiny_config(PLAYBOOK)
    store = _tiny(tmp_path, "r", seal=True, config=config)
    plan = plan_campaign(store, config, "gold_once", as_of=NOW.date(), now=NOW)
    n_before = len(_audit(store))
    builder = MessageBuilder(store, config, "gold_once", plan.run_id, plan.segment_run_id)
    messages = {pm.message.user_id: pm.message for pm in builder.messages(builder.rows())}
    assert messages["u01"].to == "ann@example.com"
    assert messages["u01"].subject == "Hi Ann" and messages["u01"].body == "To ann@example.com"
    assert builder.audit("tester", why="test") is not None
    entries = _audit(store)
    assert len(entries) == n_before + 1  # one entry for the batch, not one per message
    last = entries.iloc[-1]
    detail = json.loads(last["detail"])
    assert (last["actor"], last["target"]) == ("tester", "campaign:gold_once")
    assert detail["n_values"] == len(messages) + 1  # every e-mail and Ann's first name
    assert detail["fields"] == ["users.email", "users.traits.first_name"]
    assert "@" not in last["detail"] and verify_audit(store).ok


def test_a_send_writes_one_audit_entry_per_batch(tmp_path: Path) -> None:
    from segmint.campaigns import SmtpSink

    with SmtpSink() as sink:
        book = json.loads(json.dumps(PLAYBOOK))
        book["channels"]["email"]["port"] = sink.port
        config = tiny_config(book)
        store = _tiny(tmp_path, "send", seal=True, config=config)
        plan = plan_campaign(store, config, "gold_once", as_of=NOW.date(), now=NOW)
        n_before = len(_audit(store))
        report = send_campaign(store, config, "gold_once", batch_size=2, actor="ana")
    assert report.sent == plan.n_treatment >= 3 and sink.by_recipient["ann@example.com"] == 1
    new = _audit(store).iloc[n_before:]
    assert len(new) == -(-report.sent // 2)  # one per batch of 2, not one per message
    assert set(new["actor"]) == {"ana"} and set(new["why"]) == {"campaign send"}
    assert sum(json.loads(d)["n_values"] for d in new["detail"]) >= report.sent


def test_a_suppression_by_blind_index_and_an_old_clear_one_both_hold(tmp_path: Path) -> None:
    config = tiny_config(PLAYBOOK)
    store = _tiny(tmp_path, "sup", seal=True, config=config)
    vault = open_vault(store, config)
    store.execute(
        "INSERT INTO suppressions (user_id, address, address_index, channel, reason, created_at) "
        "VALUES (NULL, NULL, ?, NULL, 'complaint', current_timestamp), "
        "(NULL, 'Bob@Example.com', NULL, 'email', 'bounce (before issue 21)', current_timestamp)",
        [vault.index(" ANN@example.com", "email")],
    )
    plan = plan_campaign(store, config, "gold_once", as_of=NOW.date(), now=NOW)
    audience = store.query(
        "SELECT user_id FROM campaign_audiences WHERE run_id = ? ORDER BY 1", [plan.run_id]
    )["user_id"].tolist()
    assert "u01" not in audience and "u02" not in audience and "u07" in audience
    # the old row got its index, so it matches sealed addresses from now on
    assert (
        store.scalar(
            "SELECT count(*) FROM suppressions WHERE address IS NOT NULL AND address_index IS NULL"
        )
        == 0
    )


def _sealed_shop(tmp_path: Path) -> Path:
    root = write_shop(tmp_path / "shop")
    with segmint.open_project(root) as p:
        seal_users(p.store, open_vault(p.store, p.config))
        assert is_sealed(p.store.scalar("SELECT email FROM users WHERE user_id = 'u1'"))
    return root


def test_a_contact_list_opens_the_values_and_is_audited(tmp_path: Path) -> None:
    root = _sealed_shop(tmp_path)
    with segmint.open_project(root) as p:
        record = p.export_segment("spend", tmp_path / "c.csv", purpose="marketing")
        entries = _audit(p.store, "export")
    frame = pd.read_csv(record.path, encoding="utf-8-sig", dtype=str).set_index("user_id")
    assert frame.loc["u1", "email"] == "u1@example.com"
    # a leading + is written as text (a spreadsheet would read a formula)
    assert frame.loc["u1", "phone"] == "'+49300001" and frame.loc["u1", "name"] == "张伟"
    assert not frame.apply(lambda c: c.str.startswith("enc1:", na=False)).any().any()
    assert len(entries) == 1 and entries.iloc[0]["target"] == record.export_id
    assert entries.iloc[0]["why"] == "marketing" and "@" not in entries.iloc[0]["detail"]


def test_a_profile_opens_then_masks_and_is_audited(tmp_path: Path) -> None:
    root = _sealed_shop(tmp_path)
    with segmint.open_project(root) as p:
        attrs = p.profile("u1", actor="ana", why="support ticket 7").attributes
        entries = _audit(p.store)
        table = p.export_profiles(tmp_path / "profiles.csv")
    assert attrs["email"] == "u***@example.com" and attrs["phone"] == "*******01"
    assert attrs["has_email"] and attrs["has_phone"]
    last = entries.iloc[-1]
    assert (last["actor"], last["target"], last["why"]) == ("ana", "u1", "support ticket 7")
    assert json.loads(last["detail"])["fields"] == ["users.email", "users.phone"]
    text = Path(table[0]).read_text(encoding="utf-8-sig")
    assert "enc1:" not in text and "example.com" not in text


def test_a_birthday_is_read_from_its_sealed_text(tmp_path: Path) -> None:
    config = tiny_config(PLAYBOOK)
    store = _tiny(tmp_path, "b", seal=True, config=config)
    from segmint.profiles import user_profile

    profile = user_profile(store, "u01", vault=open_vault(store, config))
    assert profile.attributes["birthday"] == date(1990, 11, 28)
    assert profile.attributes["email"] == "a***@example.com"


def test_the_people_search_finds_a_sealed_email_by_its_index(tmp_path: Path) -> None:
    from segmint.web._people import _find

    config = tiny_config(PLAYBOOK)
    store = _tiny(tmp_path, "w", seal=True, config=config)
    vault = open_vault(store, config)
    found, more = _find(store, vault, " Bob@EXAMPLE.com ")
    assert [r["user_id"] for r in found] == ["u02"] and not more
    assert _find(store, vault, "nobody@example.com")[0] == []
    clear = _tiny(tmp_path, "wc", seal=False, config=tiny_config(PLAYBOOK))
    assert [r["user_id"] for r in _find(clear, vault, "BOB@example.com")[0]] == ["u02"]


def test_a_file_channel_file_is_registered_as_an_export(tmp_path: Path) -> None:
    book = json.loads(json.dumps(PLAYBOOK))
    book["channels"] = {"email": {"type": "file", "path": "out/{campaign}.csv"}}
    config = tiny_config(book, root=tmp_path)
    store = _tiny(tmp_path, "file", seal=True, config=config)
    plan_campaign(store, config, "gold_once", as_of=NOW.date(), now=NOW)
    report = send_campaign(store, config, "gold_once", actor="ana")
    written = store.query("SELECT kind, contact, purpose, n_rows, path FROM exports")
    assert written.to_dict("records") == [
        {
            "kind": "campaign-file",
            "contact": True,
            "purpose": "marketing",
            "n_rows": report.sent,
            "path": str((tmp_path / "out" / "gold_once.csv").resolve()),
        }
    ]
    entry = _audit(store, "export").iloc[-1]
    assert entry["actor"] == "ana" and "@" not in entry["detail"]


def test_an_smtp_reply_loses_its_address_before_the_log() -> None:
    from segmint.campaigns._channels import _text

    reply = b"5.1.1 <Bob.Smith+x@Example.com>: Recipient address rejected (bob@example.com)"
    assert _text(reply) == "5.1.1 <<address>>: Recipient address rejected (<address>)"


def test_a_breakdown_reads_clear_traits_and_refuses_a_sealed_one(tmp_path: Path) -> None:
    import pytest

    from segmint.errors import ConfigError
    from segmint.experiments._breakdown import _trait

    config = tiny_config(PLAYBOOK)
    config = config.model_copy(
        update={"privacy": config.privacy.model_copy(update={"personal_traits": ["tier_code"]})}
    )
    store = build_tiny_store(str(tmp_path / "t.duckdb"), seal=False)
    store.execute("""UPDATE users SET traits = CAST('{"zip_code": "10115", "tier_code": "G7",
                     "first_name": "Ann"}' AS JSON) WHERE user_id = 'u01'""")
    seal_users(store, open_vault(store, config))
    zips = _trait(store, "traits.zip_code").set_index("user_id")["v"]
    assert zips["u01"] == "10115"  # a non-personal key stays readable
    with pytest.raises(ConfigError, match="privacy.personal_traits"):
        _trait(store, "traits.tier_code")
