"""Prediction runs for the tests of predicted value in profiles, personas and the report: a
demo shop with segments, a CLV run (``segmint.predict.predict_clv``) and a churn run
(``segmint.predict.predict_churn``) fitted on its orders."""

from __future__ import annotations

from pathlib import Path

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
