"""Final outcomes of an imported experiment: what each user did, as the experiment's owner
measured it, so the evaluation is complete even when the store's data ends inside the window.

``campaign_outcomes(campaign, user_id, converted, revenue, visited)`` holds one row per
imported user; a column the file did not give is NULL, and that metric comes from the
store as for any campaign. The outcome columns of an import are parsed leniently:
``1/0``, ``true/false``, ``yes/no``, ``y/n``, ``t/f`` (any case, trimmed) for the flags, a
number for revenue. A value that is none of these (blank included) rejects its row, counted
under ``bad_<column>`` in the import's summary -- never read as False or 0.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint.store import lit

if TYPE_CHECKING:
    from segmint.store import Store

OUTCOME_COLUMNS = ("converted", "revenue", "visited")
FLAG_COLUMNS = ("converted", "visited")

TRUE = {"1", "1.0", "true", "t", "yes", "y"}
FALSE = {"0", "0.0", "false", "f", "no", "n"}


def parse_flags(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(parsed, bad)``: booleans from lenient text, and where a value is not one."""
    if values.dtype == bool:
        return values.astype("boolean"), pd.Series(False, index=values.index)
    text = values.astype("string").str.strip().str.lower()
    parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
    parsed[text.isin(TRUE).fillna(False)] = True
    parsed[text.isin(FALSE).fillna(False)] = False
    return parsed, parsed.isna()


def parse_amounts(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(parsed, bad)``: floats (``1,234.5`` and ``12.50`` read), and where not finite."""
    text = values.astype("string").str.strip().str.replace(",", "", regex=False)
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = pd.Series(~np.isfinite(parsed.to_numpy(float)), index=values.index)
    return parsed, bad


def parse_outcomes(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """The outcome columns of an import frame parsed: ``(values, bad, counts)`` where
    ``values`` has the given outcome columns (positional index), ``bad`` marks rows with an
    unreadable value and ``counts`` is ``{"bad_<column>": rows}`` for each given column."""
    given = [c for c in OUTCOME_COLUMNS if c in frame.columns]
    plain = frame.reset_index(drop=True)
    values = pd.DataFrame(index=plain.index)
    bad = np.zeros(len(plain), dtype=bool)
    counts: dict[str, int] = {}
    for col in given:
        parsed, b = (parse_flags if col in FLAG_COLUMNS else parse_amounts)(plain[col])
        values[col] = parsed
        flags = np.asarray(b, dtype=bool)
        bad |= flags
        counts[f"bad_{col}"] = int(flags.sum())
    return values, bad, counts


def replace_outcomes(store: Store, campaign: str, rows: pd.DataFrame) -> None:
    """Replace a campaign's outcomes by ``rows`` (``user_id`` and the given outcome
    columns); call inside the import's transaction. An empty ``rows`` only deletes."""
    store.execute(f"DELETE FROM campaign_outcomes WHERE campaign = {lit(campaign)}")
    given = [c for c in OUTCOME_COLUMNS if c in rows.columns]
    if rows.empty or not given:
        return
    full = pd.DataFrame(
        {
            "campaign": campaign,
            "user_id": rows["user_id"].astype(str).to_numpy(),
            "converted": rows["converted"].astype(object).where(rows["converted"].notna(), None)
            if "converted" in given
            else None,
            "revenue": rows["revenue"].astype("float64") if "revenue" in given else np.nan,
            "visited": rows["visited"].astype(object).where(rows["visited"].notna(), None)
            if "visited" in given
            else None,
        }
    )
    with store.staging() as stage:
        staged = stage.table(
            "outcome_rows",
            "SELECT campaign::VARCHAR AS campaign, user_id::VARCHAR AS user_id, "
            "converted::BOOLEAN AS converted, revenue::DOUBLE AS revenue, "
            f"visited::BOOLEAN AS visited FROM {stage.frame('outcomes', full)}",
        )
        stage.write("campaign_outcomes", staged, ["campaign", "user_id", *OUTCOME_COLUMNS])


def imported_outcomes(store: Store, campaign: str) -> pd.DataFrame:
    """The campaign's imported outcomes (``user_id`` and the outcome columns; empty when
    none were imported)."""
    return store.query(
        "SELECT user_id, converted, revenue, visited FROM campaign_outcomes "
        f"WHERE campaign = {lit(campaign)}"
    )


def apply_outcomes(users: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``users`` with imported outcomes in place of the store's where a value was imported,
    and the outcome columns that were imported for every user. ``orders`` (orders per user)
    and ``events`` always come from the store."""
    if outcomes.empty:
        return users, []
    o = outcomes.assign(user_id=outcomes["user_id"].astype(str)).set_index("user_id")
    out = users.copy()
    idx = out["user_id"].astype(str)
    full = []
    for col in OUTCOME_COLUMNS:
        given = o[col].reindex(idx.to_numpy())
        has = given.notna().to_numpy()
        if not has.any():
            continue
        vals = given.to_numpy()
        cur = out[col].to_numpy().copy()
        cur[has] = vals[has]
        out[col] = cur.astype(bool if col in FLAG_COLUMNS else "float64")
        if has.all():
            full.append(col)
    return out, full


class FinalOutcomes:
    """What an import recorded about a campaign's outcomes: the imported values (maybe
    none) and the explicit outcome end (maybe none)."""

    def __init__(self, store: Store, campaign: str) -> None:
        runs = store.query(
            "SELECT params FROM campaign_runs WHERE status = 'imported' "
            f"AND campaign = {lit(campaign)}"
        )
        end = None
        for p in runs["params"]:
            value = (json.loads(p or "{}") if isinstance(p, str) else p or {}).get("outcome_end")
            if value:
                day = date.fromisoformat(str(value))
                end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        self.end: datetime | None = end
        """The exclusive end of every user's outcome window (the day after the outcome
        end, 00:00 UTC), or None."""
        self.values = imported_outcomes(store, campaign)

    @property
    def imported(self) -> bool:
        return not self.values.empty

    def completeness(
        self, window_days: int, observed: float, last_t0: pd.Timestamp, horizon: Any
    ) -> tuple[int, float]:
        """``(window_days, observed_days)`` as this campaign's completeness is judged: with
        imported outcomes the window is observed in full; with an outcome end the window
        runs from the last exposure to it and is observed as far as the store's data."""
        if self.end is not None:
            span = (pd.Timestamp(self.end) - last_t0).total_seconds() / 86_400
            window_days = max(1, math.ceil(span))
            seen = (
                0.0
                if horizon is None
                else (pd.Timestamp(horizon) - last_t0).total_seconds() / 86_400
            )
            observed = float(np.clip(seen, 0, window_days))
            if horizon is not None and pd.Timestamp(horizon) >= pd.Timestamp(self.end):
                observed = float(window_days)
        if self.imported:
            observed = float(window_days)
        return window_days, observed

    def notes(self, full: list[str]) -> list[str]:
        """A warning naming the outcomes that still come from the store."""
        if not self.imported:
            return []
        rest = [c for c in OUTCOME_COLUMNS if c not in full]
        if not rest:
            return []
        return [
            f"final outcomes were imported for {', '.join(full) or 'some users only'}; "
            f"{', '.join(rest)} (and orders and activity) come from the store's data over the "
            "window"
        ]
