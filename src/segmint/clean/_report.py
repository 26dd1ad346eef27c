"""The data-quality report: per table rows, missing %, duplicates, outliers, integrity, dates.

Computed from the store with SQL written in DuckDB's dialect (transpiled for PostgreSQL),
plus the accounting of every load and the quarantine by rule.
"""

from __future__ import annotations

from typing import Any

from segmint.store import LOAD_ORDER, TABLES, Store

# (child table, column) -> (parent table, column): checked and reported
INTEGRITY = (
    ("orders", "user_id", "users", "user_id"),
    ("order_items", "order_id", "orders", "order_id"),
    ("order_items", "item_id", "items", "item_id"),
    ("events", "user_id", "users", "user_id"),
    ("events", "item_id", "items", "item_id"),
    ("consents", "user_id", "users", "user_id"),
)

NUMERIC_FOR_OUTLIERS = {
    "users": ("age",),
    "items": ("price",),
    "orders": ("amount", "discount"),
    "order_items": ("quantity", "unit_price"),
}


def quality_report(store: Store, *, iqr_factor: float = 3.0) -> dict[str, Any]:
    """Compute the data-quality report of every canonical table in ``store``.

    Parameters
    ----------
    store : Store
        The store to inspect.
    iqr_factor : float
        Values beyond ``factor`` x IQR from the quartiles count as outliers (reported only).

    Returns
    -------
    dict
        ``{"tables": {name: {...}}, "integrity": [...], "loads": [...], "quarantine": [...]}``,
        JSON-serialisable; the CLI prints it as tables and ``--json`` dumps it.
    """
    tables = {name: _table_entry(store, name, iqr_factor) for name in LOAD_ORDER}
    loads = store.query(
        "SELECT load_id, source, target_table, rows_read, rows_accepted, rows_rejected, "
        "rows_inserted, rows_updated, rows_unchanged, field_issues, retry_of, started_at "
        "FROM loads ORDER BY started_at"
    )
    # the quarantine as it is now (a load replaces its source's rows): rejected rows and
    # field issues (values set to NULL on loaded rows), counted apart
    quarantine = store.query(
        "SELECT source, target_table, kind, rule, count(*) AS n FROM quarantine "
        "GROUP BY source, target_table, kind, rule ORDER BY source, kind DESC, n DESC, rule"
    )
    return {
        "tables": tables,
        "integrity": _integrity(store),
        "loads": [
            {k: (str(v) if k == "started_at" else _py(v)) for k, v in r.items()}
            for r in loads.to_dict("records")
        ],
        "quarantine": [{k: _py(v) for k, v in r.items()} for r in quarantine.to_dict("records")],
    }


def _table_entry(store: Store, name: str, iqr_factor: float) -> dict[str, Any]:
    """One table's entry: rows, missing % per column, duplicate keys, outliers, dates."""
    t = TABLES[name]
    ts_col = {"users": "created_at", "consents": "ts"}.get(
        name, "ts" if "ts" in t.column_names else None
    )
    outlier_cols = NUMERIC_FOR_OUTLIERS.get(name, ())
    # one scan: counts, the date range and the quartiles of the outlier columns
    parts = ["count(*) AS n_rows"] + [f"count({c}) AS {c}" for c in t.column_names]
    if ts_col:
        parts += [f"min({ts_col}) AS _lo", f"max({ts_col}) AS _hi"]
    for c in outlier_cols:
        parts += [
            f"quantile_cont({c}, 0.25) AS _q1_{c}",
            f"quantile_cont({c}, 0.75) AS _q3_{c}",
        ]
    row = store.query(f"SELECT {', '.join(parts)} FROM {name}").iloc[0]
    n = int(row["n_rows"])
    missing = {c: round(100.0 * (n - int(row[c])) / n, 2) if n else 0.0 for c in t.column_names}
    keys = ", ".join(t.key)
    dups = int(
        store.scalar(
            f"SELECT coalesce(sum(n - 1), 0) FROM "
            f"(SELECT count(*) AS n FROM {name} GROUP BY {keys} HAVING count(*) > 1) d"
        )
        or 0
    )
    entry: dict[str, Any] = {
        "rows": n,
        "missing_pct": missing,
        "duplicate_keys": dups,
        "outliers": _outliers(store, name, row, n, outlier_cols, iqr_factor),
        "date_range": None,
    }
    if ts_col and n:
        lo_ts, hi_ts = row["_lo"], row["_hi"]
        entry["date_range"] = {
            "column": ts_col,
            "min": None if lo_ts is None else str(lo_ts),
            "max": None if hi_ts is None else str(hi_ts),
        }
    return entry


def _outliers(
    store: Store, name: str, row: Any, n: int, columns: tuple[str, ...], iqr_factor: float
) -> dict[str, Any]:
    """Per column: the values beyond ``iqr_factor`` x IQR from the quartiles in ``row``
    (counted in one more scan of the table), with the bounds."""
    bounds = {}
    for c in columns:
        q1, q3 = row[f"_q1_{c}"], row[f"_q3_{c}"]
        if n == 0 or q1 is None or q3 is None or q1 != q1 or q3 != q3:
            continue
        q1, q3 = float(q1), float(q3)
        bounds[c] = (q1 - iqr_factor * (q3 - q1), q3 + iqr_factor * (q3 - q1))
    out: dict[str, Any] = {}
    if bounds:  # one more scan counts every column's outliers
        counts = ", ".join(
            f"count(*) FILTER (WHERE {c} < {lo} OR {c} > {hi}) AS {c}"
            for c, (lo, hi) in bounds.items()
        )
        found = store.query(f"SELECT {counts} FROM {name}").iloc[0]
        for c, (lo, hi) in bounds.items():
            out[c] = {"n": int(found[c]), "lower_bound": lo, "upper_bound": hi}
    return out


def _integrity(store: Store) -> list[dict[str, Any]]:
    """Per reference of :data:`INTEGRITY`: the rows whose parent is missing."""
    integrity = []
    for child, col, parent, pcol in INTEGRITY:
        orphans = int(
            store.scalar(
                f"SELECT count(*) FROM {child} c WHERE c.{col} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})"
            )
        )
        integrity.append(
            {"child": f"{child}.{col}", "parent": f"{parent}.{pcol}", "orphans": orphans}
        )
    return integrity


def _py(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return v
