"""Cleaning rules applied to the accepted rows of a load, before they are written.

Missing values are filled (median / mode / constant; ``drop`` is a validation check that
quarantines the row), outliers are capped or only reported, and business-key duplicates
are quarantined by the validation step. Statistics (median, quartiles, percentiles) are
computed over the rows of the load being cleaned. Everything done is returned as a
report and stored with the load in ``loads.cleaning``.
"""

from __future__ import annotations

from typing import Any

import duckdb

from segmint.config import CleaningRules, ConstantFill
from segmint.store._base import Store
from segmint.store._schema import Table


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return None if row is None else row[0]


def apply_cleaning(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    table: Table,
    rules: CleaningRules | None,
    relation: str = "_accepted",
) -> dict[str, Any]:
    """Apply ``rules`` to engine relation ``relation`` in place; return what was done."""
    report: dict[str, Any] = {"missing": {}, "outliers": {}}
    if rules is None:
        return report
    for col, strategy in rules.missing.items():
        if col not in table.column_names:
            raise _unknown_column(table, col, "missing")
        c = _q(col)
        n_missing = int(_one(con, f"SELECT count(*) FROM {relation} WHERE {c} IS NULL"))
        if strategy == "drop":
            report["missing"][col] = {"strategy": "drop", "n_filled": 0}
            continue
        if n_missing == 0:
            report["missing"][col] = {"strategy": _name(strategy), "n_filled": 0}
            continue
        if isinstance(strategy, ConstantFill):
            value = strategy.constant
            con.execute(f"UPDATE {relation} SET {c} = ? WHERE {c} IS NULL", [value])
        else:
            agg = "median" if strategy == "median" else "mode"
            value = _one(con, f"SELECT {agg}({c}) FROM {relation}")
            if value is None:
                report["missing"][col] = {"strategy": agg, "n_filled": 0, "note": "all missing"}
                continue
            if table.column(col).type == "INTEGER":
                value = round(float(value))
            con.execute(f"UPDATE {relation} SET {c} = ? WHERE {c} IS NULL", [value])
        report["missing"][col] = {
            "strategy": _name(strategy),
            "n_filled": n_missing,
            "value": value if isinstance(value, int | float | str | bool) else str(value),
        }
    for col, rule in rules.outliers.items():
        if col not in table.column_names:
            raise _unknown_column(table, col, "outliers")
        c = _q(col)
        if rule.method == "iqr":
            q1, q3 = con.execute(
                f"SELECT quantile_cont({c}, 0.25), quantile_cont({c}, 0.75) FROM {relation}"
            ).fetchone()  # type: ignore[misc]
            if q1 is None:
                continue
            lo, hi = q1 - rule.factor * (q3 - q1), q3 + rule.factor * (q3 - q1)
        else:
            lo, hi = con.execute(
                f"SELECT quantile_cont({c}, {rule.lower}), quantile_cont({c}, {rule.upper}) "
                f"FROM {relation}"
            ).fetchone()  # type: ignore[misc]
            if lo is None:
                continue
        n_low = int(_one(con, f"SELECT count(*) FROM {relation} WHERE {c} < {lo}"))
        n_high = int(_one(con, f"SELECT count(*) FROM {relation} WHERE {c} > {hi}"))
        if rule.action == "cap" and n_low + n_high:
            con.execute(
                f"UPDATE {relation} SET {c} = greatest(least({c}, {hi}), {lo}) "
                f"WHERE {c} < {lo} OR {c} > {hi}"
            )
        report["outliers"][col] = {
            "method": rule.method,
            "action": rule.action,
            "lower_bound": float(lo),
            "upper_bound": float(hi),
            "n_low": n_low,
            "n_high": n_high,
        }
    return report


def _name(strategy: object) -> str:
    return "constant" if isinstance(strategy, ConstantFill) else str(strategy)


def _unknown_column(table: Table, col: str, what: str) -> Exception:
    from segmint.errors import ConfigError

    return ConfigError(
        f"cleaning.{table.name}.{what}: {col!r} is not a column of {table.name}; "
        f"columns are: {', '.join(table.column_names)}"
    )
