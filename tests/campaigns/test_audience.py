"""Audience building on a hand-made store whose funnel can be counted by hand."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from segmint.campaigns import (
    REASONS,
    holdout_bucket,
    load_audience,
    plan_campaign,
)
from segmint.store import Store, open_store

from .conftest import TINY_PLAYBOOK, build_tiny_store, tiny_config

TODAY = date(2026, 11, 27)


def _excluded(plan) -> dict[str, int]:
    f = plan.funnel.set_index("step")["excluded"]
    return {k: int(v) for k, v in f.items() if k in REASONS and v}


def _treated(store: Store, plan) -> list[str]:
    return sorted(load_audience(store, plan.run_id, "treatment")["user_id"])


def test_funnel_counts_each_exclusion_under_its_first_reason(tiny: Store) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_once", as_of=TODAY)
    assert _excluded(plan) == {
        "unsubscribed": 1,  # u05
        "no consent for the channel and purpose": 2,  # u04 withdrawn, u08 never asked
        "suppressed": 1,  # u06
        "frequency cap reached": 1,  # u09: two sends by another campaign this week
        "no usable address": 1,  # u03
    }
    assert plan.funnel["remaining"].iloc[0] == 10
    assert plan.n_treatment == 4 and plan.n_control == 0
    # u07 denied at sign-up, granted later: the latest consent row wins
    assert _treated(tiny, plan) == ["u01", "u02", "u07", "u10"]


def test_funnel_remaining_is_consistent(tiny: Store) -> None:
    f = plan_campaign(tiny, tiny_config(), "gold_once", as_of=TODAY).funnel
    assert (f["remaining"].shift(1).fillna(10) - f["excluded"] == f["remaining"]).all()


def test_lifecycle_transition_keeps_only_new_entrants(tiny: Store) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_new", as_of=TODAY)
    assert _excluded(plan)["already in the segment at the previous run"] == 1  # u10
    assert _treated(tiny, plan) == ["u01", "u02", "u07"]
    steps = set(load_audience(tiny, plan.run_id)["step"])
    assert steps == {"s-2-life"}  # one message per user and run


@pytest.mark.parametrize(
    ("as_of", "expected", "steps"),
    [
        (date(2026, 11, 27), ["u01"], {"birthday-2026"}),
        # across new year: 31 Dec this year, 2 Jan next year (u09 is capped)
        (date(2026, 12, 28), ["u02"], {"birthday-2027"}),
    ],
)
def test_birthday_window_wraps_the_year(
    tiny: Store, as_of: date, expected: list[str], steps: set[str]
) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_birthday", as_of=as_of)
    assert _treated(tiny, plan) == expected
    assert set(load_audience(tiny, plan.run_id)["step"]) == steps


def test_birthday_window_year_wrap_counts_triggered(tiny: Store) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_birthday", as_of=date(2026, 12, 28))
    # triggered: u02 (2 Jan) and u09 (31 Dec); u09 then hits the frequency cap
    assert _excluded(plan)["not triggered"] == 8
    assert _excluded(plan)["frequency cap reached"] == 1


def test_29_february_birthdays_count_on_28_february(tiny: Store) -> None:
    plan = plan_campaign(tiny, tiny_config(), "gold_birthday", as_of=date(2027, 2, 25))
    # 25 Feb - 4 Mar 2027: u06 (29 Feb, suppressed) and u04 (3 Mar, no consent)
    assert _excluded(plan) == {
        "not triggered": 8,
        "no consent for the channel and purpose": 1,
        "suppressed": 1,
    }


def test_holdout_is_stable_and_matches_python(tmp_path) -> None:
    store = build_tiny_store(str(tmp_path / "h.duckdb"))
    pb = dict(TINY_PLAYBOOK, holdout=0.5)
    first = plan_campaign(store, tiny_config(pb), "gold_once", as_of=TODAY)
    again = plan_campaign(store, tiny_config(pb), "gold_once", as_of=TODAY)
    a = load_audience(store, first.run_id).set_index("user_id")["arm"]
    b = load_audience(store, again.run_id).set_index("user_id")["arm"]
    assert a.to_dict() == b.to_dict()
    expected = {
        u: "control" if holdout_bucket("gold_once", u) < 0.5 else "treatment" for u in a.index
    }
    assert a.to_dict() == expected
    buckets = store.query("SELECT user_id, bucket FROM campaign_assignments ORDER BY user_id")
    for u, v in zip(buckets["user_id"], buckets["bucket"], strict=True):
        assert v == pytest.approx(holdout_bucket("gold_once", u), abs=1e-12)
    store.close()


def test_stored_arm_survives_a_change_of_holdout(tmp_path) -> None:
    store = build_tiny_store(str(tmp_path / "h.duckdb"))
    first = plan_campaign(store, tiny_config(dict(TINY_PLAYBOOK, holdout=0.5)), "gold_once")
    later = plan_campaign(store, tiny_config(dict(TINY_PLAYBOOK, holdout=0.0)), "gold_once")
    a = load_audience(store, first.run_id).set_index("user_id")["arm"]
    b = load_audience(store, later.run_id).set_index("user_id")["arm"]
    assert a.to_dict() == b.to_dict()
    store.close()


def test_holdout_share_is_close_to_the_setting() -> None:
    buckets = pd.Series([holdout_bucket("c", f"user{i}") for i in range(20_000)])
    assert abs((buckets < 0.1).mean() - 0.1) < 0.01
    assert buckets.min() >= 0 and buckets.max() < 1


def test_plan_is_stored_with_its_funnel(tiny: Store) -> None:
    from segmint.campaigns import latest_plan

    plan = plan_campaign(tiny, tiny_config(), "gold_once", as_of=TODAY)
    loaded = latest_plan(tiny, "gold_once")
    assert loaded is not None and loaded.run_id == plan.run_id
    assert loaded.funnel.equals(plan.funnel)
    assert loaded.n_treatment == 4


@pytest.mark.postgres
def test_same_audience_on_postgresql(pg_url: str, tmp_path) -> None:
    duck = build_tiny_store(str(tmp_path / "d.duckdb"))
    pg = build_tiny_store(pg_url)
    try:
        pb = dict(TINY_PLAYBOOK, holdout=0.3)
        for name, as_of in (
            ("gold_once", TODAY),
            ("gold_new", TODAY),
            ("gold_birthday", date(2026, 12, 28)),
        ):
            a = plan_campaign(duck, tiny_config(pb), name, as_of=as_of)
            b = plan_campaign(pg, tiny_config(pb), name, as_of=as_of)
            assert a.funnel.equals(b.funnel), name
            cols = ["user_id", "segment", "channel", "step", "arm", "idempotency_key"]
            assert load_audience(duck, a.run_id)[cols].equals(load_audience(pg, b.run_id)[cols])
    finally:
        duck.close()
        pg.close()


def test_reopened_store_keeps_plans(tmp_path) -> None:
    path = str(tmp_path / "r.duckdb")
    store = build_tiny_store(path)
    plan = plan_campaign(store, tiny_config(), "gold_once", as_of=TODAY)
    store.close()
    with open_store(path) as again:
        assert len(load_audience(again, plan.run_id)) == 4
