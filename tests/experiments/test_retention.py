"""Cohort retention, repeat purchases, retention by segment and before/after (+ DiD).

The hand-made shop (as of 2024-04-15 00:00 UTC; months are UTC calendar months):

====  ==========  ==================================================================
user  signed up   completed orders (UTC)
====  ==========  ==================================================================
a     2024-01-05  01-10, 02-29 23:59:59 (Feb, not Mar), 04-01 00:00 (Apr)
b     2024-01-20  2024-01-31 23:30 -05:00 = 02-01 04:30 UTC (Feb, not Jan), 03-15;
                  a refunded order 02-10 (never counts)
c     2024-01-25  02-01 00:00, 02-15 (same month: active once), 03-31 23:59:59 (Mar)
d     2024-02-10  only a cancelled order: not a buyer
e     2024-03-01  2024-04-01 00:30 +02:00 = 03-31 22:30 UTC (Mar), 05-02 (after as_of)
====  ==========  ==================================================================

First-purchase cohorts: Jan {a}, Feb {b, c}, Mar {e}. April is running at as_of: its
cells are flagged incomplete; May has not started: no cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

import segmint
from segmint.errors import ConfigError, NotFoundError
from segmint.experiments._retention import (
    before_after,
    repeat_purchase_rate,
    retention_by_segment,
    retention_matrix,
)
from segmint.store import Store, completed_orders, open_store

AS_OF = datetime(2024, 4, 15, tzinfo=UTC)
JAN, FEB, MAR, APR = (date(2024, m, 1) for m in (1, 2, 3, 4))

SHOP_SQL = """
INSERT INTO users (user_id, created_at) VALUES
    ('a', '2024-01-05 10:00:00+00'),
    ('b', '2024-01-20 10:00:00+00'),
    ('c', '2024-01-25 10:00:00+00'),
    ('d', '2024-02-10 10:00:00+00'),
    ('e', '2024-03-01 10:00:00+00');
INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES
    ('a1', 'a', '2024-01-10 12:00:00+00', 10.0, 'completed'),
    ('a2', 'a', '2024-02-29 23:59:59+00', 10.0, 'completed'),
    ('a3', 'a', '2024-04-01 00:00:00+00', 10.0, 'completed'),
    ('b1', 'b', '2024-01-31 23:30:00-05:00', 10.0, 'completed'),
    ('b2', 'b', '2024-02-10 12:00:00+00', 10.0, 'refunded'),
    ('b3', 'b', '2024-03-15 12:00:00+00', 10.0, 'completed'),
    ('c1', 'c', '2024-02-01 00:00:00+00', 10.0, 'completed'),
    ('c2', 'c', '2024-02-15 12:00:00+00', 10.0, 'completed'),
    ('c3', 'c', '2024-03-31 23:59:59+00', 10.0, 'completed'),
    ('d1', 'd', '2024-02-12 12:00:00+00', 10.0, 'cancelled'),
    ('e1', 'e', '2024-04-01 00:30:00+02:00', 10.0, 'completed'),
    ('e2', 'e', '2024-05-02 12:00:00+00', 10.0, 'completed');
INSERT INTO events (event_id, user_id, event, ts) VALUES
    ('v1', 'd', 'page_view', '2024-02-20 12:00:00+00'),
    ('v2', 'd', 'page_view', '2024-03-03 12:00:00+00'),
    ('v3', 'a', 'page_view', '2024-03-10 12:00:00+00'),
    ('v4', 'a', 'page_view', '2024-04-20 12:00:00+00');
"""

RUN_SQL = """
INSERT INTO segment_runs (run_id, segmentation, method, created_at, as_of, n_users) VALUES
    ('r1', 'toy', 'rules', '2024-02-01 00:00:00+00', '2024-02-01 00:00:00+00', 5);
INSERT INTO segment_assignments (run_id, user_id, segment) VALUES
    ('r1', 'a', 'x'), ('r1', 'b', 'x'), ('r1', 'c', 'y'), ('r1', 'd', 'y'), ('r1', 'e', 'y');
"""


def fill(store: Store, sql: str, *, runs: str | None = None) -> Store:
    """Insert a hand-made data set (and segment runs) into an empty store."""
    with store.transaction():
        store.execute(sql)
    if runs is not None:
        with store.transaction():
            store.execute(runs)
    return store


@pytest.fixture()
def shop(tmp_path: Path) -> Iterator[Store]:
    store = fill(open_store(str(tmp_path / "shop.duckdb")), SHOP_SQL, runs=RUN_SQL)
    yield store
    store.close()


def cells(result, *, complete_only: bool = False) -> dict[tuple[date, int], tuple[int, int]]:
    """(cohort, months_since) -> (cohort_size, active_users)."""
    m = result.matrix
    if complete_only:
        m = m[m["complete"]]
    return {
        (r.cohort, int(r.months_since)): (int(r.cohort_size), int(r.active_users))
        for r in m.itertuples(index=False)
    }


# --------------------------------------------------------------------------- matrix


def test_first_purchase_matrix_by_hand(shop: Store) -> None:
    res = retention_matrix(shop, as_of=AS_OF)
    assert res.cohort_by == "first_purchase"
    assert cells(res) == {
        (JAN, 0): (1, 1),
        (JAN, 1): (1, 1),  # a on 29 Feb 23:59:59 UTC
        (JAN, 2): (1, 0),  # a bought nothing in March: a real zero
        (JAN, 3): (1, 1),  # a on 1 Apr 00:00 UTC (April still running)
        (FEB, 0): (2, 2),  # b (1 Feb 04:30 UTC) and c (1 Feb 00:00)
        (FEB, 1): (2, 2),  # b on 15 Mar, c on 31 Mar 23:59:59
        (FEB, 2): (2, 0),
        (MAR, 0): (1, 1),  # e: 1 Apr 00:30 +02:00 is still March in UTC
        (MAR, 1): (1, 0),
    }
    incomplete = res.matrix.loc[~res.matrix["complete"], ["cohort", "months_since"]]
    assert sorted(map(tuple, incomplete.to_numpy().tolist())) == [(JAN, 3), (FEB, 2), (MAR, 1)]
    assert list(res.matrix.columns) == [
        "cohort",
        "months_since",
        "cohort_size",
        "active_users",
        "retention",
        "complete",
    ]


def test_wide_shows_complete_months_only_by_default(shop: Store) -> None:
    res = retention_matrix(shop, as_of=AS_OF)
    wide = res.wide()
    assert list(wide.index) == [JAN, FEB, MAR]
    assert list(wide.columns) == ["cohort_size", 0, 1, 2]
    assert wide["cohort_size"].tolist() == [1, 2, 1]
    np.testing.assert_array_equal(
        wide[[0, 1, 2]].to_numpy(),
        [[1.0, 1.0, 0.0], [1.0, 1.0, np.nan], [1.0, np.nan, np.nan]],
    )
    with_running = res.wide(complete_only=False)
    assert list(with_running.columns) == ["cohort_size", 0, 1, 2, 3]
    assert with_running.loc[JAN, 3] == 1.0 and with_running.loc[MAR, 1] == 0.0


def test_signup_cohorts_keep_zero_cohorts(shop: Store) -> None:
    res = retention_matrix(shop, cohort_by="signup", as_of=AS_OF)
    assert cells(res) == {
        (JAN, 0): (3, 1),  # only a ordered in January (b's first order is February in UTC)
        (JAN, 1): (3, 3),
        (JAN, 2): (3, 2),
        (JAN, 3): (3, 1),
        (FEB, 0): (1, 0),  # d never completed an order
        (FEB, 1): (1, 0),
        (FEB, 2): (1, 0),
        (MAR, 0): (1, 1),
        (MAR, 1): (1, 0),
    }
    assert res.matrix.loc[res.matrix["cohort"] == JAN, "retention"].tolist() == [
        pytest.approx(1 / 3),
        1.0,
        pytest.approx(2 / 3),
        pytest.approx(1 / 3),
    ]


def test_event_activity(shop: Store) -> None:
    res = retention_matrix(shop, cohort_by="signup", activity="event", as_of=AS_OF)
    assert cells(res) == {
        (JAN, 0): (3, 0),
        (JAN, 1): (3, 0),
        (JAN, 2): (3, 1),  # a's page view on 10 March
        (JAN, 3): (3, 0),  # a's April event is after as_of
        (FEB, 0): (1, 1),
        (FEB, 1): (1, 1),
        (FEB, 2): (1, 0),
        (MAR, 0): (1, 0),
        (MAR, 1): (1, 0),
    }


def test_default_as_of_and_max_months(shop: Store) -> None:
    # the newest activity is e's order on 2 May: as_of = 3 May, April complete, May running
    res = retention_matrix(shop, max_months=1)
    assert res.as_of == datetime(2024, 5, 3, tzinfo=UTC)
    assert cells(res) == {
        (JAN, 0): (1, 1),
        (JAN, 1): (1, 1),
        (FEB, 0): (2, 2),
        (FEB, 1): (2, 2),
        (MAR, 0): (1, 1),
        (MAR, 1): (1, 0),  # e's next order is in May
    }
    assert res.matrix["complete"].all()  # April has ended by 3 May


def test_month_boundary_as_of_exactly_midnight(shop: Store) -> None:
    """as_of = 1 April 00:00: March is complete, April has not started."""
    res = retention_matrix(shop, as_of=date(2024, 4, 1))
    assert res.matrix["complete"].all()
    assert res.matrix["cohort"].max() == MAR
    assert cells(res)[(FEB, 1)] == (2, 2)  # c's order at 23:59:59 on 31 March counts
    assert (JAN, 3) not in cells(res)  # a's order at 00:00 on 1 April is not seen


def test_empty_store_gives_an_empty_matrix(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "empty.duckdb")) as store:
        res = retention_matrix(store)
        assert res.matrix.empty
        assert res.wide().empty and "cohort_size" in res.wide().columns


def test_bad_arguments(shop: Store) -> None:
    with pytest.raises(ConfigError, match="cohort_by"):
        retention_matrix(shop, cohort_by="weekly")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="activity"):
        retention_matrix(shop, activity="visit")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- repeat purchases


def test_repeat_purchase_rate_by_hand(shop: Store) -> None:
    rep = repeat_purchase_rate(shop, as_of=AS_OF)
    assert rep.to_dict("records")[0] | {"ci_lo": 0, "ci_hi": 0} == {
        "segment": "(all)",
        "buyers": 4,  # a, b, c, e (d only cancelled)
        "repeat_buyers": 3,  # e's second order is after as_of; b's refund does not count
        "rate": 0.75,
        "ci_lo": 0,
        "ci_hi": 0,
    }
    lo, hi = proportion_confint(3, 4, alpha=0.05, method="wilson")
    assert rep.loc[0, "ci_lo"] == pytest.approx(lo, abs=1e-12)
    assert rep.loc[0, "ci_hi"] == pytest.approx(hi, abs=1e-12)


def test_repeat_within_days_counts_only_buyers_with_a_full_window(shop: Store) -> None:
    rep = repeat_purchase_rate(shop, as_of=AS_OF, within_days=30)
    # eligible: first order before 16 March -> a, b, c; only c's second order came within 30d
    assert rep[["buyers", "repeat_buyers"]].iloc[0].tolist() == [3, 1]


def test_repeat_purchase_rate_by_segment(shop: Store) -> None:
    rep = repeat_purchase_rate(shop, as_of=AS_OF, segment_run_id="r1")
    assert rep["segment"].tolist() == ["(all)", "x", "y"]
    assert rep["buyers"].tolist() == [4, 2, 2]  # y: c and e (d is no buyer)
    assert rep["repeat_buyers"].tolist() == [3, 2, 1]
    by_name = repeat_purchase_rate(shop, as_of=AS_OF, segment_run_id="toy")  # latest run
    pd.testing.assert_frame_equal(rep, by_name)
    with pytest.raises(NotFoundError, match="nope"):
        repeat_purchase_rate(shop, segment_run_id="nope")


def test_retention_by_segment_by_hand(shop: Store) -> None:
    # run as of 1 Feb; first completed orders from then: a 29 Feb, b 1 Feb 04:30,
    # c 1 Feb 00:00 (inclusive), e 31 Mar 22:30 UTC, d none
    out = retention_by_segment(shop, "r1", months=(1, 2, 3), as_of=AS_OF)
    got = {(r.segment, r.months): (r.users, r.ordered) for r in out.itertuples(index=False)}
    assert {k: v for k, v in got.items() if k[1] < 3} == {
        ("(all)", 1): (5, 3),
        ("(all)", 2): (5, 4),
        ("x", 1): (2, 2),
        ("x", 2): (2, 2),
        ("y", 1): (3, 1),
        ("y", 2): (3, 2),
    }
    three = out[out["months"] == 3]  # ends 1 May, after as_of: not reported
    assert not three["complete"].any() and three[["ordered", "rate", "ci_lo"]].isna().all().all()
    row = out[(out["segment"] == "y") & (out["months"] == 2)].iloc[0]
    lo, hi = proportion_confint(2, 3, alpha=0.05, method="wilson")
    assert (row["rate"], row["ci_lo"], row["ci_hi"]) == pytest.approx((2 / 3, lo, hi))


# --------------------------------------------------------------------------- before / after

# date 2024-06-01, 30-day windows: pre [04-02, 05-02), before [05-02, 06-01), after [06-01, 07-01)
BEFORE = {"t1": 20, "t2": 30, "t3": 40, "t4": 50, "c1": 10, "c2": 20, "c3": 30, "c4": 40}
PRE = {"t1": 21, "t2": 29, "t3": 41, "t4": 49, "c1": 12, "c2": 18, "c3": 30, "c4": 40}
SEASON, EFFECT = 10.0, 5.0
NOISE = {"t1": 1, "t2": -1, "t3": 2, "t4": -2, "c1": 3, "c2": -3, "c3": 0, "c4": 0}
AFTER = {u: BEFORE[u] + SEASON + (EFFECT if u.startswith("t") else 0) + NOISE[u] for u in BEFORE}
TREATED = "SELECT user_id FROM users WHERE user_id LIKE 't%'"
COMPARISON = "SELECT user_id FROM users WHERE user_id LIKE 'c%'"


def did_sql() -> str:
    users = [f"('{u}', '2024-01-01 00:00:00+00')" for u in BEFORE]
    users.append("('n1', '2024-05-20 00:00:00+00')")  # joined during the before window
    orders = []
    for u in BEFORE:
        orders.append(f"('{u}-p', '{u}', '2024-04-15 12:00:00+00', {PRE[u]}, 'completed')")
        ts = "2024-05-31 23:59:59+00" if u == "t2" else "2024-05-15 12:00:00+00"
        orders.append(f"('{u}-b', '{u}', '{ts}', {BEFORE[u]}, 'completed')")
        if u == "t1":  # split over two orders, one exactly at the date
            orders.append("('t1-a0', 't1', '2024-06-01 00:00:00+00', 6, 'completed')")
            orders.append(f"('t1-a', 't1', '2024-06-20 12:00:00+00', {AFTER[u] - 6}, 'completed')")
        else:
            orders.append(f"('{u}-a', '{u}', '2024-06-15 12:00:00+00', {AFTER[u]}, 'completed')")
    orders.append("('c1-r', 'c1', '2024-06-16 12:00:00+00', 500, 'refunded')")
    orders.append("('n1-a', 'n1', '2024-06-15 12:00:00+00', 999, 'completed')")
    orders.append("('n1-z', 'n1', '2024-07-05 12:00:00+00', 1, 'completed')")  # data ends later
    return (
        "INSERT INTO users (user_id, created_at) VALUES " + ", ".join(users) + ";\n"
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(orders)
        + ";"
    )


@pytest.fixture()
def did_shop(tmp_path: Path) -> Iterator[Store]:
    store = fill(open_store(str(tmp_path / "did.duckdb")), did_sql())
    yield store
    store.close()


def deltas(prefix: str) -> np.ndarray:
    return np.array([AFTER[u] - BEFORE[u] for u in BEFORE if u.startswith(prefix)], dtype=float)


def test_before_after_is_paired_and_says_it_is_not_causal(did_shop: Store) -> None:
    res = before_after(did_shop, date=date(2024, 6, 1), users=TREATED)
    d = deltas("t")
    assert res.difference == pytest.approx(SEASON + EFFECT)  # season and effect, mixed up
    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(0.95)
    assert res.ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert res.p_value == pytest.approx(test.pvalue, rel=1e-9)
    assert "NOT a causal effect" in res.warning
    assert "seasonality" in res.warning and "regression to the mean" in res.warning
    assert res.did is None and math.isnan(res.did_estimate)
    assert "not complete" not in res.warning
    t = res.table.set_index("period")
    assert t.loc["before", "mean"] == pytest.approx(35.0)
    assert t.loc["after", "mean"] == pytest.approx(50.0)
    assert t["users"].tolist() == [4, 4]
    before = np.array([BEFORE[u] for u in BEFORE if u.startswith("t")], dtype=float)
    lo, hi = stats.t.interval(0.95, 3, loc=before.mean(), scale=stats.sem(before))
    assert (t.loc["before", "ci_lo"], t.loc["before", "ci_hi"]) == pytest.approx((lo, hi))


def test_difference_in_differences_removes_the_shared_season(did_shop: Store) -> None:
    res = before_after(did_shop, date=date(2024, 6, 1), users=TREATED, comparison=COMPARISON)
    assert res.difference == pytest.approx(SEASON + EFFECT)
    assert res.did_estimate == pytest.approx(EFFECT)
    did = res.did.set_index("quantity")
    welch = stats.ttest_ind(deltas("t"), deltas("c"), equal_var=False)
    ci = welch.confidence_interval(0.95)
    row = did.loc["difference-in-differences"]
    assert (row["ci_lo"], row["ci_hi"], row["p_value"]) == pytest.approx(
        (ci.low, ci.high, welch.pvalue), rel=1e-9
    )
    assert (row["treated"], row["comparison"]) == pytest.approx((15.0, 10.0))
    assert did.loc["before", "difference"] == pytest.approx(10.0)  # the pre-period gap shown
    assert did.loc["pre-trend (placebo)", "difference"] == pytest.approx(0.0)
    assert "parallel-trends assumption" in res.warning and "NOT a causal" in res.warning
    assert res.table["group"].tolist() == ["treated", "treated", "comparison", "comparison"]
    # "everyone but the comparison" is the same treated group here (n1 joined too late)
    everyone = before_after(did_shop, date=date(2024, 6, 1), comparison=COMPARISON)
    assert everyone.did_estimate == pytest.approx(EFFECT)
    assert res.to_dict()["did"][2]["difference"] == pytest.approx(EFFECT)


def test_before_after_population_and_metrics(did_shop: Store) -> None:
    everyone = before_after(did_shop, date=datetime(2024, 6, 1, tzinfo=UTC))
    assert everyone.table["users"].tolist() == [8, 8]  # n1 (joined 20 May) is left out
    assert everyone.difference == pytest.approx((deltas("t").sum() + deltas("c").sum()) / 8)
    orders = before_after(did_shop, date=date(2024, 6, 1), metric="orders", users=TREATED)
    assert orders.difference == pytest.approx(0.25)  # t1 ordered twice after, once before
    conv = before_after(did_shop, date=date(2024, 6, 1), metric="conversion", users=TREATED)
    assert conv.difference == 0.0 and math.isnan(conv.ci[0])  # no variance: no interval
    events = before_after(did_shop, date=date(2024, 6, 1), metric="events")
    assert events.difference == 0.0
    both = before_after(
        did_shop,
        date=date(2024, 6, 1),
        users=TREATED + " OR user_id = 'c1'",
        comparison=COMPARISON,
    )
    assert both.table["users"].tolist() == [4, 4, 3, 3]
    assert "1 users are in both groups" in both.warning
    late = before_after(did_shop, date=date(2024, 6, 20), users=TREATED)
    assert "after window is not complete" in late.warning
    with pytest.raises(ConfigError, match="metric"):
        before_after(did_shop, date=date(2024, 6, 1), metric="clicks")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_gives_the_same_answers(shop: Store, did_shop: Store, pg_url: str) -> None:
    with fill(open_store(pg_url), SHOP_SQL, runs=RUN_SQL) as pg:
        for kwargs in (
            {"as_of": AS_OF},
            {"cohort_by": "signup", "activity": "event", "as_of": AS_OF},
            {},
        ):
            a = retention_matrix(shop, **kwargs)  # type: ignore[arg-type]
            b = retention_matrix(pg, **kwargs)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(a.matrix, b.matrix)
            pd.testing.assert_frame_equal(a.wide(), b.wide())
        pd.testing.assert_frame_equal(
            repeat_purchase_rate(shop, as_of=AS_OF, within_days=30, segment_run_id="r1"),
            repeat_purchase_rate(pg, as_of=AS_OF, within_days=30, segment_run_id="r1"),
        )
        pd.testing.assert_frame_equal(
            retention_by_segment(shop, "r1", months=(1, 2, 3), as_of=AS_OF),
            retention_by_segment(pg, "r1", months=(1, 2, 3), as_of=AS_OF),
        )
        pg.execute("DELETE FROM orders; DELETE FROM users")
        fill(pg, did_sql())
        for metric in ("revenue", "orders", "conversion"):
            a2 = before_after(did_shop, date=date(2024, 6, 1), metric=metric, comparison=COMPARISON)
            b2 = before_after(pg, date=date(2024, 6, 1), metric=metric, comparison=COMPARISON)
            pd.testing.assert_frame_equal(a2.table, b2.table)
            assert a2.did is not None and b2.did is not None
            pd.testing.assert_frame_equal(a2.did, b2.did)
            assert a2.warning == b2.warning


# --------------------------------------------------------------------------- a demo shop


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2,000-user demo shop, ingested, with a lifecycle run as of 1 April 2026 (its id
    is returned) and a current one."""
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("retention-demo")
    generate_demo(root, n_users=2000, seed=5)
    with segmint.open_project(root) as p:
        p.ingest()
        old = p.segment("lifecycle", as_of=date(2026, 4, 1))
        p.segment("lifecycle")
    assert not isinstance(old, list)
    return root, old.run_id


def test_demo_shop_sanity(small_demo: tuple[Path, str]) -> None:
    root, april_run = small_demo
    with segmint.open_project(root) as p:
        store = p.store
        res = retention_matrix(store, max_months=12)
        as_of = res.as_of.replace(microsecond=0)
        n_buyers = store.scalar(completed_orders(before=as_of, columns="count(DISTINCT user_id)"))
        m = res.matrix
        month0 = m[m["months_since"] == 0]
        assert month0["cohort_size"].sum() == n_buyers > 1000
        assert (month0["retention"] == 1.0).all()
        assert m["retention"].between(0, 1).all()
        assert (m["active_users"] <= m["cohort_size"]).all()
        assert m.groupby("cohort")["months_since"].max().max() == 12
        wide = res.wide()
        assert wide.shape[1] == 1 + 13 and wide.index.is_monotonic_increasing
        # the newest cohort has month 0 only, the one before months 0 and 1
        assert wide.iloc[-1, 2:].isna().all() and wide.iloc[-2, 1:3].notna().all()
        signup = retention_matrix(store, cohort_by="signup", max_months=3)
        assert signup.matrix["retention"].between(0, 1).all()
        rep = repeat_purchase_rate(store, segment_run_id="lifecycle")
        assert rep["segment"].iloc[0] == "(all)" and rep["buyers"].iloc[0] == n_buyers
        assert (rep["ci_lo"] <= rep["rate"]).all() and (rep["rate"] <= rep["ci_hi"]).all()
        assert rep["buyers"].iloc[1:].sum() <= n_buyers
        latest = retention_by_segment(store, "lifecycle")  # as of the data's end: no window
        assert not latest["complete"].any() and latest["rate"].isna().all()
        april = retention_by_segment(store, april_run).set_index(["segment", "months"])
        assert april["complete"].all() and april["rate"].between(0, 1).all()
        assert (
            april.loc[("(all)", 1), "users"] == april["users"].xs(1, level="months").iloc[1:].sum()
        )
        for seg in april.index.get_level_values("segment").unique():  # more time, more buyers
            assert (
                april.loc[(seg, 1), "rate"]
                <= april.loc[(seg, 3), "rate"]
                <= april.loc[(seg, 6), "rate"]
            )
        assert april.loc[("active", 3), "rate"] > april.loc[("churned", 3), "rate"]


def test_demo_shop_satisfaction(small_demo: tuple[Path, str]) -> None:
    from segmint.experiments._satisfaction import satisfaction_by_segment

    with segmint.open_project(small_demo[0]) as p:
        res = satisfaction_by_segment(p.store, "lifecycle")
        n_surveys = p.store.scalar("SELECT count(*) FROM events WHERE event IN ('nps', 'csat')")
    t = res.table
    overall = t[t["segment"] == "(all)"]
    assert overall["survey"].tolist() == ["nps", "csat"]
    assert overall["responses"].sum() + res.n_invalid == n_surveys > 100
    nps, csat = t[t["survey"] == "nps"], t[t["survey"] == "csat"]
    assert nps["score"].between(-100, 100).all() and csat["score"].between(1, 5).all()
    assert (nps["promoters"] + nps["passives"] + nps["detractors"] == nps["responses"]).all()
    assert t.loc[t["segment"] != "(all)", "responses"].sum() == overall["responses"].sum()
