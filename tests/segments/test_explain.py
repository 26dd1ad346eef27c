"""Surrogate rules, the segment assigner and cluster names on data with a known answer."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from segmint.segments._explain import (
    SegmentAssigner,
    SurrogateTree,
    name_clusters,
    round_threshold,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("below", "above", "expected"),
    [
        (8.0, 9.0, 8.0),  # integer counts: frequency > 8
        (4.9987, 5.0021, 5.0),
        (1234.5, 1290.0, 1240.0),
        (-3.2, -2.9, -3.0),
        (0.1231, 0.1239, 0.1231),
        (44.0, 46.0, 44.0),  # x <= 44 selects the same users as x <= 45
    ],
)
def test_threshold_is_the_roundest_number_that_splits_the_same_way(
    below: float, above: float, expected: float
) -> None:
    assert round_threshold(below, above) == pytest.approx(expected)
    assert below <= round_threshold(below, above) < above


# --------------------------------------------------------------------------- surrogate tree


def test_a_single_cut_becomes_a_single_rule() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.uniform(0, 10, 2_000), "other": rng.normal(size=2_000)})
    labels = (X["x"] > 5).astype(int).to_numpy()
    tree = SurrogateTree(max_depth=3).fit(X, labels)
    assert tree.rules_ == {0: ["x <= 5"], 1: ["x > 5"]}
    assert tree.fidelity_ == 100.0
    np.testing.assert_array_equal(tree.predict(X), labels)


def test_conditions_on_two_features_are_joined_and_rounded() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 365, 5_000).astype(float),
            "frequency": rng.integers(0, 20, 5_000).astype(float),
        }
    )
    labels = np.where((X["recency_days"] <= 45) & (X["frequency"] > 8), "loyal", "other")
    tree = SurrogateTree(max_depth=3).fit(X, labels)
    assert tree.fidelity_ == 100.0
    (rule,) = tree.rules_["loyal"]
    assert sorted(rule.split(" and ")) == ["frequency > 8", "recency_days <= 45"]
    table = tree.rule_table_
    loyal = table[table["segment"] == "loyal"].iloc[0]
    assert loyal["precision"] == 1.0 and loyal["recall"] == 1.0


def test_bounds_on_one_feature_merge_into_an_interval() -> None:
    x = np.arange(0, 100, dtype=float)
    X = pd.DataFrame({"tenure_days": x})
    labels = ((x > 20) & (x <= 45)).astype(int)
    tree = SurrogateTree(max_depth=2, min_samples_leaf=1).fit(X, labels)
    assert tree.rules_[1] == ["20 < tenure_days <= 45"]
    assert sorted(tree.rules_[0]) == ["tenure_days <= 20", "tenure_days > 45"]


def test_missing_values_are_named_in_the_rule() -> None:
    x = np.r_[np.arange(100, dtype=float), [np.nan] * 20]
    labels = np.r_[(np.arange(100) > 50).astype(int), [1] * 20]
    tree = SurrogateTree(max_depth=1, min_samples_leaf=1).fit(pd.DataFrame({"x": x}), labels)
    assert tree.fidelity_ == 100.0
    assert tree.rules_[1] == ["(x > 50 or x missing)"]
    assert tree.rules_[0] == ["x <= 50"]


def test_surrogate_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        SurrogateTree().predict(pd.DataFrame({"x": [1.0]}))


# --------------------------------------------------------------------------- assigner


@pytest.fixture(scope="module")
def segmented() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 2_000)
    centers = np.array([[10.0, 2.0, 50.0], [200.0, 1.0, 20.0], [30.0, 12.0, 400.0]])
    X = pd.DataFrame(
        centers[truth] * rng.lognormal(0, 0.25, size=(2_000, 3)),
        columns=["recency_days", "frequency", "monetary"],
    )
    return X, truth


def test_assigner_predicts_held_out_users(segmented: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, truth = segmented
    assigner = SegmentAssigner(n_estimators=50).fit(X.iloc[:1_500], truth[:1_500])
    accuracy = np.mean(assigner.predict(X.iloc[1_500:]) == truth[1_500:])
    assert accuracy > 0.95
    assert assigner.oob_score_ > 0.95
    importances = assigner.feature_importances_
    assert importances.sum() == pytest.approx(1.0)
    assert importances.is_monotonic_decreasing
    assert set(importances.index) == set(X.columns)
    proba = assigner.predict_proba(X.iloc[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_assigner_accepts_missing_values(segmented: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, truth = segmented
    holey = X.copy()
    holey.iloc[::7, 0] = np.nan
    assigner = SegmentAssigner(n_estimators=30).fit(holey, truth)
    assert assigner.predict(holey).shape == (2_000,)


def test_assigner_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        SegmentAssigner().predict(pd.DataFrame({"x": [1.0]}))


# --------------------------------------------------------------------------- names


def _users(rng: np.random.Generator, n: int, **medians: float) -> pd.DataFrame:
    return pd.DataFrame({k: v * rng.lognormal(0, 0.2, n) for k, v in medians.items()})


def test_a_recent_frequent_big_spender_cluster_is_named_so() -> None:
    rng = np.random.default_rng(3)
    base = {"tenure_days": 400.0, "discount_share": 0.2}
    features = pd.concat(
        [
            _users(rng, 300, recency_days=5, frequency=20, monetary=2_000, **base),
            _users(rng, 300, recency_days=300, frequency=1, monetary=40, **base),
            _users(rng, 300, recency_days=60, frequency=4, monetary=200, **base),
        ],
        ignore_index=True,
    )
    labels = np.repeat([0, 1, 2], 300)
    names = name_clusters(features, labels)
    assert names[0] == "Recent · frequent · high spend"
    assert "Lapsed" in names[1] and "one-off" in names[1] and "low spend" in names[1]
    assert len(set(names.values())) == 3


def test_browsers_have_many_events_and_few_orders() -> None:
    rng = np.random.default_rng(4)
    features = pd.concat(
        [
            _users(rng, 300, events_30d=80, frequency=1, monetary=100),
            _users(rng, 300, events_30d=10, frequency=8, monetary=100),
        ],
        ignore_index=True,
    )
    names = name_clusters(features, np.repeat([0, 1], 300))
    assert names[0].startswith("Browsers")
    assert "one-off" not in names[0]


def test_colliding_names_are_made_unique_and_noise_is_named() -> None:
    rng = np.random.default_rng(5)
    same = dict(recency_days=30.0, frequency=3.0, monetary=150.0)
    features = pd.concat(
        [_users(rng, 200, **same), _users(rng, 200, **same), _users(rng, 50, **same)],
        ignore_index=True,
    )
    labels = np.repeat([0, 1, -1], [200, 200, 50])
    names = name_clusters(features, labels)
    assert names[-1] == "noise"
    assert names[0] != names[1]
    assert len(set(names.values())) == 3


def test_unknown_features_get_plain_words_in_words() -> None:
    rng = np.random.default_rng(6)
    features = pd.DataFrame(
        {"basket_diversity": np.r_[rng.normal(10, 1, 100), rng.normal(0, 1, 100)]}
    )
    names = name_clusters(features, np.repeat([0, 1], 100))
    assert names == {0: "High basket diversity", 1: "Low basket diversity"}


def test_depth_grows_to_four_for_many_clusters() -> None:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.uniform(0, 10, size=(3_000, 3)), columns=["a", "b", "c"])
    labels = np.digitize(X["a"], [2, 4, 6, 8, 9])  # 6 clusters cut along one feature
    tree = SurrogateTree().fit(X, labels)
    shallow = SurrogateTree(max_depth=3).fit(X, labels)
    assert tree.max_depth_ == 4 and shallow.max_depth_ == 3
    assert tree.fidelity_ > shallow.fidelity_
    assert tree.rules_[2] == ["4 < a <= 6"]
    assert tree.rules_[5] == []  # greedy splits ran out of depth: reported, not hidden


def test_sampled_fit_keeps_labels_and_measures_fidelity_on_every_row() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    X = pd.DataFrame({"x": rng.uniform(0, 10, n), "y": rng.uniform(0, 10, n)})
    names = np.where(X["x"] > 5, "High x", np.where(X["y"] > 5, "High y", "Low"))
    noisy = names.copy()
    flip = rng.random(n) < 0.05
    noisy[flip] = "Low"
    full = SurrogateTree(max_depth=3, max_fit_rows=None).fit(X, noisy)
    sampled = SurrogateTree(max_depth=3, max_fit_rows=2_000).fit(X, noisy)
    # the noise and the sample move the cut points a little, not the rules' shape
    for tree in (full, sampled):
        shape = {k: [re.sub(r"[\d.]+", "#", r) for r in v] for k, v in tree.rules_.items()}
        assert shape == {
            "High x": ["x > #"],
            "High y": ["x <= # and y > #"],
            "Low": ["x <= # and y <= #"],
        }
        cuts = [float(c) for v in tree.rules_.values() for r in v for c in re.findall(r"[\d.]+", r)]
        assert cuts == pytest.approx([5.0] * len(cuts), abs=0.1)
    expected = 100.0 * np.mean(sampled.predict(X) == noisy)  # every row, not the sample
    assert sampled.fidelity_ == pytest.approx(expected)
    assert int(sampled.rule_table_["n_users"].sum()) == n
    assert set(sampled.predict(X)) == {"High x", "High y", "Low"}
