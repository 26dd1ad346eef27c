"""Supervised segmentation (tree, propensity) on planted data, and its bad inputs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from statsmodels.stats.proportion import proportion_confint

from segmint.config import (
    PropensitySegmentation,
    TreeSegmentation,
    load_config,
    parse_config,
)
from segmint.errors import ConfigError
from segmint.experiments._evaluate import import_assignments
from segmint.segments import load_run, run_segmentation
from segmint.segments._supervised import design_matrix
from segmint.store import Store, open_store

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def planted(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Users with orders_90d >= 3 in DE convert at 40 %, everyone else at 5 %."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(2.5, n)
    country = rng.choice(["DE", "FR", "US", "GB", "IT"], n, p=[0.5, 0.15, 0.15, 0.1, 0.1])
    rate = np.where((orders >= 3) & (country == "DE"), 0.4, 0.05)
    recency = rng.integers(0, 400, n).astype(float)
    recency[rng.random(n) < 0.1] = np.nan  # some users never ordered: missing
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "orders_90d": orders,
            "country": country,
            "monetary": rng.gamma(2.0, 50.0, n),
            "recency_days": recency,
            "age": np.nan,  # a store without ages: dropped, not a crash
            "flat": 1.0,  # constant: dropped
            "converted": rng.random(n) < rate,
        }
    )


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "s.duckdb"))
    yield s
    s.close()


def tree(**kw: object) -> TreeSegmentation:
    return TreeSegmentation.model_validate({"type": "tree", **kw})


def propensity(**kw: object) -> PropensitySegmentation:
    return PropensitySegmentation.model_validate({"type": "propensity", **kw})


# -- the tree ----------------------------------------------------------------------------


def test_tree_recovers_the_planted_rule(store: Store) -> None:
    f = planted()
    r = run_segmentation(store, "buyers", tree(target={"column": "converted"}), f)
    top = r.details["leaves"][0]
    assert top["segment"] == "leaf 1 (top)"
    assert "country = DE" in top["rule"]
    m = re.search(r"orders in the last 90 days (≥|=) (\d+)", top["rule"])
    assert m is not None, top["rule"]
    assert 3 <= int(m.group(2)) <= 4  # the planted threshold (or one above: a noise split)
    true_lift = 0.4 / r.metrics["base_rate"]
    assert top["lift"] == pytest.approx(true_lift, rel=0.2)
    assert r.metrics["auc_holdout"] > 0.7
    # users in leaves at least twice the base rate are (almost) exactly the planted ones
    high = {row["segment"] for row in r.details["leaves"] if row["lift"] > 2}
    chosen = set(r.assignments.loc[r.assignments["segment"].isin(high), "user_id"])
    truth = set(f.loc[(f["orders_90d"] >= 3) & (f["country"] == "DE"), "user_id"])
    assert len(chosen & truth) / len(chosen | truth) > 0.9
    # leaves ordered by the rate among training users, named stably, every user assigned
    assert len(r.assignments) == len(f) and r.assignments["segment"].notna().all()
    assert r.details["leaves"][-1]["segment"].endswith("(bottom)")
    assert r.details["features_dropped"] == {
        "age": "missing for every user",
        "flat": "the same for every user",
        "income_band": "missing for every user",
        "acquisition_channel": "missing for every user",
    }


def test_leaf_sql_selects_exactly_the_leaf_users(store: Store) -> None:
    """Each leaf's SQL condition (rounded thresholds, missing values, one-hot levels)
    picks the same users as the tree."""
    f = planted()
    r = run_segmentation(store, "buyers", tree(target={"column": "converted"}, max_depth=4), f)
    con = duckdb.connect()
    con.register("f", f)
    got = pd.concat(
        [
            con.execute(
                f"SELECT user_id, ? AS segment FROM f WHERE {row['sql']}", [row["segment"]]
            ).df()
            for row in r.details["leaves"]
        ]
    )
    assert len(got) == len(f)  # the leaves' conditions partition the users
    merged = got.merge(r.assignments, on="user_id", suffixes=("_sql", ""))
    assert (merged["segment_sql"] == merged["segment"]).all()


def test_leaf_rates_intervals_and_lift(store: Store) -> None:
    f = planted()
    r = run_segmentation(store, "buyers", tree(target={"column": "converted"}), f)
    a = r.assignments.merge(f[["user_id", "converted"]], on="user_id")
    base = f["converted"].mean()
    assert r.metrics["base_rate"] == pytest.approx(base, abs=1e-6)
    for row in r.details["leaves"]:
        y = a.loc[a["segment"] == row["segment"], "converted"]
        lo, hi = proportion_confint(int(y.sum()), len(y), alpha=0.05, method="wilson")
        assert row["n_users"] == len(y) and row["rate"] == pytest.approx(y.mean(), abs=1e-6)
        assert (row["rate_lo"], row["rate_hi"]) == pytest.approx((lo, hi), abs=1e-6)
        assert row["lift"] == pytest.approx(y.mean() / base, abs=1e-5)


def test_numeric_target_above_and_regression(store: Store) -> None:
    f = planted()
    f["spend"] = np.where(f["country"] == "DE", 100.0, 20.0) + f["orders_90d"]
    r = run_segmentation(
        store, "big", tree(target={"column": "spend", "above": 90}, features=["country"]), f
    )
    assert r.details["target"] == "spend > 90"
    assert r.rules["leaf 1 (top)"] == "country = DE"
    assert r.metrics["auc_holdout"] == pytest.approx(1.0)
    reg = run_segmentation(store, "mean", tree(target={"column": "spend"}), f)
    assert reg.details["target_kind"] == "number" and reg.metrics["r2_holdout"] > 0.9
    assert "auc_holdout" not in reg.metrics
    assert reg.details["leaves"][0]["rate"] > 100  # a mean, not a rate
    # a leaf's interval on the mean is Student's t (scipy)
    a = reg.assignments.merge(f[["user_id", "spend"]], on="user_id")
    for row in reg.details["leaves"]:
        v = a.loc[a["segment"] == row["segment"], "spend"]
        if v.nunique() == 1:  # no spread: the interval is the value itself
            assert row["rate_lo"] == row["rate_hi"] == pytest.approx(v.iloc[0])
            continue
        lo, hi = scipy.stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=scipy.stats.sem(v))
        assert (row["rate_lo"], row["rate_hi"]) == pytest.approx((lo, hi), abs=1e-5)


def test_stored_run_loads_back(store: Store) -> None:
    f = planted()
    r = run_segmentation(store, "buyers", tree(target={"column": "converted"}), f)
    back = load_run(store, "buyers")
    assert back.method == "tree" and back.rules == r.rules
    assert back.details["leaves"] == r.details["leaves"]
    assert back.metrics["auc_holdout"] == r.metrics["auc_holdout"]
    assert len(back.assignments) == len(f)


# -- one-hot ---------------------------------------------------------------------------


def test_one_hot_caps_levels_and_keeps_missing() -> None:
    rng = np.random.default_rng(0)
    n = 600
    city = np.array([f"c{i:02d}" for i in rng.integers(0, 30, n)], dtype=object)
    city[:40] = None
    f = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "city": city, "x": rng.random(n)})
    d = design_matrix("t", f, None, exclude=set(), max_levels=5)
    onehot = [c for c in d.X.columns if c.startswith("city=")]
    assert len(onehot) == 6 and "city=(other)" in onehot  # top 5 + other
    assert "city=(missing)" in onehot  # the 40 missing are the most common level
    assert (d.X[onehot].sum(axis=1) == 1).all()
    assert {d.source[c] for c in onehot} == {"city"} and d.level["city=(other)"] == "(other)"
    assert d.X["x"].equals(f["x"])


def test_tree_splits_on_a_categorical_level(store: Store) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    channel = rng.choice(["ads", "organic", "referral", "social"], n)
    f = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "acquisition_channel": channel,
            "monetary": 1.0,
            "bought": rng.random(n) < np.where(channel == "referral", 0.5, 0.05),
        }
    )
    r = run_segmentation(store, "t", tree(target={"column": "bought"}, max_depth=1), f)
    assert r.rules == {
        "leaf 1 (top)": "acquisition channel = referral",
        "leaf 2 (bottom)": "acquisition channel ≠ referral",
    }


# -- propensity -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["forest", "boosting"])
def test_propensity_deciles(store: Store, model: str) -> None:
    f = planted()
    r = run_segmentation(
        store, "p", propensity(target={"column": "converted"}, model=model, seed=2), f
    )
    groups = r.details["groups"]
    assert [g["segment"] for g in groups][0] == "decile 1 (top)"
    assert groups[-1]["segment"] == "decile 10 (bottom)"
    assert all(abs(g["n_users"] - 300) <= 1 for g in groups)
    rates = [g["rate"] for g in groups]
    assert min(rates[:2]) > max(rates[3:])  # monotone-ish: the planted users come first
    assert rates[0] > 4 * float(np.mean(rates[5:]))
    assert r.metrics["auc_holdout"] > 0.7
    cal = r.details["calibration"]
    assert len(cal) == 10 and sum(c["n_holdout"] for c in cal) == r.metrics["n_holdout"]
    top2 = {i["feature"] for i in r.details["importances"][:2]}
    assert top2 == {"orders_90d", "country"}
    # the probability stored per user orders the deciles
    a = r.assignments
    by = a.groupby("segment")["probability"].min()
    assert by["decile 1 (top)"] >= a.loc[a["segment"] == "decile 2", "probability"].max()


# -- bad input -------------------------------------------------------------------------


def test_constant_target_is_refused(store: Store) -> None:
    f = planted().assign(converted=False)
    with pytest.raises(
        ConfigError, match=r"target converted is the same for every user \(all 0\): nothing"
    ):
        run_segmentation(store, "t", tree(target={"column": "converted"}), f)


def test_too_few_positives_is_refused(store: Store) -> None:
    f = planted().assign(converted=False)
    f.loc[:2, "converted"] = True
    with pytest.raises(ConfigError, match=r"only 3 positives among 3,000 users"):
        run_segmentation(store, "t", propensity(target={"column": "converted"}), f)


def test_unknown_columns_suggest_a_name(store: Store) -> None:
    f = planted()
    with pytest.raises(ConfigError, match=r"unknown target column 'convrted'.*'converted'"):
        run_segmentation(store, "t", tree(target={"column": "convrted"}), f)
    with pytest.raises(ConfigError, match=r"unknown feature 'countyr'.*'country'"):
        run_segmentation(store, "t", tree(target={"column": "converted"}, features=["countyr"]), f)
    with pytest.raises(ConfigError, match="holds text"):
        run_segmentation(store, "t", tree(target={"column": "country"}), f)
    with pytest.raises(ConfigError, match="needs a yes/no target"):
        run_segmentation(store, "t", propensity(target={"column": "monetary"}), f)


# -- campaign and window targets -------------------------------------------------------


def _store_with_users(store: Store, users: list[str]) -> None:
    store.execute(
        "INSERT INTO users (user_id, created_at) VALUES "
        + ", ".join(f"('{u}', CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ))" for u in users)
    )


def _orders(store: Store, buyers: list[str], ts: str) -> None:
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('o{i}-{ts[:10]}', '{u}', CAST('{ts}+00' AS TIMESTAMPTZ), 10, 'completed')"
            for i, u in enumerate(buyers)
        )
    )


def test_campaign_response_target(store: Store) -> None:
    f = planted(n=2000)
    users = f["user_id"].tolist()
    _store_with_users(store, users)
    rng = np.random.default_rng(5)
    arm = np.where(rng.random(len(f)) < 0.8, "treatment", "control")
    assigned = f.assign(arm=arm).iloc[:1800]  # 200 users never assigned
    # treated users respond as planted; control users and the rest never buy
    responders = assigned.loc[(assigned["arm"] == "treatment") & assigned["converted"], "user_id"]
    _orders(store, responders.tolist(), "2026-06-03 00:00:00")
    import_assignments(
        store,
        "spring",
        pd.DataFrame(
            {"user_id": assigned["user_id"], "arm": assigned["arm"], "sent_at": "2026-06-01"}
        ),
        control_share=0.2,
    )
    spec = tree(target={"campaign": "spring", "window_days": 14})
    r = run_segmentation(store, "resp", spec, f.drop(columns="converted"), as_of=AS_OF)
    n_treated = int((assigned["arm"] == "treatment").sum())
    assert r.metrics["n_target"] == n_treated
    assert r.metrics["base_rate"] == pytest.approx(len(responders) / n_treated, abs=1e-6)
    assert len(r.assignments) == len(f)  # control and unassigned users get a leaf too
    assert "country = DE" in r.rules["leaf 1 (top)"]
    assert r.details["warnings"] == []  # features as of the exposure: honest


def test_campaign_without_assignments_or_treated_users(store: Store) -> None:
    f = planted(n=300)
    _store_with_users(store, f["user_id"].tolist())
    spec = tree(target={"campaign": "spring"})
    with pytest.raises(ConfigError, match="campaign 'spring' has no assignments"):
        run_segmentation(store, "resp", spec, f, as_of=AS_OF)
    import_assignments(
        store,
        "spring",
        pd.DataFrame({"user_id": f["user_id"], "arm": "control", "sent_at": "2026-06-01"}),
        split={"treatment": 0.5, "control": 0.5},  # designed 50/50, only control logged
    )
    with pytest.raises(ConfigError, match="all 300 assigned users are in the control arm"):
        run_segmentation(store, "resp", spec, f, as_of=AS_OF)


def test_conversion_within_days_after_as_of(store: Store) -> None:
    f = planted(n=1000)
    _store_with_users(store, f["user_id"].tolist())
    buyers = f.loc[f["converted"], "user_id"].tolist()
    _orders(store, buyers, "2026-06-10 00:00:00")  # inside 30 days after as-of
    _orders(store, f["user_id"].tolist()[:50], "2026-05-31 00:00:00")  # before: not counted
    spec = tree(target={"converted_within_days": 30})
    r = run_segmentation(store, "w", spec, f.drop(columns="converted"), as_of=AS_OF)
    assert r.metrics["base_rate"] == pytest.approx(len(buyers) / len(f), abs=1e-6)
    assert r.details["target"] == "converted within 30 days after 2026-06-01"
    assert "not complete" in r.details["warnings"][0]  # the store ends on 06-10
    with pytest.raises(ConfigError, match="same for every user.*not complete"):
        run_segmentation(
            store, "w", spec, f.drop(columns="converted"), as_of=datetime(2026, 7, 1, tzinfo=UTC)
        )


# -- configuration ---------------------------------------------------------------------

YAML = """
segmentations:
  buyers_tree:
    type: tree
    target: {converted_within_days: 30}
    max_depth: 3
    min_leaf: 0.05
    features: [orders_90d, country]
  responders:
    type: tree
    target: {campaign: spring, window_days: 14}
  big_spenders:
    type: propensity
    model: boosting
    target: {column: monetary, above: 500}
"""


def test_config_round_trip(tmp_path: Path) -> None:
    cfg = parse_config(YAML, path=tmp_path / "segmint.yaml")
    seg = cfg.segmentations
    assert isinstance(seg["buyers_tree"], TreeSegmentation)
    assert isinstance(seg["big_spenders"], PropensitySegmentation)
    assert seg["big_spenders"].target.above == 500 and seg["responders"].target.window_days == 14
    dumped = {
        "segmentations": {k: v.model_dump(mode="json", exclude_unset=True) for k, v in seg.items()}
    }
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(dumped), encoding="utf-8")
    assert load_config(tmp_path).segmentations == seg


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{column: a, campaign: b}", "exactly one of column, campaign or converted_within_days"),
        ("{}", "exactly one"),
        ("{campaign: b, above: 3}", "above is used only with column"),
        ("{converted_within_days: 30, window_days: 5}", "window_days is used only with campaign"),
    ],
)
def test_config_refuses_an_unclear_target(tmp_path: Path, target: str, message: str) -> None:
    text = f"segmentations:\n  t:\n    type: tree\n    target: {target}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, path=tmp_path / "segmint.yaml")


# -- end to end: the command line on a demo shop ---------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import segmint
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("supervised-demo")
    generate_demo(root, n_users=1500, seed=3)
    config = yaml.safe_load((root / "segmint.yaml").read_text(encoding="utf-8"))
    config["segmentations"] = {
        "buyers": {"type": "tree", "target": {"converted_within_days": 30}},
        "likely": {"type": "propensity", "target": {"converted_within_days": 30}},
    }
    (root / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with segmint.open_project(root) as p:
        p.ingest()
    return root


def test_cli_prints_leaves_and_auc_and_json(shop: Path) -> None:
    import json

    from typer.testing import CliRunner

    import segmint
    from segmint.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["segment", "buyers", "likely", "-p", str(shop), "--as-of", "2026-09-01"]
    )
    assert res.exit_code == 0, res.output
    assert "leaf 1 (top)" in res.output and "holdout AUC" in res.output
    assert "decile 1 (top)" in res.output and "calibration on the holdout" in res.output
    assert "orders in the last 90 days" in res.output  # rules in words
    shown = runner.invoke(app, ["segments", "show", "buyers", "-p", str(shop), "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["method"] == "tree" and data["metrics"]["auc_holdout"] > 0.7
    assert data["details"]["leaves"][0]["lift"] > 1
    # the persona layer reads a tree's leaves like any other segments
    with segmint.open_project(shop) as p:
        personas = p.personas("buyers")
    assert {x.segment for x in personas} == set(data["rules"])


def test_cli_bad_target_is_one_line_not_a_traceback(shop: Path) -> None:
    from typer.testing import CliRunner

    from segmint.cli import app

    config = yaml.safe_load((shop / "segmint.yaml").read_text(encoding="utf-8"))
    config["segmentations"]["bad"] = {"type": "tree", "target": {"campaign": "nope"}}
    (shop / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    res = CliRunner().invoke(app, ["segment", "bad", "-p", str(shop)])
    assert res.exit_code == 2
    assert "campaign 'nope' has no assignments" in res.output
    assert "Traceback" not in res.output


def test_no_signal_gives_one_leaf_and_a_tiny_holdout_is_refused(store: Store) -> None:
    f = planted()
    f["converted"] = np.random.default_rng(9).random(len(f)) < 0.2  # unrelated to anything
    # no split leaves two sides of at least 60 %: one leaf, the documented "all users"
    r = run_segmentation(store, "t", tree(target={"column": "converted"}, min_leaf=0.6), f)
    assert r.rules == {"all users": "all users"} and r.metrics["auc_holdout"] == 0.5
    assert r.details["leaves"][0]["lift"] == pytest.approx(1.0)
    f.loc[:, "converted"] = False
    f.loc[:11, "converted"] = True
    with pytest.raises(ConfigError, match=r"holdout \(30 users\) has no positive.*raise `holdout`"):
        run_segmentation(store, "t", tree(target={"column": "converted"}, holdout=0.01), f)


def test_campaign_target_on_postgresql(pg_url: str) -> None:
    s = open_store(pg_url)
    try:
        f = planted(n=600)
        _store_with_users(s, f["user_id"].tolist())
        _orders(s, f.loc[f["converted"], "user_id"].tolist(), "2026-06-03 00:00:00")
        arm = np.where(np.arange(len(f)) % 5 == 0, "control", "treatment")
        import_assignments(
            s,
            "spring",
            pd.DataFrame({"user_id": f["user_id"], "arm": arm, "sent_at": "2026-06-01"}),
            control_share=0.2,
        )
        r = run_segmentation(
            s, "resp", tree(target={"campaign": "spring"}), f.drop(columns="converted"), as_of=AS_OF
        )
        treated = f[arm == "treatment"]
        assert r.metrics["n_target"] == len(treated)
        assert r.metrics["base_rate"] == pytest.approx(treated["converted"].mean(), abs=1e-6)
        assert load_run(s, "resp").details["leaves"] == r.details["leaves"]
    finally:
        s.close()


def test_wilson_interval_matches_the_experiments_layer() -> None:
    from segmint.experiments._stats import wilson_interval
    from segmint.segments._supervised import _wilson

    x = np.array([0, 3, 10, 50, 7])
    n = np.array([0, 10, 10, 200, 7])
    lo, hi = _wilson(x, n)
    want_lo, want_hi = wilson_interval(x, n)
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)
