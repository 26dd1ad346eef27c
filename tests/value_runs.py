"""Prediction runs for the tests of predicted value in profiles, personas and the report: a
demo shop with segments, a CLV run (``segmint.predict.predict_clv``) and a churn run
(``segmint.predict.predict_churn``) fitted on its orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

import segmint
from segmint.demo import generate_demo
from segmint.predict import PredictionRun, predict_churn, predict_clv

SEGMENTATIONS = ["rfm", "lifecycle", "clusters"]


def build_demo(
    root: Path, *, n_users: int, seed: int, segmentations: list[str] | None = None
) -> segmint.Project:
    """A demo project, ingested and segmented (no prediction run yet)."""
    generate_demo(root, n_users=n_users, seed=seed)
    p = segmint.open_project(root)
    p.ingest()
    p.segment(segmentations or SEGMENTATIONS)
    return p


def add_predictions(p: segmint.Project) -> tuple[PredictionRun, PredictionRun]:
    """A CLV run and a churn run fitted on the project's orders (both score every customer
    with a completed order before the as-of date)."""
    return predict_clv(p.store, p.config.predict), predict_churn(p.store, p.config.predict)


def add_previous_churn(
    p: segmint.Project, churn: PredictionRun, risk: pd.Series, *, days: int = 30
) -> PredictionRun:
    """A churn run ``days`` before ``churn`` holding ``risk`` (by ``user_id``): the earlier
    state ``churn_risk_change`` compares with, stored as ``segmint predict churn --as-of``
    would store it (made after ``churn``, at an earlier date)."""
    from segmint.predict._runs import new_run_id, save_run  # tests may write a run as stored

    run = PredictionRun(
        run_id=new_run_id("churn"),
        kind="churn",
        created_at=datetime.now(UTC),
        as_of=pd.Timestamp(churn.as_of).to_pydatetime() - timedelta(days=days),
        scores=pd.DataFrame({"user_id": risk.index.astype(str), "churn_risk": risk.to_numpy()}),
        params=dict(churn.params),
    )
    save_run(p.store, run)
    return run
