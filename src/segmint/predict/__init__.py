"""Customer value and churn: BG/NBD (or MBG/NBD) and Gamma-Gamma for CLV, a gradient
boosting model for churn risk, each stored as a versioned run.

The models (:class:`BetaGeo`, :class:`ModifiedBetaGeo`, :class:`GammaGamma`) work on plain
arrays without a project; :func:`predict_clv` and :func:`predict_churn` fit them on a
store's orders as of a date. See docs/predict.md.
"""

from segmint.predict._churn import churn_frame, p_no_purchase, predict_churn
from segmint.predict._clv import fit_models, holdout_check, predict_clv, score
from segmint.predict._models import BetaGeo, Fit, GammaGamma, ModifiedBetaGeo
from segmint.predict._runs import (
    CHANGE_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTION_FEATURES,
    VALUE_COLUMNS,
    PredictionRun,
    about_run,
    churn_change_sql,
    latest_predictions_sql,
    list_prediction_runs,
    load_prediction_run,
    previous_churn_run_sql,
    resolve_prediction_run,
)
from segmint.predict._summary import customer_summary, holdout_purchases, summary_sql

__all__ = [
    "about_run",
    "CHANGE_COLUMNS",
    "PREDICTION_COLUMNS",
    "PREDICTION_FEATURES",
    "VALUE_COLUMNS",
    "BetaGeo",
    "Fit",
    "GammaGamma",
    "ModifiedBetaGeo",
    "PredictionRun",
    "churn_change_sql",
    "churn_frame",
    "customer_summary",
    "fit_models",
    "holdout_check",
    "holdout_purchases",
    "latest_predictions_sql",
    "list_prediction_runs",
    "load_prediction_run",
    "p_no_purchase",
    "predict_churn",
    "predict_clv",
    "previous_churn_run_sql",
    "resolve_prediction_run",
    "score",
    "summary_sql",
]
