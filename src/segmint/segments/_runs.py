"""Versioned segmentation runs: parameters, metrics and assignments, stored and diffable."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from segmint.errors import NotFoundError
from segmint.store import Store, latest_run_sql


@dataclass(frozen=True)
class SegmentResult:
    """One run of one segmentation.

    Attributes
    ----------
    run_id : str
        Sortable id, e.g. ``s-20261126T120000-rfm-ab12cd``.
    segmentation : str
        Its name in segmint.yaml.
    method : str
        rfm, lifecycle, value_tiers, rules, kmeans, ward, dbscan, hdbscan or gmm.
    assignments : DataFrame
        One row per user: user_id, segment, probability (clusterings with membership
        probabilities), detail (e.g. the RFM code "545").
    metrics : dict
        Sizes and shares per segment, revenue share, and for clusterings silhouette, SSE,
        Calinski-Harabasz, Davies-Bouldin, stability.
    rules : dict
        Segment -> human-readable rule (custom rules, or a surrogate tree's rules).
    details : dict
        Method-specific extras: k-selection table, loadings, names, feature importances.
    """

    run_id: str
    segmentation: str
    method: str
    created_at: datetime
    feature_run_id: str | None
    as_of: datetime | None
    assignments: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> pd.Series:
        """Users per segment, largest first."""
        return self.assignments["segment"].value_counts()


def new_run_id(segmentation: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"s-{stamp}-{segmentation}-{secrets.token_hex(3)}"


def _json(v: Any) -> str:
    return json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def save_run(store: Store, result: SegmentResult) -> None:
    """Store a run and its assignments in one transaction."""
    a = result.assignments
    frame = pd.DataFrame(
        {
            "run_id": result.run_id,
            "user_id": a["user_id"].astype(str),
            "segment": a["segment"].astype(str),
            "probability": a.get("probability"),
            "detail": a["detail"].astype(str) if "detail" in a else None,
        }
    )
    frame["probability"] = frame["probability"].astype("float64")
    frame["detail"] = frame["detail"].astype("object")
    run_row = pd.DataFrame(
        [
            {
                "run_id": result.run_id,
                "segmentation": result.segmentation,
                "method": result.method,
                "created_at": result.created_at,
                "feature_run_id": result.feature_run_id,
                "as_of": result.as_of,
                "n_users": len(a),
                "params": _json(result.params),
                "metrics": _json(result.metrics),
                "details": _json({"rules": result.rules, **result.details}),
            }
        ]
    )
    with store.staging() as stage:
        run_df = stage.frame("run_df", run_row)
        run_table = stage.table(
            "run_row",
            "SELECT run_id, segmentation, method, "
            "created_at::TIMESTAMPTZ AS created_at, feature_run_id, as_of::TIMESTAMPTZ AS as_of, "
            "n_users, params::JSON AS params, metrics::JSON AS metrics, "
            f"details::JSON AS details FROM {run_df}",
        )
        assign = stage.frame("assign", frame, copy=True)
        with store.transaction():
            stage.write(
                "segment_runs",
                run_table,
                [
                    "run_id",
                    "segmentation",
                    "method",
                    "created_at",
                    "feature_run_id",
                    "as_of",
                    "n_users",
                    "params",
                    "metrics",
                    "details",
                ],
            )
            stage.write(
                "segment_assignments",
                assign,
                ["run_id", "user_id", "segment", "probability", "detail"],
            )


def list_runs(store: Store, segmentation: str | None = None) -> pd.DataFrame:
    """Runs, newest first."""
    where = "WHERE segmentation = ?" if segmentation else ""
    return store.query(
        "SELECT run_id, segmentation, method, created_at, as_of, n_users, feature_run_id "
        f"FROM segment_runs {where} ORDER BY created_at DESC, run_id DESC",
        [segmentation] if segmentation else None,
    )


def resolve_run(store: Store, ref: str) -> str:
    """A run id from a run id, a segmentation name (its latest run) or the start of one
    run id (see :func:`segmint._ids.by_prefix`)."""
    hit = store.scalar("SELECT run_id FROM segment_runs WHERE run_id = ?", [ref])
    if hit is not None:
        return str(hit)
    hit = store.scalar(latest_run_sql("segment", segmentation=ref))
    if hit is None:
        from segmint._ids import by_prefix

        hit = by_prefix(store, "segment_runs", "run_id", ref, what="segment run")
    if hit is None:
        if not store.scalar("SELECT count(*) FROM segment_runs"):
            raise NotFoundError(
                f"no segment run yet, so nothing named {ref!r}: run `segmint segment` first "
                "(it computes the features and runs the segmentations of segmint.yaml)"
            )
        raise NotFoundError(
            f"no segment run or segmentation named {ref!r}; see `segmint segments list`"
        )
    return str(hit)


def load_run(store: Store, ref: str) -> SegmentResult:
    """Load a stored run (by run id, or the latest run of a segmentation name)."""
    run_id = resolve_run(store, ref)
    row = store.query("SELECT * FROM segment_runs WHERE run_id = ?", [run_id]).iloc[0]
    a = store.query(
        "SELECT user_id, segment, probability, detail FROM segment_assignments "
        "WHERE run_id = ? ORDER BY user_id",
        [run_id],
    )
    details = json.loads(row["details"]) if row["details"] else {}
    rules = details.pop("rules", {})
    return SegmentResult(
        run_id=run_id,
        segmentation=str(row["segmentation"]),
        method=str(row["method"]),
        created_at=row["created_at"],
        feature_run_id=row["feature_run_id"],
        as_of=row["as_of"],
        assignments=a,
        params=json.loads(row["params"]) if row["params"] else {},
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
        rules=rules,
        details=details,
    )


def diff_runs(store: Store, run_a: str, run_b: str) -> pd.DataFrame:
    """Migration matrix: users per (segment in A) x (segment in B).

    Users present in only one run appear under ``(absent)``.
    """
    a, b = resolve_run(store, run_a), resolve_run(store, run_b)
    long = store.query(
        """SELECT coalesce(x.segment, '(absent)') AS from_segment,
                  coalesce(y.segment, '(absent)') AS to_segment, count(*) AS n_users
           FROM (SELECT user_id, segment FROM segment_assignments WHERE run_id = ?) x
           FULL OUTER JOIN (SELECT user_id, segment FROM segment_assignments WHERE run_id = ?) y
             ON x.user_id = y.user_id
           GROUP BY 1, 2""",
        [a, b],
    )
    matrix = long.pivot_table(
        index="from_segment", columns="to_segment", values="n_users", aggfunc="sum", fill_value=0
    )
    matrix.index.name = f"from {a}"
    matrix.columns.name = f"to {b}"
    return matrix.astype("int64")
