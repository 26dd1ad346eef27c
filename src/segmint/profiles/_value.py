"""Predicted value and churn risk for profiles and personas, read from the latest stored
prediction runs (``segmint predict clv`` and ``segmint predict churn``).

A user is scored by a CLV run when they had a completed order before the run's as-of
date (BG/NBD and Gamma-Gamma describe customers who have bought); who a churn run scores
is up to that run. Nothing here fits a model: without a run there is no value block, and
nothing is said about value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from segmint._i18n import Language
from segmint.predict import VALUE_COLUMNS, latest_predictions_sql, previous_churn_run_sql
from segmint.store import Store, latest_run_sql, literal

CHURN_THRESHOLD = 0.5
"""A customer is "at high risk of churning" at this churn risk or above."""


@dataclass(frozen=True)
class _Run:
    run_id: str
    as_of: datetime | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValueRuns:
    """The latest CLV run and the latest churn run (either may be missing)."""

    clv: _Run | None
    churn: _Run | None

    @property
    def horizon_days(self) -> int | None:
        return int(self.clv.params.get("horizon_days", 365)) if self.clv else None


def _loads(raw: Any) -> dict[str, Any]:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return {}
    return dict(json.loads(raw)) if isinstance(raw, str) else dict(raw)


def latest_value_runs(store: Store) -> ValueRuns | None:
    """The latest run of each kind, or None when the store has no prediction run."""
    if not store.scalar("SELECT count(*) FROM predict_runs"):
        return None
    found: dict[str, _Run | None] = {}
    for kind in ("clv", "churn"):
        row = store.query(latest_run_sql("prediction", columns="run_id, as_of, params", kind=kind))
        if row.empty:
            found[kind] = None
            continue
        as_of: Any = row.iat[0, 1]
        found[kind] = _Run(
            run_id=str(row.iat[0, 0]),
            as_of=None if as_of is None or pd.isna(as_of) else pd.Timestamp(as_of).to_pydatetime(),
            params=_loads(row.iat[0, 2]),
        )
    return ValueRuns(clv=found["clv"], churn=found["churn"])


def _number(v: Any) -> float | None:
    if v is None:
        return None
    x = float(v)
    return x if np.isfinite(x) else None


def user_value(store: Store, user_id: str) -> dict[str, Any]:
    """One user's predicted value and churn risk: an empty dict without any prediction run.

    Keys, from the latest CLV run (when there is one): ``clv_run_id``, ``clv_as_of``,
    ``horizon_days``, ``interval`` (the level of the CLV interval), ``scored`` (False: no
    completed order before the run's as-of date, so no prediction), ``p_alive``,
    ``expected_purchases`` and ``expected_order_value`` over the horizon, ``clv``,
    ``clv_low``, ``clv_high``. From the latest churn run: ``churn_run_id``,
    ``churn_as_of``, ``churn_days``, ``churn_scored``, ``churn_risk`` and
    ``high_churn_risk`` (risk at or above ``churn_threshold``); from the previous churn run
    (the latest with an earlier as-of date, as ``churn_risk_change`` in rules and the
    decision endpoint): ``churn_previous_run_id`` and ``churn_previous_as_of`` (None without
    one) and ``churn_risk_change``, the risk now minus the risk then (None without a
    previous run, or when the user was not scored in one of the two).
    """
    runs = latest_value_runs(store)
    if runs is None:
        return {}
    out: dict[str, Any] = {}
    if runs.clv is not None:
        cols = VALUE_COLUMNS["clv"]
        row = store.query(
            f"SELECT {', '.join(cols)} FROM predictions WHERE run_id = ? AND user_id = ?",
            [runs.clv.run_id, user_id],
        )
        out |= {
            "clv_run_id": runs.clv.run_id,
            "clv_as_of": runs.clv.as_of,
            "horizon_days": runs.horizon_days,
            "interval": float(runs.clv.params.get("interval", 0.9)),
            "scored": not row.empty,
        }
        out |= {c: (None if row.empty else _number(row.iat[0, i])) for i, c in enumerate(cols)}
    if runs.churn is not None:
        risk = store.scalar(
            "SELECT churn_risk FROM predictions WHERE run_id = ? AND user_id = ?",
            [runs.churn.run_id, user_id],
        )
        scored = risk is not None and _number(risk) is not None
        previous = _previous_churn(store, runs.churn.run_id, user_id)
        before = previous[2] if previous else None
        out |= {
            "churn_run_id": runs.churn.run_id,
            "churn_as_of": runs.churn.as_of,
            "churn_days": runs.churn.params.get("churn_days"),
            "churn_scored": scored,
            "churn_risk": _number(risk) if scored else None,
            "churn_threshold": CHURN_THRESHOLD,
            "high_churn_risk": bool(scored and float(risk) >= CHURN_THRESHOLD),
            "churn_previous_run_id": previous[0] if previous else None,
            "churn_previous_as_of": previous[1] if previous else None,
            "churn_risk_change": float(risk) - before if scored and before is not None else None,
        }
    return out


def _previous_churn(
    store: Store, run_id: str, user_id: str
) -> tuple[str, datetime | None, float | None] | None:
    """The previous churn run of ``run_id`` (see :func:`previous_churn_run_sql`): its id,
    as-of date and the user's risk in it (None when not scored); None without one."""
    row = store.query(
        "SELECT run_id, as_of FROM predict_runs WHERE run_id = "
        f"({previous_churn_run_sql(f'SELECT {literal(run_id)}')})"
    )
    if row.empty:
        return None
    previous = str(row.iat[0, 0])
    as_of: Any = row.iat[0, 1]
    risk = store.scalar(
        "SELECT churn_risk FROM predictions WHERE run_id = ? AND user_id = ?", [previous, user_id]
    )
    return (
        previous,
        None if as_of is None or pd.isna(as_of) else pd.Timestamp(as_of).to_pydatetime(),
        None if risk is None else _number(risk),
    )


# -- per segment --------------------------------------------------------------------------


def segment_values(store: Store, run_id: str, segments: pd.Series) -> dict[str, dict[str, Any]]:
    """Per segment of a segmentation run: predicted value and churn figures of its members
    (empty without a prediction run).

    ``segments`` is the run's segment per user (indexed by ``user_id``). Per segment:
    ``n_users``; from the latest CLV run, over the members it scored: ``n_scored``,
    ``scored_share``, ``clv_mean``, ``clv_median``, ``clv_total``, ``clv_share`` (of the
    total over all the run's members), ``p_alive_mean``; from the latest churn run:
    ``n_churn_scored``, ``churn_risk_mean`` and ``churn_high_share`` (the share of scored
    members at ``churn_threshold`` or above). The run ids, as-of dates and horizon too.
    """
    runs = latest_value_runs(store)
    if runs is None or (runs.clv is None and runs.churn is None):
        return {}
    found = store.query(
        f"""SELECT a.user_id, p.clv, p.p_alive, p.churn_risk
            FROM segment_assignments AS a
            JOIN ({latest_predictions_sql()}) AS p ON p.user_id = a.user_id
            WHERE a.run_id = ?""",
        [run_id],
    )
    members = pd.DataFrame({"segment": segments.astype(str)})
    members.index = members.index.astype(str)
    found = found.assign(user_id=found["user_id"].astype(str)).set_index("user_id")
    frame = members.join(found, how="left")
    for c in ("clv", "p_alive", "churn_risk"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    by = frame.groupby("segment")
    clv, risk = by["clv"], by["churn_risk"]
    high = (frame["churn_risk"] >= CHURN_THRESHOLD).where(frame["churn_risk"].notna())
    stats = pd.DataFrame(
        {
            "n_users": by.size(),
            "n_scored": clv.count(),
            "clv_total": clv.sum(),
            "clv_mean": clv.mean(),
            "clv_median": clv.median(),
            "p_alive_mean": by["p_alive"].mean(),
            "n_churn_scored": risk.count(),
            "churn_risk_mean": risk.mean(),
            "churn_high_share": high.groupby(frame["segment"]).mean(),
        }
    )
    total = float(frame["clv"].sum())
    common = {
        "clv_run_id": runs.clv.run_id if runs.clv else None,
        "clv_as_of": runs.clv.as_of if runs.clv else None,
        "horizon_days": runs.horizon_days,
        "churn_run_id": runs.churn.run_id if runs.churn else None,
        "churn_as_of": runs.churn.as_of if runs.churn else None,
        "churn_threshold": CHURN_THRESHOLD,
    }
    out: dict[str, dict[str, Any]] = {}
    for s, row in stats.to_dict(orient="index").items():
        n = int(row["n_users"])
        v: dict[str, Any] = {**common, "n_users": n}
        if runs.clv is not None:
            v |= {
                "n_scored": int(row["n_scored"]),
                "scored_share": int(row["n_scored"]) / n,
                "clv_mean": _number(row["clv_mean"]),
                "clv_median": _number(row["clv_median"]),
                "clv_total": float(row["clv_total"]),
                "clv_share": float(row["clv_total"]) / total if total > 0 else None,
                "p_alive_mean": _number(row["p_alive_mean"]),
            }
        if runs.churn is not None:
            v |= {
                "n_churn_scored": int(row["n_churn_scored"]),
                "churn_risk_mean": _number(row["churn_risk_mean"]),
                "churn_high_share": _number(row["churn_high_share"]),
            }
        out[str(s)] = v
    return out


def _horizon(days: int, lang: Language) -> str:
    if days in (365, 366):
        return lang.t("the next 12 months")
    return lang.n("the next {n} day", "the next {n} days", days)


def value_sentence(value: dict[str, Any], lang: Language, currency: str | None) -> str:
    """The persona's sentence on predicted value and churn (empty when neither says
    anything: no prediction run, or no member scored). Every figure is the segment's own:
    the median CLV over the members the CLV run scored (saying which share that is when
    some were not), their share of all predicted value, and the share of churn-scored
    members at high risk."""

    def money(x: float) -> str:
        return lang.money(x, currency) if currency else lang.number(x, 3)

    parts = []
    if value.get("n_scored") and value.get("clv_median") is not None:
        fill = {
            "horizon": _horizon(int(value["horizon_days"]), lang),
            "median": money(float(value["clv_median"])),
            "share": lang.percent(float(value.get("clv_share") or 0.0), 0),
        }
        if value["n_scored"] < value["n_users"]:
            parts.append(
                lang.t(
                    "Expected value over {horizon} for the {scored} who have bought: "
                    "{median} per buyer (median), {share} of all predicted value",
                    # one decimal where whole percents would say "100%" of a part
                    scored=lang.percent(
                        float(value["scored_share"]),
                        0 if float(value["scored_share"]) < 0.995 else 1,
                    ),
                    **fill,
                )
            )
        else:
            parts.append(
                lang.t(
                    "Expected value over {horizon}: {median} per customer (median), "
                    "{share} of all predicted value",
                    **fill,
                )
            )
    if value.get("n_churn_scored") and value.get("churn_high_share") is not None:
        fill = {
            "risk": lang.percent(float(value["churn_high_share"]), 0),
            "threshold": lang.percent(float(value["churn_threshold"]), 0),
        }
        if value["n_churn_scored"] < value["n_users"]:
            parts.append(
                lang.t(
                    "{risk} of those scored at high risk of churning (risk ≥ {threshold})", **fill
                )
            )
        else:
            parts.append(lang.t("{risk} at high risk of churning (risk ≥ {threshold})", **fill))
    if not parts:
        return ""
    return lang.t("; ").join(parts) + lang.t(".")
