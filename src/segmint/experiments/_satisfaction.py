"""Satisfaction surveys by segment: Net Promoter Score and CSAT with confidence intervals.

Survey answers are events: ``event = 'nps'`` with ``properties = {"score": 0..10}`` or
``event = 'csat'`` with ``{"score": 1..5}``. Every response in the period counts (a user
who answered twice counts twice: repeated answers are real answers, and picking "the
latest" would hide changes of mind). Since a user's answers are not independent, the
intervals are slightly too narrow when many users answer more than once.

A score is valid when it is a whole number in range (a JSON number or a numeric string,
``9``, ``"9"`` and ``9.0`` alike). Anything else is counted and reported by reason
(``missing``, ``not a number``, ``not a whole number``, ``out of range``), never silently
dropped. Counts are aggregated in the store by one SQL query (DuckDB dialect, transpiled
for PostgreSQL); scores and intervals are computed vectorised on the aggregated rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from segmint._time import to_utc
from segmint.errors import ConfigError
from segmint.segments import resolve_run
from segmint.store import Store, lit, ts_lit

__all__ = ["SURVEYS", "SatisfactionResult", "satisfaction_by_segment", "satisfaction_sql"]

log = logging.getLogger(__name__)

ALL = "(all)"
"""The segment label of the rows that cover every response."""

SURVEYS: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5)}
"""Survey event name -> (lowest, highest) valid score."""

PROMOTER_MIN = 9
"""NPS: scores 9-10 are promoters, 7-8 passives, 0-6 detractors."""
DETRACTOR_MAX = 6

MISSING = "missing"
NOT_A_NUMBER = "not a number"
NOT_WHOLE = "not a whole number"
OUT_OF_RANGE = "out of range"

_NUMBER = r"^[+-]?[0-9]+([.][0-9]+)?$"


@dataclass(frozen=True)
class SatisfactionResult:
    """NPS and CSAT per segment.

    Attributes
    ----------
    table : DataFrame
        One row per (segment, survey), ``"(all)"`` first (every response, also of users
        outside the run): ``segment``, ``survey`` (``nps`` / ``csat``), ``responses``
        (valid ones), ``invalid``, ``score`` (NPS from -100 to 100, or the mean CSAT),
        ``ci_lo``, ``ci_hi``, and for NPS ``promoters``, ``passives``, ``detractors``
        (counts; NaN for CSAT).
    invalid : DataFrame
        Invalid responses of the period by ``survey`` and ``reason``, with ``responses``.
    segment_run_id : str or None
    alpha : float
    since, until : datetime or None
        The period, ``[since, until)``.
    """

    table: pd.DataFrame
    invalid: pd.DataFrame
    segment_run_id: str | None = None
    alpha: float = 0.05
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def n_invalid(self) -> int:
        """Invalid responses in the period (all reasons, both surveys)."""
        return int(self.invalid["responses"].sum()) if not self.invalid.empty else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tables as records, NaN as None."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
            return out

        return {
            "segment_run_id": self.segment_run_id,
            "alpha": self.alpha,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "table": records(self.table),
            "invalid": records(self.invalid),
            "n_invalid": self.n_invalid,
        }


def _responses_sql(since: dt.datetime | None, until: dt.datetime | None) -> str:
    """Every survey response of the period with its score and why it is invalid (if so)."""
    where = [f"event IN ({', '.join(lit(s) for s in SURVEYS)})"]
    if since is not None:
        where.append(f"ts >= {ts_lit(since)}")
    if until is not None:
        where.append(f"ts < {ts_lit(until)}")
    out_of_range = " OR ".join(
        f"(survey = {lit(s)} AND (num < {lo} OR num > {hi}))" for s, (lo, hi) in SURVEYS.items()
    )
    return f"""
    SELECT user_id, survey, num,
           CASE WHEN raw IS NULL OR raw = '' THEN {lit(MISSING)}
                WHEN num IS NULL THEN {lit(NOT_A_NUMBER)}
                WHEN num <> floor(num) THEN {lit(NOT_WHOLE)}
                WHEN {out_of_range} THEN {lit(OUT_OF_RANGE)}
           END AS problem
    FROM (
        SELECT user_id, survey, raw,
               CASE WHEN regexp_matches(raw, {lit(_NUMBER)}) THEN CAST(raw AS DOUBLE) END AS num
        FROM (
            SELECT user_id, event AS survey,
                   trim(json_extract_string(CAST(properties AS JSON), '$.score')) AS raw
            FROM events
            WHERE {" AND ".join(where)}
        ) AS r
    ) AS v"""


def satisfaction_sql(
    segment_run_id: str | None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> str:
    """The SQL behind :func:`satisfaction_by_segment` (DuckDB dialect): per segment and
    survey the valid and invalid responses, NPS groups, and the mean and sample variance
    of the valid scores."""
    groups = f"SELECT {lit(ALL)} AS segment, survey, num, problem FROM v"
    if segment_run_id is not None:
        groups += (
            " UNION ALL SELECT a.segment, v.survey, v.num, v.problem FROM v "
            "JOIN segment_assignments AS a ON a.user_id = v.user_id "
            f"AND a.run_id = {lit(segment_run_id)}"
        )
    ok = "problem IS NULL"
    return f"""
    WITH v AS ({_responses_sql(since, until)}),
    g AS ({groups})
    SELECT segment, survey,
           count(*) FILTER (WHERE {ok}) AS responses,
           count(*) FILTER (WHERE NOT ({ok})) AS invalid,
           count(*) FILTER (WHERE {ok} AND num >= {PROMOTER_MIN}) AS promoters,
           count(*) FILTER (WHERE {ok} AND num > {DETRACTOR_MAX} AND num < {PROMOTER_MIN})
               AS passives,
           count(*) FILTER (WHERE {ok} AND num <= {DETRACTOR_MAX}) AS detractors,
           CAST(avg(num) FILTER (WHERE {ok}) AS DOUBLE) AS mean,
           CAST(var_samp(num) FILTER (WHERE {ok}) AS DOUBLE) AS var
    FROM g
    GROUP BY segment, survey"""


def _nps(
    promoters: np.ndarray, detractors: np.ndarray, n: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NPS with the Wald interval of the trinomial (Rocks 2016), vectorised.

    ``NPS = 100 (p_p - p_d)``, ``var = (p_p + p_d - (p_p - p_d)²) / n``; NaN without
    responses, bounds NaN when the variance is 0 and clipped to [-100, 100] (as
    ``segmint.experiments._stats.nps_interval``).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        pp, pd_ = promoters / n, detractors / n
        var = (pp + pd_ - (pp - pd_) ** 2) / n
        score = 100.0 * (pp - pd_)
        half = 100.0 * z * np.sqrt(var)
    ok = (n > 0) & (var > 0)
    return (
        np.where(n > 0, score, np.nan),
        np.where(ok, np.maximum(score - half, -100.0), np.nan),
        np.where(ok, np.minimum(score + half, 100.0), np.nan),
    )


def _csat(
    mean: np.ndarray, var: np.ndarray, n: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean CSAT with the Student t interval, vectorised (bounds NaN below 2 responses or
    with zero variance)."""
    ok = (n >= 2) & (var > 0)
    df = np.where(ok, n - 1.0, 1.0)
    half = stats.t.ppf(1.0 - alpha / 2.0, df) * np.sqrt(np.where(ok, var / np.where(ok, n, 1), 1))
    return (
        np.where(n > 0, mean, np.nan),
        np.where(ok, mean - half, np.nan),
        np.where(ok, mean + half, np.nan),
    )


def satisfaction_by_segment(
    store: Store,
    segment_run_id: str | None = None,
    *,
    since: dt.datetime | dt.date | None = None,
    until: dt.datetime | dt.date | None = None,
    alpha: float = 0.05,
) -> SatisfactionResult:
    """NPS and CSAT overall and per segment, with confidence intervals.

    * **NPS** = 100 x (share of 9-10 minus share of 0-6); Wald interval with the
      trinomial variance ``(p_p + p_d - (p_p - p_d)²) / n`` (Rocks 2016).
    * **CSAT** = mean score (1-5) with a Student t interval.

    Every valid response in ``[since, until)`` counts, several from one user included.
    Invalid scores are counted per row (``invalid``) and by reason
    (:attr:`SatisfactionResult.invalid`).

    Parameters
    ----------
    store : segmint.store.Store
    segment_run_id : str, optional
        A segment run (id, or segmentation name for its latest run) to break down by;
        responses of users outside the run count only in the ``"(all)"`` rows.
    since, until : date or datetime, optional
        The period (a date means its midnight UTC); open-ended when not given.
    alpha : float, default=0.05

    Returns
    -------
    SatisfactionResult
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}")
    lo_ts = None if since is None else to_utc(since)
    hi_ts = None if until is None else to_utc(until)
    if lo_ts is not None and hi_ts is not None and hi_ts <= lo_ts:
        raise ConfigError(
            f"until ({hi_ts:%Y-%m-%d %H:%M}) must be after since ({lo_ts:%Y-%m-%d %H:%M})"
        )
    run_id = None if segment_run_id is None else resolve_run(store, segment_run_id)
    table = _score_table(store.query(satisfaction_sql(run_id, since=lo_ts, until=hi_ts)), alpha)
    invalid = _invalid_responses(store, lo_ts, hi_ts)
    return SatisfactionResult(
        table=table,
        invalid=invalid,
        segment_run_id=run_id,
        alpha=alpha,
        since=lo_ts,
        until=hi_ts,
    )


def _score_table(raw: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The rows of :func:`satisfaction_sql` typed and scored (NPS or CSAT with its
    interval), the ``"(all)"`` rows first, then segments by name, surveys in order."""
    counts = ["responses", "invalid", "promoters", "passives", "detractors"]
    for col in counts:
        raw[col] = pd.to_numeric(raw[col]).astype("int64")
    for col in ("mean", "var"):
        raw[col] = pd.to_numeric(raw[col]).astype("float64")
    raw["segment"] = raw["segment"].astype(str)
    raw["survey"] = raw["survey"].astype(str)
    n = raw["responses"].to_numpy(dtype="float64")
    is_nps = (raw["survey"] == "nps").to_numpy()
    z = float(stats.norm.isf(alpha / 2.0))
    nps = _nps(raw["promoters"].to_numpy(float), raw["detractors"].to_numpy(float), n, z)
    csat = _csat(raw["mean"].to_numpy(), raw["var"].to_numpy(), n, alpha)
    for name, a, b in zip(("score", "ci_lo", "ci_hi"), nps, csat, strict=True):
        raw[name] = np.where(is_nps, a, b)
    for col in ("promoters", "passives", "detractors"):
        raw[col] = raw[col].astype("float64").where(is_nps)
    order = (
        raw["segment"].ne(ALL).astype(int).astype(str)
        + raw["segment"]
        + "\x00"
        + raw["survey"].map({s: str(i) for i, s in enumerate(SURVEYS)})
    )
    table = raw.loc[order.sort_values(kind="stable").index].reset_index(drop=True)
    return table[
        [
            "segment",
            "survey",
            "responses",
            "invalid",
            "score",
            "ci_lo",
            "ci_hi",
            "promoters",
            "passives",
            "detractors",
        ]
    ]


def _invalid_responses(
    store: Store, lo_ts: dt.datetime | None, hi_ts: dt.datetime | None
) -> pd.DataFrame:
    """Invalid responses of the period by survey and reason (logged when there are any)."""
    invalid = store.query(
        f"SELECT survey, problem AS reason, count(*) AS responses "
        f"FROM ({_responses_sql(lo_ts, hi_ts)}) AS v WHERE problem IS NOT NULL "
        "GROUP BY survey, problem"
    )
    invalid["responses"] = pd.to_numeric(invalid["responses"]).astype("int64")
    invalid = invalid.sort_values(["survey", "reason"], kind="stable").reset_index(drop=True)
    n_bad = int(invalid["responses"].sum()) if not invalid.empty else 0
    if n_bad:
        log.info(
            "satisfaction: %d invalid survey responses left out (%s)",
            n_bad,
            ", ".join(f"{r.survey} {r.reason}: {r.responses}" for r in invalid.itertuples()),
        )
    return invalid
