"""The revenue side of the CLV holdout check (``holdout_check(...)["value"]``).

A CLV is a forecast of money: the check fits both models on the orders before a date,
predicts each customer's revenue for the period after it (expected purchases x expected
order value) and compares with the revenue each customer made, in ten equal groups by
prediction. On customers simulated from BG/NBD + Gamma-Gamma the prediction must find
the money the simulation made: the total within a few per cent and the top tenth's
revenue close to its prediction; a model that ranks at random must not pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from segmint.config import PredictSettings
from segmint.predict import holdout_check
from segmint.predict._clv import value_check
from segmint.store import Store, open_store

CALIBRATION_END = datetime(2026, 1, 1, tzinfo=UTC)
HOLDOUT_END = CALIBRATION_END + timedelta(days=365)
#: CDNOW's published parameters with α in days (4.414 a week); its spend parameters
TRUTH = {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}
SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}


def test_value_check_groups_and_totals_by_hand() -> None:
    predicted = np.array([5.0, 1.0, 3.0, 0.0, 9.0, 7.0, 2.0, 4.0, 8.0, 6.0, 10.0, 0.5])
    actual = np.array([4.0, 0.0, 6.0, 0.0, 9.0, 1.0, 0.0, 4.0, 12.0, 5.0, 20.0, 1.0])
    v = value_check(predicted, actual)
    rows = v["by_predicted_decile"]
    assert [r["group"] for r in rows] == list(range(1, 11))
    # 12 customers in 10 groups, highest predictions first: the top two groups hold two each
    assert [r["n"] for r in rows] == [1] * 8 + [2, 2]
    top = rows[-1]
    assert top["predicted"] == pytest.approx((10.0 + 9.0) / 2)
    assert top["actual"] == pytest.approx((20.0 + 9.0) / 2)
    assert rows[0]["predicted"] == 0.0 and rows[0]["actual"] == 0.0
    assert v["total_predicted"] == pytest.approx(predicted.sum())
    assert v["total_actual"] == pytest.approx(actual.sum())
    assert v["total_error"] == pytest.approx(predicted.sum() / actual.sum() - 1)
    assert v["top_group_share"] == pytest.approx(29.0 / actual.sum())
    assert v["correlation"] == pytest.approx(np.corrcoef(predicted, actual)[0, 1])


def test_value_check_without_revenue_has_no_ratios() -> None:
    v = value_check(np.array([1.0, 2.0, 3.0]), np.zeros(3))
    assert v["total_error"] is None and v["top_group_share"] is None
    assert v["correlation"] is None  # nobody bought: no correlation, not NaN
    assert [r["n"] for r in v["by_predicted_decile"]] == [1, 1, 1]


def simulate_orders(n: int, seed: int) -> pd.DataFrame:
    """Orders of ``n`` customers living BG/NBD + Gamma-Gamma lives: each first buys at a
    uniform time in the two years before CALIBRATION_END, then at Poisson times of rate
    λ ~ Gamma(r, α) until he drops out after his J-th repeat purchase, J ~ Geometric(p),
    p ~ Beta(a, b), through the calibration and the holdout year alike; each order's
    value Gamma(p, ν), ν ~ Gamma(q, v)."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 730, n)  # days from the first purchase to CALIBRATION_END
    span = start + 365.0
    lam = rng.gamma(TRUTH["r"], 1.0 / TRUTH["alpha"], n)
    drop = rng.geometric(rng.beta(TRUTH["a"], TRUTH["b"], n))
    bought = rng.poisson(lam * span)  # purchases a customer who never dropped would make
    count = np.minimum(bought, drop)  # repeat purchases made: the first `count` of them
    owner = np.repeat(np.arange(n), count)
    times = [np.sort(rng.uniform(0, span[i], bought[i]))[: count[i]] for i in np.flatnonzero(count)]
    offsets = np.concatenate(times) if times else np.zeros(0)
    nu = rng.gamma(SPEND["q"], 1.0 / SPEND["v"], n)
    who = np.concatenate([np.arange(n), owner])
    when = np.concatenate([np.zeros(n), offsets])
    first = CALIBRATION_END - pd.to_timedelta(start, unit="D")
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(who))],
            "user_id": [f"c{i}" for i in who],
            "ts": first[who] + pd.to_timedelta(when, unit="D"),
            "amount": np.maximum(np.round(rng.gamma(SPEND["p"], 1.0 / nu[who]), 2), 0.01),
        }
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = Path(tmp_path_factory.mktemp("value")) / "sim.duckdb"
    open_store(str(path)).close()
    orders = simulate_orders(20_000, seed=3)
    orders = orders[orders["ts"] < pd.Timestamp(HOLDOUT_END)]
    con = duckdb.connect(str(path))
    con.register("o", orders)
    con.execute("INSERT INTO users (user_id) SELECT DISTINCT user_id FROM o")
    con.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, currency, status) "
        "SELECT order_id, user_id, ts, amount, 'USD', 'completed' FROM o"
    )
    con.close()
    store = open_store(str(path))
    yield store
    store.close()


def test_holdout_revenue_of_simulated_customers_is_found(simulated: Store) -> None:
    check = holdout_check(simulated, CALIBRATION_END, HOLDOUT_END, PredictSettings())
    v = check["value"]
    made = simulated.scalar(
        f"SELECT sum(amount) FROM orders WHERE ts >= '{CALIBRATION_END:%Y-%m-%d}'"
    )
    assert v["total_actual"] == pytest.approx(float(made))
    assert abs(v["total_error"]) < 0.06, v["total_error"]
    rows = {r["group"]: r for r in v["by_predicted_decile"]}
    assert sum(r["n"] for r in rows.values()) == check["n_customers"] == 20_000
    # the tenth ranked first is predicted within 10 % of what it made, and made most of it
    top = rows[10]
    assert abs(top["predicted"] / top["actual"] - 1) < 0.10, top
    assert v["top_group_share"] > 0.5
    # mean actual revenue rises with the predicted tenth (the ranking is real)
    means = [rows[g]["actual"] for g in range(1, 11)]
    assert means[-1] > means[-2] > means[-3] and means[-1] > 10 * means[4]
    assert v["correlation"] > 0.5


def test_a_random_ranking_fails_the_same_check(simulated: Store) -> None:
    """The check can fail: the same totals, the predictions shuffled among customers."""
    check = holdout_check(simulated, CALIBRATION_END, HOLDOUT_END, PredictSettings())
    v = check["value"]
    rng = np.random.default_rng(0)
    means = np.array([r["predicted"] for r in v["by_predicted_decile"]])
    counts = np.array([r["n"] for r in v["by_predicted_decile"]])
    shuffled = rng.permutation(np.repeat(means, counts))
    made = np.repeat([r["actual"] for r in v["by_predicted_decile"]], counts)
    bad = value_check(shuffled, made)
    assert bad["top_group_share"] < 0.2 and abs(bad["correlation"]) < 0.1
