"""Consent purposes where they apply (issue 21, point 4): ``personalization`` gates personal
recommendations, ``marketing`` gates campaign audiences, ``sale_or_share`` (CCPA "do not
sell or share") keeps a person out of exported lists and of third-party channels."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.campaigns.conftest import TINY_PLAYBOOK, TODAY, build_tiny_store, tiny_config
from typer.testing import CliRunner

import segmint
from segmint.campaigns import load_audience, plan_campaign
from segmint.cli import app
from segmint.config import DEFAULT_CONSENT_CHANNELS, DEFAULT_CONSENT_PURPOSES, PrivacySettings
from segmint.store import Store, no_personalization_sql, sale_or_share_opt_outs_sql, verify_audit

runner = CliRunner()


def _consent(store: Store, user: str, channel: str, purpose: str, ts: str, granted: bool) -> None:
    store.execute(
        "INSERT INTO consents (user_id, channel, purpose, ts, granted, source, recorded_at) "
        "VALUES (?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, 'test', CAST(? AS TIMESTAMPTZ))",
        [user, channel, purpose, ts, granted, ts],
    )


def _ids(store: Store, sql: str) -> list[str]:
    return sorted(store.query(sql)["user_id"].astype(str))


# -- the vocabulary and the rule, on a hand-made store --------------------------------------


def test_the_vocabulary_has_sale_or_share_on_the_channel_any() -> None:
    assert "sale_or_share" in DEFAULT_CONSENT_PURPOSES and "any" in DEFAULT_CONSENT_CHANNELS
    assert PrivacySettings().personalization == "opt_out"
    with pytest.raises(ValueError, match="opt_in"):
        PrivacySettings(personalization="maybe")  # type: ignore[arg-type]


@pytest.fixture(params=["duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "t.duckdb")
    return str(request.getfixturevalue("pg_url"))


def test_the_latest_personalization_row_on_any_channel_decides(url: str) -> None:
    store = build_tiny_store(url)
    try:
        _consent(store, "u01", "web", "personalization", "2025-01-01 00:00:00+00", False)
        _consent(store, "u02", "web", "personalization", "2025-01-01 00:00:00+00", False)
        _consent(store, "u02", "email", "personalization", "2025-02-01 00:00:00+00", True)
        _consent(store, "u03", "any", "personalization", "2025-03-01 00:00:00+00", True)
        # opt-out: only u01 (revoked last) is left out; u02 granted again later
        assert _ids(store, no_personalization_sql("opt_out")) == ["u01"]
        # opt-in: everyone but those whose latest row is a grant (u02, u03)
        everyone = _ids(store, "SELECT user_id FROM users")
        expected = [u for u in everyone if u not in ("u02", "u03")]
        assert _ids(store, no_personalization_sql("opt_in")) == expected
        # "do not sell or share": opted out only by a revoke (absence: allowed)
        _consent(store, "u04", "any", "sale_or_share", "2025-01-01 00:00:00+00", False)
        _consent(store, "u05", "any", "sale_or_share", "2025-01-01 00:00:00+00", False)
        _consent(store, "u05", "any", "sale_or_share", "2025-04-01 00:00:00+00", True)
        assert _ids(store, sale_or_share_opt_outs_sql()) == ["u04"]
    finally:
        store.close()


# -- audiences respect marketing and do-not-sell ------------------------------------------


def test_newsletter_consent_does_not_admit_to_a_marketing_campaign(tmp_path: Path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    try:
        # u01: marketing withdrawn on e-mail, newsletter granted on e-mail
        _consent(store, "u01", "email", "marketing", "2025-05-01 00:00:00+00", False)
        _consent(store, "u01", "email", "newsletter", "2025-05-01 00:00:00+00", True)
        plan = plan_campaign(store, tiny_config(), "gold_once", as_of=TODAY)
        audience = load_audience(store, plan.run_id, "treatment")
        assert "u01" not in set(audience["user_id"])
        funnel = plan.funnel.set_index("step")["excluded"]
        # u04 withdrew, u08 never asked (tests/campaigns/test_audience.py), and now u01
        assert funnel["no consent for the channel and purpose"] == 3
    finally:
        store.close()


def test_do_not_sell_closes_a_webhook_channel_but_not_our_own_email(url: str) -> None:
    playbook: dict[str, Any] = {
        **TINY_PLAYBOOK,
        "channels": {
            **TINY_PLAYBOOK["channels"],
            "ads": {"type": "webhook", "url": "http://127.0.0.1:9/ads", "consent": "email"},
        },
        "strategies": {"life": {"gold": {"template": "hello", "channels": ["ads", "email"]}}},
    }
    store = build_tiny_store(url)
    try:
        _consent(store, "u01", "any", "sale_or_share", "2025-05-01 00:00:00+00", False)
        plan = plan_campaign(store, tiny_config(playbook), "gold_once", as_of=TODAY)
        audience = load_audience(store, plan.run_id, "treatment").set_index("user_id")
        assert audience.loc["u01", "channel"] == "email"  # our own e-mail: not a sale
        assert audience.loc["u02", "channel"] == "ads"
    finally:
        store.close()


# -- on a demo shop: recommendations, exports, the CLI, the tracking API -------------------


@pytest.fixture(scope="module")
def shop_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("purposes-shop")
    generate_demo(root, n_users=300, seed=5)
    with segmint.open_project(root) as p:
        p.ingest()
        p.segment(["rfm"])
    return root


@pytest.fixture()
def shop(shop_base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(shop_base, root, ignore=shutil.ignore_patterns("exports", "truth"))
    return root


def _buyers(p: Any, n: int) -> list[str]:
    frame = p.store.query(
        "SELECT user_id FROM orders GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT ?",
        [n],
    )
    return [str(u) for u in frame["user_id"]]


def test_recommendations_without_personalization_consent_are_popularity(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        revoked, kept = _buyers(p, 2)
        _consent(p.store, revoked, "any", "personalization", "2025-01-01 00:00:00+00", False)
        run = p.recommend_all("item_knn")
        assert run.metrics["n_without_personalization"] == 1
        rows = p.store.query(
            "SELECT user_id, model, reason FROM recommendations WHERE run_id = ?", [run.run_id]
        )
        mine = rows[rows["user_id"] == revoked]
        assert set(mine["model"]) == {"popularity"} and len(mine) > 0
        assert set(rows.loc[rows["user_id"] == kept, "model"]) != {"popularity"}
        # the one-user API: "popular now", whatever the run holds
        assert set(p.recommend(revoked, 5)["reason"]) == {"popular now"}
        assert set(p.recommend(kept, 5)["model"]) == {"item_knn"}


def test_opt_in_personalizes_only_who_granted_it(shop: Path) -> None:
    from segmint.recommend import recommend_all, recommend_for_user

    with segmint.open_project(shop) as p:
        granted, other = _buyers(p, 2)
        _consent(p.store, granted, "web", "personalization", "2025-01-01 00:00:00+00", True)
        run = recommend_all(
            p.store, "item_knn", config=p.config.recommend, personalization="opt_in"
        )
        models = p.store.query(
            "SELECT user_id, model FROM recommendations WHERE run_id = ?", [run.run_id]
        )
        assert set(models.loc[models["user_id"] == other, "model"]) == {"popularity"}
        assert "item_knn" in set(models.loc[models["user_id"] == granted, "model"])
        mine = recommend_for_user(p.store, granted, 3, personalization="opt_in")
        theirs = recommend_for_user(p.store, other, 3, personalization="opt_in")
        assert set(mine["model"]) == {"item_knn"} and set(theirs["reason"]) == {"popular now"}


def _members(p: Any) -> list[str]:
    run = p.segment_run("rfm")
    return sorted(run.assignments["user_id"].astype(str))[:3]


def test_do_not_sell_from_the_cli_keeps_people_out_of_exports(shop: Path, tmp_path: Path) -> None:
    with segmint.open_project(shop) as p:
        first, second, _ = _members(p)
        before = p.export_segment("rfm", tmp_path / "before.csv")
    r = runner.invoke(
        app, ["privacy", "do-not-sell", first, "--source", "web form", "-p", str(shop), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert '"allowed": false' in r.output
    with segmint.open_project(shop) as p:
        after = p.export_segment("rfm", tmp_path / "after.csv")
        assert after.n_rows == before.n_rows - 1
        assert after.excluded == {"do not sell or share": 1} and after.n_excluded == 1
        contacts = p.export_segment("rfm", tmp_path / "c.csv", purpose="marketing")
        assert contacts.excluded["do not sell or share"] == 1
        assert first not in set(pd.read_csv(tmp_path / "c.csv")["user_id"].astype(str))
        row = p.store.query(
            "SELECT channel, purpose, granted, source, recorded_at FROM consents "
            "WHERE user_id = ? AND purpose = 'sale_or_share'",
            [first],
        ).iloc[0]
        assert (row["channel"], row["granted"], row["source"]) == ("any", False, "web form")
        assert row["recorded_at"] is not None
        audit = p.store.query("SELECT action, target FROM audit_log ORDER BY seq")
        assert list(audit["action"]) == ["privacy.do_not_sell", "export"]  # + the contact list
        assert first not in str(audit["target"].iloc[0])  # the id's HMAC, not the id
        assert verify_audit(p.store).ok
    undo = runner.invoke(app, ["privacy", "do-not-sell", first, "--undo", "-p", str(shop)])
    assert undo.exit_code == 0, undo.output
    with segmint.open_project(shop) as p:
        assert p.export_segment("rfm", tmp_path / "again.csv").n_rows == before.n_rows
    missing = runner.invoke(app, ["privacy", "do-not-sell", "nobody-1", "-p", str(shop)])
    assert missing.exit_code != 0 and "no user 'nobody-1'" in missing.output


def test_do_not_sell_through_the_tracking_consent_event(shop: Path, tmp_path: Path) -> None:
    from segmint.sources import load_messages

    with segmint.open_project(shop) as p:
        first = _members(p)[0]
        message = {
            "_source": "web",
            "type": "track",
            "messageId": "m-dns-1",
            "timestamp": datetime(2026, 1, 5, tzinfo=UTC).isoformat(),
            "userId": first,
            "event": p.config.tracking.consent_event,
            "properties": {"channel": "any", "purpose": "sale_or_share", "granted": False},
        }
        load = load_messages(p.store, p.config, [message])
        assert load.rejected == 0, load
        assert _ids(p.store, sale_or_share_opt_outs_sql()) == [first]
        rec = p.export_segment("rfm", tmp_path / "list.csv")
        assert rec.excluded == {"do not sell or share": 1}
