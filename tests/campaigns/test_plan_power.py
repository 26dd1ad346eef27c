"""Plan-time power: the planned split's conversion MDE on the audience's recent conversion
rate, and the warnings for a control group too small to measure anything."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from scipy.stats import norm

from segmint.campaigns import load_audience, plan_campaign
from segmint.campaigns._plan_power import plan_power
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, build_tiny_store, tiny_config

TODAY = date(2026, 11, 27)


def _orders(store: Store) -> None:
    rows = [
        ("o1", "u01", "2026-11-20 12:00:00", "completed"),  # in the 30 days before TODAY
        ("o2", "u02", "2026-10-28 00:00:00", "completed"),  # first second of the window
        ("o3", "u07", "2026-10-27 23:59:59", "completed"),  # one second too early
        ("o4", "u10", "2026-11-26 00:00:00", "refunded"),  # not a conversion
        ("o5", "u10", "2026-11-27 00:00:00", "completed"),  # on the plan date: after
    ]
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('{o}', '{u}', CAST('{t}+00' AS TIMESTAMPTZ), 10, '{s}')" for o, u, t, s in rows
        )
    )


def test_plan_mde_is_the_hand_computed_normal_approximation(tmp_path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    _orders(store)
    plan = plan_campaign(
        store, tiny_config(dict(TINY_PLAYBOOK, holdout=0.5)), "gold_once", as_of=TODAY
    )
    aud = load_audience(store, plan.run_id).drop_duplicates("user_id")
    assert sorted(aud["user_id"]) == ["u01", "u02", "u07", "u10"]
    assert plan.baseline == pytest.approx(2 / 4)  # u01, u02
    n1, n0 = plan.n_treatment, plan.n_control
    assert n1 + n0 == 4 and n0 >= 1 and n1 >= 1
    z = norm.ppf(0.975) + norm.ppf(0.8)
    assert plan.mde["treatment"] == pytest.approx(z * np.sqrt(0.25 * (1 / n1 + 1 / n0)), rel=1e-12)
    # four users: the control is far too small, and the MDE is larger than the baseline
    assert any(f"only {n0} users" in w for w in plan.warnings)
    assert any("smallest detectable change" in w for w in plan.warnings)
    d = plan.to_dict()
    assert d["baseline"] == pytest.approx(0.5) and d["warnings"] == list(plan.warnings)
    store.close()


def test_data_ending_before_the_plan_date_gives_its_own_last_30_days(tmp_path) -> None:
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    _orders(store)
    config = tiny_config(dict(TINY_PLAYBOOK, holdout=0.5))
    plan = plan_campaign(store, config, "gold_once", as_of=date(2027, 6, 1))
    # the newest completed order is o5 (2026-11-27 00:00): the window is the 30 days up to
    # and including it, so u10's o5 and u01's o1 count, u02's o2 falls one microsecond out
    assert plan.baseline == pytest.approx(2 / 4)
    store.close()


def test_no_holdout_and_no_recent_buyer_are_warned(tiny: Store) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_once", as_of=TODAY)  # holdout 0
    assert plan.n_control == 0
    assert any("no control group" in w for w in plan.warnings)
    assert any("no planned user converted" in w for w in plan.warnings)
    assert plan.baseline == 0.0 and all(v is None for v in plan.mde.values())


def test_a_large_control_is_not_warned(tmp_path) -> None:
    """5,000 planned users half of them recent buyers, a 50 % holdout: MDE ~2.8 points."""
    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    plan = plan_campaign(
        store, tiny_config(dict(TINY_PLAYBOOK, holdout=0.5)), "gold_once", as_of=TODAY
    )
    users = [f"x{i}" for i in range(5000)]
    store.execute("INSERT INTO users (user_id) VALUES " + ", ".join(f"('{u}')" for u in users))
    store.execute(
        "INSERT INTO campaign_audiences (run_id, campaign, user_id, segment, channel, step, arm, "
        "idempotency_key) VALUES "
        + ", ".join(
            f"('{plan.run_id}', 'gold_once', '{u}', 'gold', 'email', '1', "
            f"'{'control' if i % 2 else 'treatment'}', 'k{u}')"
            for i, u in enumerate(users)
        )
    )
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('o{u}', '{u}', CAST('2026-11-20 00:00:00+00' AS TIMESTAMPTZ), 5, 'completed')"
            for u in users[::2]
        )
    )
    p = plan_power(store, plan.run_id)
    n0 = 2500 + plan.n_control
    n1 = 2500 + plan.n_treatment
    assert p["baseline"] == pytest.approx(2500 / 5004)
    z = norm.ppf(0.975) + norm.ppf(0.8)
    b = 2500 / 5004
    assert p["mde"]["treatment"] == pytest.approx(z * np.sqrt(b * (1 - b) * (1 / n1 + 1 / n0)))
    assert p["warnings"] == ()
    store.close()


def test_the_cli_prints_the_mde_and_the_warning(tmp_path, capsys) -> None:
    from segmint.cli.campaigns import print_plan

    store = build_tiny_store(str(tmp_path / "t.duckdb"))
    _orders(store)
    plan = plan_campaign(
        store, tiny_config(dict(TINY_PLAYBOOK, holdout=0.5)), "gold_once", as_of=TODAY
    )
    print_plan(plan)
    out = capsys.readouterr().out
    assert "detectable change in conversion (treatment vs control" in out
    assert "50.00% baseline" in out and "warning:" in out and "only" in out
    store.close()
