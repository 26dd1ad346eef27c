"""Qini curves and coefficients by hand and against scikit-uplift; the T-learner on planted
uplift."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from segmint.experiments._uplift import (
    TLearner,
    UpliftResult,
    auuc_score,
    evaluate_uplift,
    qini_coefficient,
    qini_curve,
    uplift_by_decile,
)

# six users, best score first
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TREATED = np.array([True, False, True, False, True, False])
Y = np.array([1, 0, 1, 1, 0, 0])


def _planted(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uplift depends on feature 0 only: treated convert at 0.1 + 0.2·(x0 > 0), control 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    treated = rng.random(n) < 0.5
    p = np.where(treated, 0.1 + 0.2 * (X[:, 0] > 0), 0.1)
    return X, treated, (rng.random(n) < p).astype(int)


# --------------------------------------------------------------------------- Qini by hand


def test_qini_curve_by_hand() -> None:
    # k  N_T Y_T N_C Y_C   Q = Y_T - Y_C·N_T/N_C (ratio 0 while N_C = 0)
    # 1   1   1   0   0    1
    # 2   1   1   1   0    1
    # 3   2   2   1   0    2
    # 4   2   2   2   1    2 - 1·2/2 = 1
    # 5   3   2   2   1    2 - 1·3/2 = 0.5
    # 6   3   2   3   1    2 - 1·3/3 = 1
    curve = qini_curve(SCORES, TREATED, Y, n_bins=None)
    assert curve["n"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert curve["n_treated"].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert curve["n_control"].tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert curve["qini"].tolist() == [0, 1, 1, 2, 1, 0.5, 1]
    np.testing.assert_allclose(curve["fraction"], np.arange(7) / 6)
    np.testing.assert_allclose(curve["random"], np.arange(7) / 6 * 1.0)


def test_qini_coefficient_by_hand() -> None:
    # model: trapezoids over users 0..6 of Q = 0,1,1,2,1,0.5,1:
    #   0.5 + 1 + 1.5 + 1.5 + 0.75 + 0.75 = 6; random line to Q(6)=1: 6·1/2 = 3 -> 3 above
    # perfect: scores y·T - y·(1-T) = 1,0,1,-1,0,0 -> groups {1,3}, {2,5,6}, {4}:
    #   cuts at 2, 5, 6 users with Q = 2, 2 - 0 = 2, 2 - 1·3/3 = 1;
    #   area 2·2/2 + 3·(2+2)/2 + 1·(2+1)/2 = 2 + 6 + 1.5 = 9.5 -> 9.5 - 3 = 6.5 above
    assert qini_coefficient(SCORES, TREATED, Y) == pytest.approx(3 / 6.5, abs=1e-12)


def test_tied_scores_are_one_group() -> None:
    # all tied: the curve is the straight line, whatever the order of the users
    flat = qini_curve(np.zeros(6), TREATED, Y, n_bins=None)
    assert flat["n"].tolist() == [0, 6]
    assert qini_coefficient(np.zeros(6), TREATED, Y) == 0.0
    # permuting users inside a tie group changes nothing
    scores = np.array([2, 2, 2, 1, 1, 1])
    order = np.array([2, 0, 1, 5, 3, 4])
    a = qini_curve(scores, TREATED, Y, n_bins=None)
    b = qini_curve(scores[order], TREATED[order], Y[order], n_bins=None)
    assert a.equals(b) and a["n"].tolist() == [0, 3, 6]


def test_qini_curve_bins() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    curve = qini_curve(rng.random(n), rng.random(n) < 0.5, rng.random(n) < 0.2, n_bins=10)
    np.testing.assert_allclose(curve["fraction"], np.linspace(0, 1, 11))
    full = qini_curve(rng.random(n), rng.random(n) < 0.5, rng.random(n) < 0.2, n_bins=None)
    assert len(full) == n + 1
    assert list(curve.columns) == ["fraction", "n", "n_treated", "n_control", "qini", "random"]


def test_qini_coefficient_perfect_random_reversed() -> None:
    X, t, y = _planted()
    perfect = np.where(t, y, -y)
    assert qini_coefficient(perfect, t, y) == pytest.approx(1.0)
    assert qini_coefficient(-perfect, t, y) < 0
    assert abs(qini_coefficient(np.random.default_rng(1).random(t.size), t, y)) < 0.05
    # the true uplift ranks well; its reverse is about as bad as it is good (not exactly:
    # the control conversions are scaled by N_T/N_C, which differs between the two orders)
    good = qini_coefficient(X[:, 0], t, y)
    assert good > 0.1
    assert qini_coefficient(-X[:, 0], t, y) == pytest.approx(-good, abs=0.01)


def test_qini_coefficient_without_conversions_is_nan() -> None:
    assert np.isnan(qini_coefficient(SCORES, TREATED, np.zeros(6)))


def test_qini_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        qini_curve(SCORES, TREATED[:3], Y)


# --------------------------------------------------------------------------- scikit-uplift


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qini_and_auuc_equal_scikit_uplift(seed: int) -> None:
    metrics = pytest.importorskip("sklift.metrics")
    rng = np.random.default_rng(seed)
    n = 3000
    t = rng.random(n) < 0.4
    y = (rng.random(n) < np.where(t, 0.15, 0.1)).astype(int)
    scores = np.round(rng.normal(size=n) + 0.5 * y * t, 1)  # rounded: many ties
    with warnings.catch_warnings():  # sklift calls scikit-learn's deprecated stable_cumsum
        warnings.simplefilter("ignore", FutureWarning)
        ref_qini = metrics.qini_auc_score(y, scores, t.astype(int))
        ref_auuc = metrics.uplift_auc_score(y, scores, t.astype(int))
    assert qini_coefficient(scores, t, y) == pytest.approx(ref_qini, abs=1e-9)
    assert auuc_score(scores, t, y) == pytest.approx(ref_auuc, abs=1e-9)


# --------------------------------------------------------------------------- deciles


def test_uplift_by_decile_by_hand() -> None:
    # two groups of three: users 1-3 (T, C, T; y 1, 0, 1) and 4-6 (C, T, C; y 1, 0, 0)
    table = uplift_by_decile(SCORES, TREATED, Y, q=2)
    assert table["decile"].tolist() == [1, 2]
    assert table["n_treated"].tolist() == [2, 1] and table["n_control"].tolist() == [1, 2]
    assert table["rate_treated"].tolist() == [1.0, 0.0]
    assert table["rate_control"].tolist() == [0.0, 0.5]
    assert table["uplift"].tolist() == [1.0, -0.5]


# --------------------------------------------------------------------------- T-learner


@pytest.fixture(scope="module")
def fitted() -> tuple[TLearner, np.ndarray]:
    X, t, y = _planted()
    learner = TLearner(random_state=0)
    return learner, learner.fit_predict(X, t, y)


def test_tlearner_recovers_the_planted_uplift(fitted: tuple[TLearner, np.ndarray]) -> None:
    _, scores = fitted
    X, t, y = _planted()
    assert qini_coefficient(scores, t, y) > 0.1
    deciles = uplift_by_decile(scores, t, y)
    assert deciles["uplift"].iloc[0] > deciles["uplift"].iloc[-1] + 0.1
    # users with x0 > 0 (true uplift 0.2) score higher than the others (true uplift 0)
    assert scores[X[:, 0] > 0].mean() > scores[X[:, 0] <= 0].mean() + 0.1


def test_tlearner_is_deterministic(fitted: tuple[TLearner, np.ndarray]) -> None:
    _, scores = fitted
    X, t, y = _planted()
    np.testing.assert_array_equal(TLearner(random_state=0).fit_predict(X, t, y), scores)


def test_tlearner_predicts_new_users(fitted: tuple[TLearner, np.ndarray]) -> None:
    learner, _ = fitted
    X_new, _, _ = _planted(n=1000, seed=9)
    uplift = learner.predict(X_new)
    assert uplift.shape == (1000,)
    assert uplift[X_new[:, 0] > 0].mean() > uplift[X_new[:, 0] <= 0].mean() + 0.1
    assert learner.model_name_ == "TLearner(HistGradientBoostingClassifier)"


def test_tlearner_fit_returns_self_and_takes_any_classifier() -> None:
    X, t, y = _planted(n=2000)
    learner = TLearner(LogisticRegression(), n_folds=3)
    assert learner.fit(X, t, y) is learner
    assert learner.model_name_ == "TLearner(LogisticRegression)"
    assert learner.fit_predict(X, t, y).shape == (2000,)


def test_tlearner_checks_its_input() -> None:
    X, t, y = _planted(n=200)
    with pytest.raises(NotFittedError):
        TLearner().predict(X)
    with pytest.raises(ValueError, match="both arms need users"):
        TLearner().fit(X, np.ones(200, bool), y)
    with pytest.raises(ValueError, match="X has 200 rows"):
        TLearner().fit(X, t[:100], y[:100])


def test_evaluate_uplift_bundles_the_figures(fitted: tuple[TLearner, np.ndarray]) -> None:
    learner, scores = fitted
    _, t, y = _planted()
    result = evaluate_uplift(scores, t, y, model=learner.model_name_, n_bins=20)
    assert isinstance(result, UpliftResult)
    assert result.qini_coefficient == qini_coefficient(scores, t, y)
    assert result.auuc == auuc_score(scores, t, y)
    assert len(result.qini) == 21
    d = result.to_dict()
    assert d["n_users"] == t.size and len(d["qini"]) == 21
    json.dumps(d)
