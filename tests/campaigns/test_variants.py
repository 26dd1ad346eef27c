"""Campaigns with several treatment variants (A/B/n): arms by cumulative share of the stable
bucket, each variant's own template, offer and subject, delivery to every variant and never
to the control, the design in the run's params, and clear errors for a bad design."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from segmint.campaigns import design_from_params, plan_campaign, preview, send_campaign
from segmint.campaigns._audience import holdout_bucket
from segmint.config import load_config
from segmint.errors import ConfigError
from segmint.store import Store, open_store

from .conftest import tiny_config

N_USERS = 4000
SPLIT = {"message A": 0.45, "message B": 0.35, "control": 0.2}


def _store(url: str, n: int = N_USERS) -> Store:
    """n users with an e-mail and consent, all in segment 'gold' of one run of 'life'."""
    store = open_store(url)
    users = [f"u{i:05d}" for i in range(n)]
    ts = "CAST('2024-01-01 00:00:00+00' AS TIMESTAMPTZ)"
    store.execute(
        "INSERT INTO users (user_id, email, created_at) VALUES "
        + ", ".join(f"('{u}', '{u}@example.com', {ts})" for u in users)
    )
    store.execute(
        "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES "
        + ", ".join(f"('{u}', 'email', 'marketing', {ts}, TRUE, 'signup')" for u in users)
    )
    store.execute(
        "INSERT INTO segment_runs (run_id, segmentation, method, created_at, as_of, n_users) "
        f"VALUES ('s-1-life', 'life', 'rules', {ts}, {ts}, {n})"
    )
    store.execute(
        "INSERT INTO segment_assignments (run_id, user_id, segment) VALUES "
        + ", ".join(f"('s-1-life', '{u}', 'gold')" for u in users)
    )
    return store


def _playbook(tmp_path: Path) -> dict[str, Any]:
    return {
        "holdout": 0.1,
        "frequency_cap": {"max_messages": 5, "window_days": 7},
        "channels": {
            "export": {"type": "file", "path": str(tmp_path / "out" / "{campaign}-{run_id}.csv")}
        },
        "templates": {
            "plain": {"subject": "Hello {{ user_id }}", "body": "PLAIN {{ offer.label }}"},
            "story": {"subject": "A story for you", "body": "STORY {{ offer.label }} {{ arm }}"},
        },
        "strategies": {
            "life": {
                "gold": {"template": "plain", "channels": ["export"], "offer": {"type": "none"}}
            }
        },
        "campaigns": {
            "ab": {
                "segmentation": "life",
                "holdout": 0.2,
                "variants": [
                    {"name": "message A", "share": 0.45, "offer": {"type": "percent", "value": 10}},
                    {
                        "name": "message B",
                        "share": 0.35,
                        "template": "story",
                        "offer": {"type": "amount", "value": 5},
                        "subject": "B: {{ offer.label }}",
                        "ui": "banner-b",
                    },
                ],
            },
            "classic": {"segmentation": "life", "holdout": 0.2},
        },
    }


@pytest.fixture()
def shop(tmp_path: Path) -> tuple[Store, Any]:
    store = _store(str(tmp_path / "ab.duckdb"))
    yield store, tiny_config(_playbook(tmp_path), root=tmp_path)
    store.close()


def _arms(store: Store, run_id: str) -> pd.Series:
    frame = store.query(
        f"SELECT user_id, arm FROM campaign_audiences WHERE run_id = '{run_id}' ORDER BY user_id"
    )
    return frame.set_index("user_id")["arm"].astype(str)


def _expected_arm(campaign: str, user: str, split: dict[str, float], control: str) -> str:
    """The arm by hand: control below its share, then each variant's cumulative bound."""
    b = holdout_bucket(campaign, user)
    bound = split[control]
    if b < bound:
        return control
    treated = [a for a in split if a != control]
    for arm in treated[:-1]:
        bound += split[arm]
        if b < bound:
            return arm
    return treated[-1]


def test_arm_counts_match_the_shares(shop: tuple[Store, Any]) -> None:
    store, config = shop
    plan = plan_campaign(store, config, "ab")
    assert plan.n_eligible == N_USERS
    assert list(plan.n_by_arm) == list(SPLIT)
    assert plan.n_control == plan.n_by_arm["control"]
    assert plan.n_treatment == plan.n_by_arm["message A"] + plan.n_by_arm["message B"]
    observed = np.array([plan.n_by_arm[a] for a in SPLIT])
    expected = np.array(list(SPLIT.values())) * N_USERS
    assert stats.chisquare(observed, expected).pvalue > 0.001
    # every user where the bucket puts them, computed in Python
    arms = _arms(store, plan.run_id)
    by_hand = pd.Series({u: _expected_arm("ab", u, SPLIT, "control") for u in arms.index})
    assert (arms == by_hand.loc[arms.index]).all()


def test_shares_far_from_the_design_fail_the_chi_square(shop: tuple[Store, Any]) -> None:
    """The tolerance test can fail: the classic 80/20 counts are not a 45/35/20 split."""
    store, config = shop
    plan = plan_campaign(store, config, "classic")
    observed = np.array([plan.n_treatment // 2, plan.n_treatment - plan.n_treatment // 2 + 400])
    observed = np.append(observed, plan.n_control - 400)
    assert stats.chisquare(observed, np.array(list(SPLIT.values())) * N_USERS).pvalue < 0.001


def test_params_carry_split_control_and_holdout(shop: tuple[Store, Any]) -> None:
    store, config = shop
    plan = plan_campaign(store, config, "ab")
    params = json.loads(
        store.scalar(f"SELECT params FROM campaign_runs WHERE run_id = '{plan.run_id}'")
    )
    assert params["control"] == "control"
    assert params["split"] == pytest.approx(SPLIT)
    assert params["holdout"] == 0.2
    design = design_from_params(params)
    assert design.treatments == ["message A", "message B"]
    loaded = plan_campaign.__globals__["load_plan"](store, plan.run_id)
    assert loaded.n_by_arm == plan.n_by_arm and loaded.control == "control"
    assert plan.to_dict()["n_by_arm"] == plan.n_by_arm


def test_arms_are_stable_across_a_replan_and_a_new_design(
    shop: tuple[Store, Any], tmp_path: Path
) -> None:
    store, config = shop
    first = _arms(store, plan_campaign(store, config, "ab").run_id)
    again = _arms(store, plan_campaign(store, config, "ab").run_id)
    pd.testing.assert_series_equal(first, again)
    pb = _playbook(tmp_path)
    pb["campaigns"]["ab"]["variants"][0]["share"] = 0.25
    pb["campaigns"]["ab"]["variants"][1]["share"] = 0.55
    changed = _arms(store, plan_campaign(store, tiny_config(pb, root=tmp_path), "ab").run_id)
    pd.testing.assert_series_equal(first, changed)  # assigned users keep their first arm


def test_custom_control_label(shop: tuple[Store, Any], tmp_path: Path) -> None:
    store, _ = shop
    pb = _playbook(tmp_path)
    pb["campaigns"]["ab"]["control"] = "holdout group"
    plan = plan_campaign(store, tiny_config(pb, root=tmp_path), "ab")
    assert plan.control == "holdout group"
    assert set(plan.n_by_arm) == {"message A", "message B", "holdout group"}
    assert plan.n_control == plan.n_by_arm["holdout group"]


def test_each_variant_uses_its_template_offer_and_subject(shop: tuple[Store, Any]) -> None:
    store, config = shop
    plan = plan_campaign(store, config, "ab")
    messages = preview(store, config, "ab", n=10, run_id=plan.run_id)
    by_arm = {m.arm: m for m in messages}
    assert set(by_arm) == {"message A", "message B"}  # round-robin shows both
    a, b = by_arm["message A"], by_arm["message B"]
    assert a.subject == f"Hello {a.user_id}" and a.body == "PLAIN 10% off"
    assert b.subject == "B: $5 off" and b.body == "STORY $5 off message B"
    arms = _arms(store, plan.run_id)
    assert all(arms[m.user_id] == m.arm for m in messages)


def test_delivery_sends_to_both_variants_and_never_to_the_control(
    shop: tuple[Store, Any], tmp_path: Path
) -> None:
    store, config = shop
    plan = plan_campaign(store, config, "ab")
    report = send_campaign(store, config, "ab")
    assert report.sent == plan.n_treatment and report.complete
    out = pd.read_csv(tmp_path / "out" / f"ab-{plan.run_id}.csv", dtype=str, keep_default_na=False)
    arms = _arms(store, plan.run_id)
    assert len(out) == plan.n_treatment
    assert out["arm"].value_counts().to_dict() == {
        "message A": plan.n_by_arm["message A"],
        "message B": plan.n_by_arm["message B"],
    }
    assert (out["arm"] == arms.loc[out["user_id"]].to_numpy()).all()
    assert not set(out["user_id"]) & set(arms[arms == "control"].index)
    assert set(out.loc[out["arm"] == "message B", "ui"]) == {"banner-b"}
    assert set(out.loc[out["arm"] == "message A", "ui"]) == {""}
    assert out.loc[out["arm"] == "message B", "body"].str.startswith("STORY").all()
    # the delivery log joins to the arm through the audience
    logged = store.query(
        "SELECT a.arm, count(*) AS n FROM deliveries d JOIN campaign_audiences a "
        "ON a.idempotency_key = d.idempotency_key AND a.run_id = d.run_id "
        "WHERE d.status = 'sent' GROUP BY a.arm"
    )
    assert dict(zip(logged["arm"], logged["n"], strict=True)) == {
        "message A": plan.n_by_arm["message A"],
        "message B": plan.n_by_arm["message B"],
    }


def test_email_carries_the_arm_header(tmp_path: Path, smtp_sink: Any) -> None:
    store = _store(str(tmp_path / "small.duckdb"), n=60)
    pb = _playbook(tmp_path)
    pb["channels"]["email"] = {
        "type": "email",
        "host": "127.0.0.1",
        "port": smtp_sink.port,
        "from": "shop@example.com",
    }
    pb["strategies"]["life"]["gold"]["channels"] = ["email"]
    config = tiny_config(pb, root=tmp_path)
    plan = plan_campaign(store, config, "ab")
    send_campaign(store, config, "ab")
    store.close()
    assert smtp_sink.n_received == plan.n_treatment
    got = pd.Series([m["X-Segmint-Arm"] for m in smtp_sink.messages]).value_counts()
    assert got.to_dict() == {a: n for a, n in plan.n_by_arm.items() if a != "control"}


def test_a_campaign_without_variants_is_unchanged(shop: tuple[Store, Any]) -> None:
    store, config = shop
    plan = plan_campaign(store, config, "classic")
    arms = _arms(store, plan.run_id)
    assert set(arms) == {"treatment", "control"}
    by_hand = pd.Series(
        {u: "control" if holdout_bucket("classic", u) < 0.2 else "treatment" for u in arms.index}
    )
    assert (arms == by_hand.loc[arms.index]).all()
    params = json.loads(
        store.scalar(f"SELECT params FROM campaign_runs WHERE run_id = '{plan.run_id}'")
    )
    assert params["holdout"] == 0.2
    assert "variants" not in params["campaign"] and "control" not in params["campaign"]
    assert design_from_params(params).split == pytest.approx({"treatment": 0.8, "control": 0.2})
    messages = preview(store, config, "classic", n=3, run_id=plan.run_id)
    assert {m.arm for m in messages} == {"treatment"}
    assert all(m.body == "PLAIN " for m in messages)


# -- bad input ---------------------------------------------------------------------------


def _load(tmp_path: Path, **campaign: Any) -> None:
    pb = _playbook(tmp_path)
    pb["campaigns"]["ab"].update(campaign)
    (tmp_path / "segmint.yaml").write_text(
        yaml.safe_dump({"project": "t", "playbook": pb}, sort_keys=False), encoding="utf-8"
    )
    load_config(tmp_path / "segmint.yaml")


def _variants(*pairs: tuple[str, float], **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "share": s, **extra} for n, s in pairs]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"variants": _variants(("A", 0.5), ("B", 0.5))},
            r"campaigns\.ab\.variants: the shares \(0\.5 \+ 0\.5\) and the holdout \(0\.2\) "
            r"sum to 1\.2, not 1; make the variants' shares sum to 0\.8",
        ),
        (
            {"variants": _variants(("A", 0.4), ("control", 0.4))},
            r"variants\[1\]\.name: 'control' is the control arm's label",
        ),
        (
            {"variants": _variants(("A", 0.4), (" A ", 0.4))},
            r"variants\[1\]\.name: ' A ' is used twice",
        ),
        (
            {"variants": _variants(("A", 0.4), ("B", 0.4), template="storry")},
            r"variants\[0\]\.template: unknown template 'storry' \(did you mean 'story'\?\)",
        ),
        ({"variants": _variants(("A", 0.8), ("B", 0))}, r"share.*greater than 0"),
        ({"variants": []}, r"variants: empty"),
        (
            {"variants": _variants(("A", 0.5), ("B", 0.5)), "holdout": 0},
            r"variants need a control group \(holdout > 0\)",
        ),
        ({"variants": None, "control": "hold"}, r"a control label needs variants"),
        (
            {"variants": _variants(("A", 0.4), ("B", 0.4)), "control": "A"},
            r"'A' is the control arm's label",
        ),
    ],
)
def test_bad_variants_are_config_errors(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, **change)


def test_playbook_check_reports_a_bad_variant_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from segmint.cli import app

    with pytest.raises(ConfigError):
        _load(tmp_path, variants=_variants(("A", 0.5), ("B", 0.5)))
    result = CliRunner().invoke(app, ["playbook", "check", "-p", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "sum to 1.2, not 1" in " ".join(result.output.split())


def _project(tmp_path: Path, n: int = 300) -> Path:
    _store(str(tmp_path / "shop.duckdb"), n=n).close()
    pb = _playbook(tmp_path)
    (tmp_path / "segmint.yaml").write_text(
        yaml.safe_dump({"project": "t", "store": "shop.duckdb", "playbook": pb}), encoding="utf-8"
    )
    return tmp_path


def test_cli_plan_prints_the_arms(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from segmint.cli import app

    root = _project(tmp_path)
    result = CliRunner().invoke(app, ["campaign", "plan", "ab", "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data["n_by_arm"]) == list(SPLIT)
    assert sum(data["n_by_arm"].values()) == data["n_eligible"] == 300
    assert data["split"] == pytest.approx(SPLIT) and data["control"] == "control"
    text = CliRunner().invoke(app, ["campaign", "plan", "ab", "-p", str(root)])
    assert text.exit_code == 0, text.output
    assert "message A" in text.output and "45.0%" in text.output
    classic = CliRunner().invoke(app, ["campaign", "plan", "classic", "-p", str(root)])
    assert "arms by segment" in classic.output and "message A" not in classic.output


def test_export_audience_by_arm(tmp_path: Path) -> None:
    import segmint

    _project(tmp_path)
    with segmint.open_project(tmp_path) as p:
        plan = plan_campaign(p.store, p.config, "ab")
        treated = p.export_audience("ab", tmp_path / "treated.csv")
        one = p.export_audience("ab", tmp_path / "b.csv", arm="message B")
        held = p.export_audience("ab", tmp_path / "control.csv", arm="control")
        with pytest.raises(ConfigError, match=r"arm 'message C': did you mean 'message B'\?"):
            p.export_audience("ab", tmp_path / "c.csv", arm="message C")
    assert treated.n_rows == plan.n_treatment
    assert one.n_rows == plan.n_by_arm["message B"]
    assert held.n_rows == plan.n_control
    frame = pd.read_csv(tmp_path / "treated.csv", encoding="utf-8-sig", dtype=str)
    assert set(frame["arm"]) == {"message A", "message B"}


def test_the_docs_example_loads() -> None:
    """The YAML of docs/campaigns.md's Variants section is a valid campaign."""
    from segmint.campaigns import Playbook

    doc = (Path(__file__).parents[2] / "docs" / "campaigns.md").read_text(encoding="utf-8")
    section = doc.split("## Variants (A/B/n)", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    pb = yaml.safe_load(block)["playbook"]
    pb["templates"] = {t: {"subject": "s", "body": "b"} for t in ("winback", "winback_story")}
    pb["strategies"] = {"rfm": {"*": {"template": "winback", "channels": []}}}
    campaign = Playbook.model_validate(pb).campaigns["winback_ab"]
    assert campaign.arms(0.1) == {"message A": 0.4, "message B": 0.4, "holdout group": 0.2}


def test_a_new_control_label_after_plans_is_refused(
    shop: tuple[Store, Any], tmp_path: Path
) -> None:
    """Earlier control users keep the arm 'control': under another label they would be
    sent to, so the plan stops."""
    store, config = shop
    plan_campaign(store, config, "ab")
    pb = _playbook(tmp_path)
    pb["campaigns"]["ab"]["control"] = "holdout group"
    with pytest.raises(ConfigError, match=r"earlier plans named the control arm 'control'"):
        plan_campaign(store, tiny_config(pb, root=tmp_path), "ab")


def test_postgres_assigns_and_sends_the_same_arms(tmp_path: Path, pg_url: str) -> None:
    """The arm SQL and the delivery filters on PostgreSQL give DuckDB's arms."""
    duck = _store(str(tmp_path / "d.duckdb"), n=500)
    pg = _store(pg_url, n=500)
    config = tiny_config(_playbook(tmp_path), root=tmp_path)
    try:
        arms = [_arms(s, plan_campaign(s, config, "ab").run_id) for s in (duck, pg)]
        pd.testing.assert_series_equal(arms[0], arms[1])
        report = send_campaign(pg, config, "ab")
        assert report.sent == int((arms[1] != "control").sum())
        params = pg.scalar("SELECT params FROM campaign_runs")
        assert design_from_params(params).split == pytest.approx(SPLIT)
    finally:
        duck.close()
        pg.close()


def test_a_planned_ab_n_campaign_is_evaluated_arm_by_arm(
    shop: tuple[Store, Any], tmp_path: Path
) -> None:
    """Plan, send, buy, evaluate: the evaluation reads the arms from the run's design."""
    from segmint.experiments import evaluate_campaign

    store, config = shop
    plan = plan_campaign(store, config, "ab")
    send_campaign(store, config, "ab")
    arms = _arms(store, plan.run_id)
    rng = np.random.default_rng(1)
    rate = arms.map({"message A": 0.3, "message B": 0.2, "control": 0.1}).to_numpy(float)
    buyers = arms.index[rng.random(len(arms)) < rate]
    ts = "CAST(now() + INTERVAL '1 hour' AS TIMESTAMPTZ)"
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(f"('o{i}', '{u}', {ts}, 20.0, 'completed')" for i, u in enumerate(buyers))
    )
    ev = evaluate_campaign(store, "ab", config=config, n_resamples=200, uplift=False)
    assert ev.control == "control" and ev.treatments == ("message A", "message B")
    assert ev.srm.df == 2 and not ev.srm.flagged
    conv = ev.effects[ev.effects["metric"] == "conversion"].set_index("arm")
    assert conv.loc["message A", "diff"] == pytest.approx(
        (arms.loc[buyers] == "message A").sum() / (arms == "message A").sum()
        - (arms.loc[buyers] == "control").sum() / (arms == "control").sum()
    )
    assert conv.loc["message A", "p_holm"] <= 0.05 and "any treatment" in conv.index
