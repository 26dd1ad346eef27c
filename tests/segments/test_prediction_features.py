"""Predictions as segmentation features: value tiers by CLV, rules on CLV, churn risk and
its change, the prediction run reused at the same as-of date and computed when missing,
and segmentations that name no prediction left exactly as they were. On a 2,000-user demo
built once; each test works on its own copy."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import segmint
from segmint.config import (
    ClusterSegmentation,
    PredictSettings,
    RulesSegmentation,
    TreeSegmentation,
    ValueTiersSegmentation,
)
from segmint.errors import ConfigError
from segmint.predict import PredictionRun, latest_predictions_sql, load_prediction_run
from segmint.segments import run_segmentation

SETTINGS = PredictSettings()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("pred-feat") / "shop"
    generate_demo(root, n_users=2000, seed=21)
    with segmint.open_project(root) as p:
        p.ingest()
        p.compute_features()
    return root


@pytest.fixture()
def project(built: Path, tmp_path: Path) -> Any:
    root = tmp_path / "shop"
    shutil.copytree(built, root)
    with segmint.open_project(root) as p:
        yield p


def _features(p: Any) -> Any:
    from segmint.features import load_features

    run_id = str(p.store.scalar("SELECT run_id FROM feature_runs ORDER BY created_at DESC LIMIT 1"))
    frame = load_features(p.store, run_id)
    as_of = p.store.scalar("SELECT as_of FROM feature_runs WHERE run_id = ?", [run_id])
    return frame, run_id, pd.Timestamp(as_of).tz_convert("UTC").to_pydatetime()


def _run(p: Any, name: str, spec: Any, **kw: Any) -> Any:
    frame, run_id, as_of = _features(p)
    kw.setdefault("as_of", as_of)
    return run_segmentation(
        p.store, name, spec, frame, feature_run_id=run_id, predict=kw.pop("predict", SETTINGS), **kw
    )


def _n_runs(p: Any, kind: str | None = None) -> int:
    if kind is None:
        return int(p.store.scalar("SELECT count(*) FROM predict_runs"))
    return int(p.store.scalar("SELECT count(*) FROM predict_runs WHERE kind = ?", [kind]))


def _save_churn(p: Any, as_of: datetime, risks: pd.Series) -> str:
    """A churn run with the given risks (user_id -> risk), saved as predict_churn would."""
    from segmint.predict._runs import new_run_id, save_run

    scores = pd.DataFrame({"user_id": risks.index.astype(str), "churn_risk": risks.to_numpy()})
    run = PredictionRun(
        run_id=new_run_id("churn"),
        kind="churn",
        created_at=datetime.now(UTC),
        as_of=as_of,
        scores=scores,
        params=SETTINGS.model_dump(mode="json"),
    )
    save_run(p.store, run)
    return run.run_id


def _segments(result: Any) -> pd.Series:
    return result.assignments.set_index("user_id")["segment"].astype(str)


def test_value_tiers_by_clv_cut_the_scored_customers_at_the_quantiles(project: Any) -> None:
    p = project
    r = _run(p, "clv_tiers", ValueTiersSegmentation(type="value_tiers", feature="clv"))
    used = r.details["predictions"]
    assert used["columns"] == ["clv"] and used["computed"] == ["clv"]
    clv = load_prediction_run(p.store, used["clv"]).scores.set_index("user_id")["clv"]
    got = _segments(r)
    # by hand: quantiles (linear, as quantile_cont) of CLV among users with CLV > 0
    positive = clv[clv > 0]
    hi, mid = np.quantile(positive, 0.8), np.quantile(positive, 0.5)
    want = pd.Series("general", index=got.index)
    scored = clv.reindex(got.index)
    want[(scored > 0) & (scored >= mid)] = "potential"
    want[(scored > 0) & (scored >= hi)] = "high-value"
    assert (got == want).all()
    sizes = got.value_counts()
    n = len(positive)  # a fifth at or above the 80th percentile, ties with it included
    assert 0.2 * n <= sizes["high-value"] <= 0.2 * n + 0.01 * n
    assert abs(sizes["potential"] - 0.3 * n) <= 0.01 * n
    # users without a completed order before the as-of date have no CLV: general
    frame, _, _ = _features(p)
    never = frame.loc[frame["frequency"].fillna(0) == 0, "user_id"].astype(str)
    assert len(never) > 20 and not set(never) & set(clv.index)
    assert (got[never] == "general").all()


def test_rules_on_clv_and_churn_risk_match_a_hand_computation(project: Any) -> None:
    p = project
    frame, _, as_of = _features(p)
    rng = np.random.default_rng(3)
    users = frame["user_id"].astype(str)
    risks = pd.Series(rng.random(len(users)), index=users)[: len(users) - 100]  # 100 unscored
    churn_run = _save_churn(p, as_of, risks)
    spec = RulesSegmentation.model_validate(
        {
            "type": "rules",
            "rules": [
                {"segment": "win-back", "when": "clv >= 500 AND churn_risk >= 0.6"},
                {"segment": "at risk", "when": "churn_risk >= 0.6"},
                {"segment": "keep", "when": "CLV >= 500"},  # names are case-insensitive
            ],
            "default": "rest",
        }
    )
    r = _run(p, "winback", spec)
    used = r.details["predictions"]
    assert used["churn"] == churn_run and used["computed"] == ["clv"]
    assert used["churn_previous"] is None
    clv = load_prediction_run(p.store, used["clv"]).scores.set_index("user_id")["clv"]
    c = clv.reindex(users.to_numpy())
    k = risks.reindex(users.to_numpy())
    want = np.select(
        [(c >= 500) & (k >= 0.6), k >= 0.6, c >= 500], ["win-back", "at risk", "keep"], "rest"
    )
    got = _segments(r)[users.to_numpy()]
    assert (got.to_numpy() == want).all()
    assert set(got) == {"win-back", "at risk", "keep", "rest"}
    # the unscored users: their churn_risk is NULL, so only the CLV rule can take them
    unscored = users[~users.isin(risks.index)]
    assert set(got[unscored.to_numpy()]) <= {"keep", "rest"}
    # the segment run says which prediction runs it read
    stored = p.segment_run(r.run_id).details["predictions"]
    assert (stored["clv"], stored["churn"]) == (used["clv"], churn_run)


def test_rising_churn_risk_is_the_change_since_the_previous_churn_run(project: Any) -> None:
    p = project
    frame, _, as_of = _features(p)
    users = frame["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(5)
    before = pd.Series(rng.random(len(users)), index=users)
    now = (before + rng.normal(0, 0.2, len(users))).clip(0, 1)
    older = _save_churn(p, as_of - timedelta(days=30), before[100:])  # 100 new since
    _save_churn(p, as_of, now * 0.5)  # a first run at this date ...
    current = _save_churn(p, as_of, now)  # ... and a re-run: not a "previous" state
    spec = RulesSegmentation.model_validate(
        {
            "type": "rules",
            "rules": [{"segment": "rising", "when": "churn_risk_change >= 0.1"}],
            "default": "steady",
        }
    )
    r = _run(p, "rising", spec)
    used = r.details["predictions"]
    assert (used["churn"], used["churn_previous"]) == (current, older)
    assert "clv" not in used and _n_runs(p, "clv") == 0  # churn columns only: no CLV fit
    change = now - before[100:].reindex(users)  # NaN for the 100 without a previous risk
    got = _segments(r)[users]
    assert (got.to_numpy() == np.where(change >= 0.1, "rising", "steady")).all()
    assert (got[users[:100]] == "steady").all()
    # the same change where profiles and the decision endpoint read it
    latest = p.store.query(latest_predictions_sql()).set_index("user_id")["churn_risk_change"]
    assert np.allclose(latest.reindex(users), change, equal_nan=True)


def test_a_prediction_run_is_reused_at_its_as_of_date_and_computed_when_missing(
    project: Any,
) -> None:
    p = project
    spec = ValueTiersSegmentation(type="value_tiers", feature="clv")
    first = _run(p, "tiers", spec)
    assert first.details["predictions"]["computed"] == ["clv"] and _n_runs(p) == 1
    again = _run(p, "tiers", spec)
    assert again.details["predictions"]["computed"] == []
    assert again.details["predictions"]["clv"] == first.details["predictions"]["clv"]
    assert _n_runs(p) == 1 and (_segments(again) == _segments(first)).all()
    # other settings (a shorter horizon): not the same prediction, computed again
    short = _run(p, "tiers", spec, predict=PredictSettings(horizon_days=90))
    assert short.details["predictions"]["computed"] == ["clv"] and _n_runs(p) == 2
    assert (
        load_prediction_run(p.store, short.details["predictions"]["clv"]).params["horizon_days"]
        == 90
    )
    # another as-of date: computed there (and stored with that date)
    _, _, as_of = _features(p)
    earlier = as_of - timedelta(days=60)
    old = _run(p, "tiers", spec, as_of=earlier)
    run = load_prediction_run(p.store, old.details["predictions"]["clv"])
    assert pd.Timestamp(run.as_of) == pd.Timestamp(earlier) and _n_runs(p) == 3
    # a preview (save=False) computes what it needs but stores nothing
    _run(p, "tiers", spec, as_of=earlier - timedelta(days=30), save=False)
    assert _n_runs(p) == 3


def test_segmentations_that_name_no_prediction_get_the_features_unchanged(
    project: Any,
) -> None:
    from segmint.segments._predictions import with_predictions

    p = project
    frame, run_id, as_of = _features(p)
    specs = [
        ClusterSegmentation(type="kmeans", features=["recency_days", "frequency", "monetary"]),
        TreeSegmentation.model_validate({"type": "tree", "target": {"column": "frequency"}}),
        ValueTiersSegmentation(type="value_tiers", feature="monetary"),
        RulesSegmentation.model_validate(
            {"type": "rules", "rules": [{"segment": "x", "when": "monetary > 100"}]}
        ),
    ]
    for spec in specs:
        out, used = with_predictions(p.store, "s", spec, frame, as_of=as_of, settings=SETTINGS)
        assert out is frame and used == {}
    r = _run(p, "value", specs[2])
    assert "predictions" not in r.details and _n_runs(p) == 0
    # named explicitly, a clustering gets the column (and says which run it came from)
    named = ClusterSegmentation(type="kmeans", features=["recency_days", "clv"])
    out, used = with_predictions(p.store, "s", named, frame, as_of=as_of, settings=SETTINGS)
    assert list(out.columns) == [*frame.columns, "clv"] and used["clv"]
    assert out["clv"].notna().sum() == int((frame["frequency"].fillna(0) > 0).sum())


def test_a_misspelt_prediction_column_is_refused_with_the_right_name(project: Any) -> None:
    spec = RulesSegmentation.model_validate(
        {"type": "rules", "rules": [{"segment": "x", "when": "clv_hihg > 100"}]}
    )
    with pytest.raises(
        ConfigError, match=r"unknown column clv_hihg \(did you mean clv_high\?.*in rule 1 \('x'\)"
    ):
        _run(project, "bad", spec)
    assert _n_runs(project) == 0


def test_the_project_passes_its_predict_settings(project: Any) -> None:
    p = project
    path = Path(p.root) / "segmint.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("segmentations:\n", "predict:\n  horizon_days: 180\nsegmentations:\n")
    text = text.replace(
        "segmentations:\n", "segmentations:\n  by_clv: {type: value_tiers, feature: clv}\n", 1
    )
    path.write_text(text, encoding="utf-8")
    with segmint.open_project(p.root) as q:
        r = q.segment("by_clv")
        run = load_prediction_run(q.store, r.details["predictions"]["clv"])
        assert run.params["horizon_days"] == 180
        assert pd.Timestamp(run.as_of) == pd.Timestamp(r.as_of)


def test_postgresql_gives_the_same_segments_as_duckdb(
    project: Any, pg_url: str, tmp_path: Path
) -> None:
    """The same rules on clv, churn_risk and churn_risk_change, the same prediction runs
    (copied), on a PostgreSQL store: the same segments as on DuckDB."""
    from segmint.store import open_store

    p = project
    frame, _, as_of = _features(p)
    users = frame["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(8)
    _save_churn(p, as_of - timedelta(days=30), pd.Series(rng.random(len(users)), index=users))
    _save_churn(p, as_of, pd.Series(rng.random(len(users)), index=users)[50:])
    spec = RulesSegmentation.model_validate(
        {
            "type": "rules",
            "rules": [
                {"segment": "win-back", "when": "clv >= 500 AND churn_risk_change > 0"},
                {"segment": "at risk", "when": "churn_risk >= 0.5"},
            ],
            "default": "rest",
        }
    )
    duck = _run(p, "w", spec)  # computes and stores the CLV run, copied below
    pg = open_store(pg_url)
    try:
        for table in ("users", "feature_runs", "predict_runs", "predictions"):
            pg.insert(table, p.store.query(f"SELECT * FROM {table}"))
        got = run_segmentation(pg, "w", spec, frame, as_of=as_of, predict=SETTINGS, save=False)
    finally:
        pg.close()
    assert got.details["predictions"] == {**duck.details["predictions"], "computed": []}
    assert (_segments(got) == _segments(duck)).all() and len(set(_segments(got))) == 3


def test_forgetting_a_person_deletes_their_predictions(project: Any) -> None:
    from segmint.privacy import forget

    p = project
    r = _run(p, "tiers", ValueTiersSegmentation(type="value_tiers", feature="clv"))
    run_id = r.details["predictions"]["clv"]
    (user,) = p.store.query(
        "SELECT user_id FROM predictions WHERE run_id = ? ORDER BY clv DESC LIMIT 1", [run_id]
    )["user_id"]
    n = int(p.store.scalar("SELECT count(*) FROM predictions"))
    report = forget(p, str(user), actor="test", why="art. 17")
    assert report.tables["predictions"] == 1
    assert not p.store.scalar("SELECT count(*) FROM predictions WHERE user_id = ?", [user])
    assert int(p.store.scalar("SELECT count(*) FROM predictions")) == n - 1


def test_a_churn_run_is_computed_when_missing_then_reused(project: Any) -> None:
    from segmint.features import CustomFeature

    p = project
    spec = RulesSegmentation.model_validate(
        {"type": "rules", "rules": [{"segment": "risky", "when": "churn_risk >= 0.6"}]}
    )
    custom = [CustomFeature(n, c.expr, c.table) for n, c in p.config.features.custom.items()]
    first = _run(p, "risky", spec, custom_features=custom)
    used = first.details["predictions"]
    assert used["computed"] == ["churn"] and _n_runs(p, "churn") == 1 and _n_runs(p, "clv") == 0
    run = load_prediction_run(p.store, used["churn"])
    assert run.params["custom"] == [c.name for c in custom] and run.params["churn_days"] == 90
    risk = run.scores.set_index("user_id")["churn_risk"]
    got = _segments(first)
    assert (got[risk.index[risk >= 0.6]] == "risky").all()
    assert (got.drop(risk.index[risk >= 0.6]) == "Other").all()
    again = _run(p, "risky", spec, custom_features=custom)
    assert again.details["predictions"]["computed"] == [] and _n_runs(p, "churn") == 1
    # without the project's custom feature: another model, computed again
    _run(p, "risky", spec, custom_features=[])
    assert _n_runs(p, "churn") == 2


def test_a_run_backfilled_at_an_earlier_date_does_not_replace_the_current_one(
    project: Any,
) -> None:
    """The latest prediction run of a kind is the one with the newest as-of date: a churn
    run made afterwards at an earlier date (the previous state churn_risk_change needs, or
    a segmentation run with --as-of in the past) does not become what profiles, rules'
    medians and the decision endpoint read."""
    from segmint.profiles._value import latest_value_runs

    p = project
    frame, _, as_of = _features(p)
    users = frame["user_id"].astype(str).to_numpy()
    rng = np.random.default_rng(8)
    now = pd.Series(rng.random(len(users)), index=users)
    current = _save_churn(p, as_of, now)
    before = (now - 0.2).clip(0, 1)
    backfill = _save_churn(p, as_of - timedelta(days=30), before)  # made after `current`
    assert load_prediction_run(p.store, "churn").run_id == current
    latest = p.store.query(latest_predictions_sql()).set_index("user_id")
    assert np.allclose(latest["churn_risk"].reindex(users), now)
    assert np.allclose(latest["churn_risk_change"].reindex(users), now - before)
    runs = latest_value_runs(p.store)
    assert runs is not None and runs.churn is not None and runs.churn.run_id == current
    # the same for CLV: a segmentation at an earlier date computes and saves a CLV run there
    spec = ValueTiersSegmentation(type="value_tiers", feature="clv")
    first = _run(p, "tiers", spec).details["predictions"]["clv"]
    older = _run(p, "tiers", spec, as_of=as_of - timedelta(days=60)).details["predictions"]["clv"]
    assert older != first and load_prediction_run(p.store, "clv").run_id == first
    # a re-run at the same as-of date is newer: it wins
    again = _save_churn(p, as_of, now * 0.5)
    assert load_prediction_run(p.store, "churn").run_id == again
    assert backfill != again
