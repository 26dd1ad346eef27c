"""Campaign evaluation end to end: hand-made stores with answers computed by hand, the demo's
planted randomized campaign against its known truth, imports, the CLI, PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from typer.testing import CliRunner

import segmint
from segmint.errors import ConfigError, NotFoundError
from segmint.experiments._evaluate import (
    evaluate_campaign,
    import_assignments,
    latest_evaluations,
    save_evaluation,
)
from segmint.store import Store, open_store

# -- a hand-made store --------------------------------------------------------------------
# 6 treated (t1..t6) and 4 control (c1..c4) users, sent 2026-06-01 10:00 UTC, 10-day window.
T0 = "2026-06-01 10:00:00+00"
ORDERS = [
    # order_id, user, ts (UTC), amount, status
    ("o1", "t1", "2026-06-01 10:00:00", 100.0, "completed"),  # at t0: in the window
    ("o2", "t1", "2026-06-05 00:00:00", 50.0, "completed"),  # in the window
    ("o3", "t2", "2026-06-11 09:59:59", 30.0, "completed"),  # last second of the window
    ("o4", "t3", "2026-06-11 10:00:00", 999.0, "completed"),  # window end: excluded
    ("o5", "t4", "2026-06-02 00:00:00", 80.0, "refunded"),  # not a purchase
    ("o6", "t5", "2026-05-31 00:00:00", 40.0, "completed"),  # pre-period
    ("o7", "c1", "2026-06-03 00:00:00", 20.0, "completed"),  # control converts
    ("o8", "c2", "2026-06-01 09:59:59", 60.0, "completed"),  # pre-period (1 s before t0)
    ("o9", "c2", "2026-01-01 00:00:00", 70.0, "completed"),  # before the 90-day pre-period
]
EVENTS = [
    ("e1", "t6", "page_view", "2026-06-02 00:00:00"),  # a visit
    ("e2", "t6", "email_open", "2026-06-02 00:00:00"),  # a reaction to the message
    ("e3", "c3", "app_open", "2026-06-04 00:00:00"),  # a visit
    ("e4", "c4", "like", "2026-06-04 00:00:00"),  # activity, not a visit
]


def build_store(url: str) -> Store:
    store = open_store(url)
    users = [f"t{i}" for i in range(1, 7)] + [f"c{i}" for i in range(1, 5)]
    store.execute(
        "INSERT INTO users (user_id, created_at) VALUES "
        + ", ".join(f"('{u}', CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ))" for u in users)
    )
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('{o}', '{u}', CAST('{t}+00' AS TIMESTAMPTZ), {a}, '{s}')" for o, u, t, a, s in ORDERS
        )
    )
    store.execute(
        "INSERT INTO events (event_id, user_id, event, ts) VALUES "
        + ", ".join(
            f"('{e}', '{u}', '{n}', CAST('{t}+00' AS TIMESTAMPTZ))" for e, u, n, t in EVENTS
        )
    )
    return store


def assignments(users: list[str] | None = None) -> pd.DataFrame:
    users = users or [f"t{i}" for i in range(1, 7)] + [f"c{i}" for i in range(1, 5)]
    return pd.DataFrame(
        {
            "user_id": users,
            "arm": ["treatment" if u.startswith("t") else "control" for u in users],
            "sent_at": pd.Timestamp(T0),
        }
    )


@pytest.fixture()
def hand(tmp_path: Path) -> Iterator[Store]:
    store = build_store(str(tmp_path / "hand.duckdb"))
    import_assignments(store, "spring", assignments(), control_share=0.4)
    yield store
    store.close()


def check_hand_outcomes(store: Store) -> None:
    ev = evaluate_campaign(store, "spring", window_days=10, uplift=False, n_resamples=200)
    u = ev.users.set_index("user_id")
    assert u["converted"].to_dict() == {
        "t1": True, "t2": True, "t3": False, "t4": False, "t5": False, "t6": False,
        "c1": True, "c2": False, "c3": False, "c4": False,
    }  # fmt: skip
    assert u.loc["t1", "revenue"] == 150.0 and u.loc["t1", "orders"] == 2
    assert u.loc["t2", "revenue"] == 30.0
    assert u.loc["t5", "pre_revenue"] == 40.0
    assert u.loc["c2", "pre_revenue"] == 60.0  # o9 is older than the 90-day pre-period
    assert u["visited"].to_dict()["t6"] and u["visited"].to_dict()["c3"]
    assert not u.loc["c4", "visited"] and u.loc["c4", "events"] == 1
    assert u.loc["t6", "events"] == 1  # the e-mail open is not "activity"
    conv = ev.effect("conversion")
    assert conv["treatment"] == pytest.approx(2 / 6) and conv["control"] == pytest.approx(1 / 4)
    rev = ev.effect("revenue_per_user", "welch")
    t = np.array([150, 30, 0, 0, 0, 0.0])
    c = np.array([20, 0, 0, 0.0])
    ref = scipy.stats.ttest_ind(t, c, equal_var=False)
    assert rev["diff"] == pytest.approx(t.mean() - c.mean(), abs=1e-12)
    assert rev["p_value"] == pytest.approx(ref.pvalue, abs=1e-9)
    lo, hi = ref.confidence_interval(0.95)
    assert (rev["diff_lo"], rev["diff_hi"]) == pytest.approx((lo, hi), abs=1e-9)
    arms = ev.arms.set_index("arm")
    assert arms.loc["treatment", "users"] == 6 and arms.loc["control", "converters"] == 1
    assert not ev.srm.flagged


def test_outcomes_by_hand(hand: Store) -> None:
    check_hand_outcomes(hand)


def test_outcomes_by_hand_on_postgresql(pg_url: str) -> None:
    store = build_store(pg_url)
    try:
        import_assignments(store, "spring", assignments(), control_share=0.4)
        check_hand_outcomes(store)
    finally:
        store.close()


def test_incomplete_window_is_flagged(hand: Store) -> None:
    ev = evaluate_campaign(hand, "spring", window_days=30, uplift=False, n_resamples=50)
    assert not ev.complete
    assert ev.observed_days == pytest.approx(10.0)  # the newest row is o4 at 06-11 10:00
    assert any("not complete" in w for w in ev.warnings)
    assert evaluate_campaign(hand, "spring", window_days=9, uplift=False).complete


def test_import_is_idempotent_and_counts_rejects(tmp_path: Path) -> None:
    store = build_store(str(tmp_path / "s.duckdb"))
    frame = pd.concat(
        [
            assignments(),
            pd.DataFrame(
                {
                    "user_id": ["nobody", "t1", "c9"],
                    "arm": ["treatment", "treatment", "maybe"],
                    "sent_at": [pd.Timestamp(T0)] * 3,
                }
            ),
        ],
        ignore_index=True,
    )
    split = {"treatment": 0.6, "control": 0.4}  # every arm named: others are bad rows
    a = import_assignments(store, "spring", frame, split=split)
    b = import_assignments(store, "spring", frame, split=split)
    assert a == b
    assert a["read"] == 13 and a["imported"] == 10
    assert a["rejected_bad_rows"] == 2  # the duplicate t1 and the arm 'maybe'
    assert a["rejected_unknown_users"] == 1
    assert a["read"] == a["imported"] + a["rejected_bad_rows"] + a["rejected_unknown_users"]
    assert store.scalar("SELECT count(*) FROM campaign_assignments") == 10
    assert store.scalar("SELECT count(*) FROM campaign_runs") == 1
    with pytest.raises(ConfigError, match="missing: sent_at"):
        import_assignments(store, "x", frame.drop(columns="sent_at"), control_share=0.4)
    with pytest.raises(ConfigError, match="control_share"):
        import_assignments(store, "x", frame, control_share=1.5)
    with pytest.raises(NotFoundError, match="no assignments"):
        evaluate_campaign(store, "nope")
    store.close()


def mismatched_store(url: str) -> Store:
    """The hand-made store with 600 extra treated users and no extra control, imported as
    a designed 50/50 split: a broken assignment."""
    store = build_store(url)
    extra = [f"x{i}" for i in range(600)]
    store.execute("INSERT INTO users (user_id) VALUES " + ", ".join(f"('{u}')" for u in extra))
    frame = pd.concat(
        [assignments(), pd.DataFrame({"user_id": extra, "arm": "treatment", "sent_at": T0})]
    )
    import_assignments(store, "spring", frame, control_share=0.5)
    return store


def test_sample_ratio_mismatch_is_flagged(tmp_path: Path) -> None:
    store = mismatched_store(str(tmp_path / "s.duckdb"))
    ev = evaluate_campaign(store, "spring", window_days=10, uplift=False, n_resamples=50)
    assert ev.srm.flagged and ev.srm.p < 1e-6
    assert any(w.startswith("SAMPLE RATIO MISMATCH") for w in ev.warnings)
    store.close()


def test_planned_campaign_uses_first_delivery_and_plan_segments(tmp_path: Path) -> None:
    """A segmint-planned run: t0 is the run's first delivery, segments come from the plan."""
    store = build_store(str(tmp_path / "s.duckdb"))
    users = [f"t{i}" for i in range(1, 7)] + [f"c{i}" for i in range(1, 5)]
    store.execute(
        "INSERT INTO campaign_runs (run_id, campaign, created_at, as_of, segmentation, "
        "segment_run_id, status, n_eligible, n_treatment, n_control, params) VALUES "
        "('c-1', 'plan', CAST('2026-05-20 00:00:00+00' AS TIMESTAMPTZ), "
        "CAST('2026-05-20' AS DATE), 'life', 's-1', 'completed', 10, 6, 4, "
        """CAST('{"holdout": 0.4}' AS JSON))"""
    )
    for u in users:
        arm = "treatment" if u.startswith("t") else "control"
        seg = "gold" if u in ("t1", "t2", "c1") else "silver"
        store.execute(
            "INSERT INTO campaign_assignments (campaign, user_id, arm, bucket, assigned_at, "
            f"run_id) VALUES ('plan', '{u}', '{arm}', 0.5, "
            "CAST('2026-05-20 00:00:00+00' AS TIMESTAMPTZ), 'c-1')"
        )
        store.execute(
            "INSERT INTO campaign_audiences (run_id, campaign, user_id, segment, channel, step, "
            f"arm, idempotency_key) VALUES ('c-1', 'plan', '{u}', '{seg}', 'email', 'main', "
            f"'{arm}', 'plan|{u}|main')"
        )
        if arm == "treatment":
            store.execute(
                "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, "
                "channel, status, attempts, ambiguous, created_at, sent_at) VALUES "
                f"('plan|{u}|main', 'plan', 'c-1', '{u}', 'main', 'email', 'sent', 1, FALSE, "
                f"CAST('{T0}' AS TIMESTAMPTZ), CAST('{T0}' AS TIMESTAMPTZ))"
            )
    from segmint.config import Config

    config = Config.model_validate(
        {
            "playbook": {
                "channels": {
                    "email": {"type": "email", "from": "s@x.org", "cost_per_message": 0.5}
                },
                "templates": {"hi": {"subject": "hi", "body": "hi"}},
                "strategies": {
                    "life": {
                        "gold": {
                            "template": "hi",
                            "offer": {"type": "free_shipping", "cost_per_redemption": 5.0},
                        },
                        "silver": {"template": "hi"},
                    }
                },
            }
        }
    )
    ev = evaluate_campaign(
        store, "plan", config=config, window_days=10, uplift=False, n_resamples=200
    )
    assert ev.start == pd.Timestamp(T0).to_pydatetime()  # the first send, not the plan
    assert ev.segmentation == "life"
    seg = ev.segments.set_index("segment")
    assert seg.loc["gold", "n_treatment"] == 2 and seg.loc["gold", "n_control"] == 1
    assert seg.loc["gold", "conversion_treatment"] == 1.0  # t1 and t2 converted
    # both segments have no variance in one pooled arm: no test, and no adjusted p either
    assert seg["p_value"].isna().all() and seg["p_holm"].isna().all()
    roi = ev.roi.set_index("item")["value"]
    # 6 messages at 0.5 + 2 gold converters (t1, t2) at 5.0 each
    assert roi["cost"] == pytest.approx(6 * 0.5 + 2 * 5.0)
    assert roi["incremental_revenue"] == pytest.approx(6 * (180 / 6 - 20 / 4))
    assert roi["net"] == pytest.approx(roi["incremental_revenue"] - roi["cost"])
    store.close()


def test_saved_evaluations_round_trip(hand: Store) -> None:
    ev = evaluate_campaign(hand, "spring", window_days=10, uplift=False, n_resamples=50)
    save_evaluation(hand, ev)
    save_evaluation(hand, ev)
    (latest,) = latest_evaluations(hand)
    assert latest["campaign"] == "spring"
    assert latest["effects"][0]["metric"] == "conversion"
    assert json.dumps(latest)  # plain JSON


# -- the demo's planted randomized campaign -------------------------------------------------
CAMPAIGN = "spring_reactivation_2026"


@pytest.fixture()
def planted(demo_shop: Path, tmp_path: Path) -> Path:
    """A private copy of the demo shop (its store included)."""
    import shutil

    root = tmp_path / "shop"
    shutil.copytree(demo_shop, root, ignore=shutil.ignore_patterns("exports"))
    return root


def test_planted_campaign_ci_covers_the_truth(planted: Path) -> None:
    truth = json.loads((planted / "truth" / "truth.json").read_text())["campaign"]
    with segmint.open_project(planted) as p:
        out = p.import_campaign(
            CAMPAIGN,
            f"campaigns/{CAMPAIGN}.csv",
            control_share=truth["control_share"],
            columns={"user_id": "customer_id"},
            cost_per_message=0.05,
        )
        assert out["imported"] == truth["overall"]["n_eligible"]
        ev = p.evaluate(
            CAMPAIGN, window_days=truth["window_days"], segmentation="lifecycle", seed=1
        )
    overall = truth["overall"]
    conv = ev.effect("conversion")
    assert conv["diff_lo"] <= overall["conversion_lift"] <= conv["diff_hi"]
    for method in ("welch", "bootstrap", "cuped"):
        r = ev.effect("revenue_per_user", method)
        assert r["diff_lo"] <= overall["incremental_revenue_per_treated_user"] <= r["diff_hi"]
    assert ev.complete and not ev.srm.flagged
    arms = ev.arms.set_index("arm")["users"]
    assert arms["treatment"] == overall["n_treatment"] and arms["control"] == overall["n_control"]
    assert ev.cuped.variance_reduction > 0.05
    assert ev.effect("revenue_per_user", "cuped")["diff_hi"] - ev.effect(
        "revenue_per_user", "cuped"
    )["diff_lo"] < (
        ev.effect("revenue_per_user", "welch")["diff_hi"]
        - ev.effect("revenue_per_user", "welch")["diff_lo"]
    )
    # pre-period balance: randomization leaves no difference before the send
    assert ev.effect("pre_revenue_per_user (balance)")["p_value"] > 0.01
    assert set(ev.segments["segment"]) <= {"new", "active", "silent", "churned"}
    assert ev.uplift is not None and len(ev.uplift.qini) > 10
    assert np.isfinite(ev.uplift.qini_coefficient)


def test_cli_evaluate_and_import(planted: Path, tmp_path: Path) -> None:
    from segmint.cli import app

    runner = CliRunner()
    r = runner.invoke(
        app,
        ["campaign", "import", "past", f"campaigns/{CAMPAIGN}.csv", "--control-share", "0.2",
         "--user-column", "customer_id", "-p", str(planted), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"] > 0
    r = runner.invoke(app, ["evaluate", "past", "--no-uplift", "-p", str(planted)])
    assert r.exit_code == 0, r.output
    assert "conversion" in r.stdout and "sample ratio" in r.stdout
    r = runner.invoke(app, ["evaluate", "past", "--no-uplift", "-p", str(planted), "--json"])
    data = json.loads(r.stdout)
    assert {e["metric"] for e in data["effects"]} >= {"conversion", "revenue_per_user"}
    r = runner.invoke(app, ["evaluate", "nope", "-p", str(planted)])
    assert r.exit_code == 2 and "no assignments" in r.output
    r = runner.invoke(
        app,
        ["campaign", "import", "bad", f"campaigns/{CAMPAIGN}.csv", "--control-share", "0.2",
         "-p", str(planted)],
    )  # fmt: skip
    assert r.exit_code == 2 and "customer_id" in r.output  # did you mean


def test_cli_exits_4_on_sample_ratio_mismatch(tmp_path: Path) -> None:
    from segmint.cli import app

    root = tmp_path / "p"
    root.mkdir()
    (root / "segmint.yaml").write_text("project: p\nstore: s.duckdb\n", encoding="utf-8")
    store = mismatched_store(str(root / "s.duckdb"))
    store.close()
    r = CliRunner().invoke(app, ["evaluate", "spring", "--no-uplift", "-p", str(root)])
    assert r.exit_code == 4, r.output
    assert "SAMPLE RATIO MISMATCH" in r.stdout


def test_a_campaign_without_outcome_data_yet(tmp_path: Path) -> None:
    """Sent after the newest data: only the design checks are shown, no effect is drawn."""
    from segmint.cli import app
    from segmint.report import build_report

    root = tmp_path / "p"
    root.mkdir()
    (root / "segmint.yaml").write_text(
        "project: p\nstore: s.duckdb\nsegmentations:\n  life: {type: lifecycle}\n",
        encoding="utf-8",
    )
    store = build_store(str(root / "s.duckdb"))
    late = assignments().assign(sent_at=pd.Timestamp("2026-07-01 00:00:00+00"))
    import_assignments(store, "later", late, control_share=0.4)
    store.close()
    r = CliRunner().invoke(
        app, ["evaluate", "later", "--no-uplift", "--segmentation", "life", "-p", str(root)]
    )
    assert r.exit_code == 0, r.output
    assert "no outcome data after the send yet" in r.stdout
    assert "effect of the campaign" not in r.stdout
    with segmint.open_project(root) as p:
        res = build_report(p)
    html = res.path.read_text(encoding="utf-8")
    section = html[html.index('<section id="campaigns"') :]
    section = section[: section.index("</section>")]
    assert "not complete" in section
    assert "plotly-graph-div" not in section  # no forest, not even by segment
    assert "pre_revenue_per_user (balance)" in section and "incremental revenue" not in section
