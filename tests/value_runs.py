"""Prediction runs for the tests of predicted value in profiles, personas and the report: a
demo shop with segments and a real CLV run (``segmint.predict.predict_clv``), and a churn
run saved as it is stored (``predict_churn`` is another part of issue 22; the run here has
the same shape: scores ``user_id, churn_risk``, ``metrics["auc"]``, ``details["auc_table"]``
and ``details["calibration"]``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

import segmint
from segmint.demo import generate_demo
from segmint.predict import PredictionRun, load_prediction_run, predict_clv

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


def add_predictions(p: segmint.Project, *, seed: int = 0) -> tuple[PredictionRun, PredictionRun]:
    """A CLV run fitted on the project's orders and a churn run scoring every user."""
    clv = predict_clv(p.store, p.config.predict)
    return clv, save_churn_run(p, clv, seed=seed)


def save_churn_run(p: segmint.Project, clv: PredictionRun, *, seed: int = 0) -> PredictionRun:
    """A churn run over every user, as ``segmint predict churn`` stores one: a risk that
    falls with P(alive) (0.5 for users the CLV run did not score), plus noise; the
    calibration bins count outcomes drawn from that risk, so they are calibrated."""
    from segmint.predict._runs import new_run_id, save_run  # tests may write a run as stored

    rng = np.random.default_rng(seed)
    users = p.store.query("SELECT user_id FROM users ORDER BY user_id")["user_id"].astype(str)
    alive = clv.scores.set_index("user_id")["p_alive"].reindex(users).fillna(0.5).to_numpy()
    risk = np.clip(1 - alive + rng.normal(0, 0.08, len(alive)), 0.01, 0.99)
    churned = rng.random(len(risk)) < risk
    group = np.minimum((risk * 10).astype(int), 9)
    calibration = [
        {
            "bin": int(b),
            "n": int((group == b).sum()),
            "predicted": float(risk[group == b].mean()),
            "observed": float(churned[group == b].mean()),
        }
        for b in range(10)
        if (group == b).any()
    ]
    auc_table = [
        {"data": "demo, later cut-off", "model": "gradient boosting", "auc": 0.812,
         "low": 0.794, "high": 0.830, "brier": 0.158},
        {"data": "demo, later cut-off", "model": "BG/NBD P(alive)", "auc": 0.741,
         "low": 0.720, "high": 0.762, "brier": 0.207},
    ]  # fmt: skip
    run = PredictionRun(
        run_id=new_run_id("churn"),
        kind="churn",
        created_at=datetime.now(UTC),
        as_of=clv.as_of,
        scores=pd.DataFrame({"user_id": users.to_numpy(), "churn_risk": risk}),
        params={"churn_days": 90, "seed": seed},
        metrics={
            "auc": {
                "model": 0.812,
                "model_low": 0.794,
                "model_high": 0.830,
                "baseline_p_alive": 0.741,
            },
            "brier": {"model": 0.158, "baseline_p_alive": 0.207},
        },  # fmt: skip
        details={"calibration": calibration, "auc_table": auc_table},
    )
    save_run(p.store, run)
    return load_prediction_run(p.store, run.run_id)
