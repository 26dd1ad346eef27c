"""Versioned prediction runs: parameters, metrics and per-user scores, stored like
segmentation runs (``predict_runs`` and ``predictions``)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from segmint.errors import NotFoundError
from segmint.store import Store, latest_run_sql, literal

Kind = Literal["clv", "churn"]

#: the per-user columns of each kind of run
VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "clv": ("p_alive", "expected_purchases", "expected_order_value", "clv", "clv_low", "clv_high"),
    "churn": ("churn_risk",),
}
PREDICTION_COLUMNS = (*VALUE_COLUMNS["clv"], *VALUE_COLUMNS["churn"])
"""Every prediction column a user can have (features for rules and playbook conditions)."""
CHANGE_COLUMNS = ("churn_risk_change",)
"""Derived, not stored: ``churn_risk_change`` is the churn risk of a churn run minus the
user's risk in the previous churn run (the latest with an earlier as-of date); NULL when
there is no previous run or the user was not in it."""
PREDICTION_FEATURES = (*PREDICTION_COLUMNS, *CHANGE_COLUMNS)
"""The columns that rules, value tiers and playbook conditions may name."""


@dataclass(frozen=True)
class PredictionRun:
    """One run of ``segmint predict clv`` or ``segmint predict churn``.

    Attributes
    ----------
    run_id : str
        Sortable id, e.g. ``p-20261205T120000-clv-ab12cd``.
    kind : str
        ``clv`` (P(alive), expected purchases and order value, CLV and its interval) or
        ``churn`` (churn risk).
    as_of : datetime
        Only orders (and features) strictly before it were used.
    scores : DataFrame
        One row per user: ``user_id`` and the kind's columns (:data:`VALUE_COLUMNS`).
    params, metrics, details : dict
        Settings used; fit and validation figures (parameters with intervals, holdout
        check, AUC); tables for the report (holdout by calibration purchases,
        calibration bins).
    """

    run_id: str
    kind: str
    created_at: datetime
    as_of: datetime
    scores: pd.DataFrame = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.scores)


def new_run_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"p-{stamp}-{kind}-{secrets.token_hex(3)}"


def _json(v: Any) -> str:
    def default(o: Any) -> Any:
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "isoformat"):
            return o.isoformat()
        return str(o)

    return json.dumps(v, default=default, allow_nan=False) if v is not None else "null"


def _finite(v: Any) -> Any:
    """NaN and infinities as None (JSON has neither), recursively."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if hasattr(v, "item") and not isinstance(v, str):
        return _finite(v.item())
    return v


def save_run(store: Store, run: PredictionRun) -> None:
    """Store a run and its scores in one transaction."""
    frame = pd.DataFrame({"run_id": run.run_id, "user_id": run.scores["user_id"].astype(str)})
    for c in PREDICTION_COLUMNS:
        frame[c] = run.scores[c].astype("float64").to_numpy() if c in run.scores else float("nan")
    row = pd.DataFrame(
        [
            {
                "run_id": run.run_id,
                "kind": run.kind,
                "created_at": run.created_at,
                "as_of": run.as_of,
                "n_users": run.n_users,
                "params": _json(_finite(run.params)),
                "metrics": _json(_finite(run.metrics)),
                "details": _json(_finite(run.details)),
            }
        ]
    )
    columns = ["run_id", "user_id", *PREDICTION_COLUMNS]
    with store.staging() as stage:
        run_df = stage.frame("predict_run_df", row)
        run_table = stage.table(
            "predict_run_row",
            "SELECT run_id, kind, created_at::TIMESTAMPTZ AS created_at, "
            "as_of::TIMESTAMPTZ AS as_of, n_users, params::JSON AS params, "
            f"metrics::JSON AS metrics, details::JSON AS details FROM {run_df}",
        )
        scores = stage.frame("predict_scores", frame[columns], copy=True)
        with store.transaction():
            stage.write(
                "predict_runs",
                run_table,
                [
                    "run_id",
                    "kind",
                    "created_at",
                    "as_of",
                    "n_users",
                    "params",
                    "metrics",
                    "details",
                ],
            )
            stage.write("predictions", scores, columns)


def list_prediction_runs(store: Store, kind: str | None = None) -> pd.DataFrame:
    """Runs, newest first: run_id, kind, created_at, as_of, n_users."""
    where = "WHERE kind = ?" if kind else ""
    return store.query(
        "SELECT run_id, kind, created_at, as_of, n_users FROM predict_runs "
        f"{where} ORDER BY created_at DESC, run_id DESC",
        [kind] if kind else None,
    )


def resolve_prediction_run(store: Store, ref: str) -> str:
    """A run id from a run id, a kind (``clv``/``churn``: its latest run) or the start of
    a run id."""
    hit = store.scalar("SELECT run_id FROM predict_runs WHERE run_id = ?", [ref])
    if hit is None and ref in VALUE_COLUMNS:
        hit = store.scalar(latest_run_sql("prediction", kind=ref))
    if hit is None:
        from segmint._ids import by_prefix

        hit = by_prefix(store, "predict_runs", "run_id", ref, what="prediction run")
    if hit is None:
        if not store.scalar("SELECT count(*) FROM predict_runs"):
            raise NotFoundError(
                f"no prediction run yet, so nothing named {ref!r}: run `segmint predict clv` "
                "or `segmint predict churn` first"
            )
        raise NotFoundError(
            f"no prediction run {ref!r}; see `segmint predict list` (or name a kind: clv, churn)"
        )
    return str(hit)


def _loads(raw: Any) -> dict[str, Any]:
    if raw is None or (not isinstance(raw, str | dict) and pd.isna(raw)):
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def load_prediction_run(store: Store, ref: str) -> PredictionRun:
    """A stored run (by run id, or ``clv``/``churn`` for the latest of that kind)."""
    run_id = resolve_prediction_run(store, ref)
    row = store.query("SELECT * FROM predict_runs WHERE run_id = ?", [run_id]).iloc[0]
    kind = str(row["kind"])
    cols = ", ".join(VALUE_COLUMNS.get(kind, PREDICTION_COLUMNS))
    scores = store.query(
        f"SELECT user_id, {cols} FROM predictions WHERE run_id = ? ORDER BY user_id", [run_id]
    )
    return PredictionRun(
        run_id=run_id,
        kind=kind,
        created_at=row["created_at"],
        as_of=row["as_of"],
        scores=scores,
        params=_loads(row["params"]),
        metrics=_loads(row["metrics"]),
        details=_loads(row["details"]),
    )


def about_run(run: PredictionRun, currency: str) -> pd.DataFrame:
    """What a run is and what its columns mean, as ``field``/``value`` rows: the sheet
    beside the scores in an Excel export, so the file explains itself when forwarded."""
    p = run.params
    rows: list[tuple[str, Any]] = [
        ("run", run.run_id),
        ("kind", run.kind),
        ("as of", pd.Timestamp(run.as_of).strftime("%Y-%m-%d")),
        ("made", pd.Timestamp(run.created_at).strftime("%Y-%m-%d %H:%M UTC")),
        ("customers", run.n_users),
    ]
    if run.kind == "clv":
        horizon, rate, margin = p.get("horizon_days"), p.get("discount_rate"), p.get("margin")
        level = p.get("interval", 0.9)
        rows += [
            ("purchase model", {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD"}.get(str(p.get("model")))),
            ("horizon (days)", horizon),
            ("discount rate (a year)", rate),
            ("margin", margin),
            ("currency", currency),
            ("p_alive", "probability that the customer is still a customer at the as-of date"),
            ("expected_purchases", f"expected purchase days in the next {horizon} days"),
            ("expected_order_value", f"expected value of one purchase day ({currency})"),
            (
                "clv",
                f"expected revenue of the next {horizon} days x margin {margin}, discounted at "
                f"{rate} a year ({currency})",
            ),
            ("clv_low, clv_high", f"{level:.0%} credible interval of clv (the spend's part)"),
        ]
    else:
        days = p.get("churn_days")
        rows += [
            ("churn window (days)", days),
            ("churn_risk", f"probability of no completed order in the {days} days after as of"),
        ]
    return pd.DataFrame(rows, columns=["field", "value"])


def previous_churn_run_sql(run_sql: str, *, at: datetime | None = None) -> str:
    """A SELECT of the run id of the churn run before the one ``run_sql`` selects: the
    latest (by as-of date, then creation) whose as-of date is earlier, created at or before
    ``at``. Runs at the same as-of date are re-runs, not a previous state."""
    when = f" AND created_at <= {literal(at)}" if at is not None else ""
    return (
        "SELECT run_id FROM predict_runs WHERE kind = 'churn' AND as_of < "
        f"(SELECT as_of FROM predict_runs WHERE run_id = ({run_sql})){when} "
        "ORDER BY as_of DESC, created_at DESC, run_id DESC LIMIT 1"
    )


def churn_change_sql(run_sql: str, *, at: datetime | None = None) -> str:
    """A SELECT of ``user_id, churn_risk, churn_risk_change`` for the churn run that
    ``run_sql`` selects (change: minus the previous run's risk, see
    :data:`CHANGE_COLUMNS`)."""
    previous = previous_churn_run_sql(run_sql, at=at)
    return f"""
    SELECT k.user_id, k.churn_risk, k.churn_risk - b.churn_risk AS churn_risk_change
    FROM (SELECT user_id, churn_risk FROM predictions WHERE run_id = ({run_sql})) AS k
    LEFT JOIN (SELECT user_id, churn_risk FROM predictions WHERE run_id = ({previous})) AS b
      ON b.user_id = k.user_id"""


def latest_predictions_sql(*, at: datetime | None = None) -> str:
    """A SELECT of ``user_id`` and every prediction column (:data:`PREDICTION_FEATURES`:
    ``churn_risk_change`` included) from the latest run of each kind (created at or
    before ``at``), one row per user who has either: what profiles, rules, the decision
    endpoint and playbook conditions read."""
    clv = latest_run_sql("prediction", at=at, kind="clv")
    churn = latest_run_sql("prediction", at=at, kind="churn")
    value_cols = ", ".join(f"c.{c}" for c in VALUE_COLUMNS["clv"])
    return f"""
    SELECT coalesce(c.user_id, k.user_id) AS user_id, {value_cols}, k.churn_risk,
           k.churn_risk_change
    FROM (SELECT * FROM predictions WHERE run_id = ({clv})) AS c
    FULL OUTER JOIN ({churn_change_sql(churn, at=at)}) AS k
      ON c.user_id = k.user_id"""
