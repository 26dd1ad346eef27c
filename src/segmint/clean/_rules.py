"""Cleaning rules applied to the accepted rows of a load as they are written.

Missing values are filled (median / mode / constant; ``drop`` is a validation check that
quarantines the row), outliers are capped or only reported, and business-key duplicates
are quarantined by the validation step. Statistics (median, quartiles, percentiles) are
computed over the rows of the load being cleaned. Everything done is returned as a
report and stored with the load in ``loads.cleaning``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segmint._rows import first_row
from segmint.config import CleaningRules, ConstantFill
from segmint.store import Table
from segmint.store import ident as _q
from segmint.store import literal as _literal

if TYPE_CHECKING:
    from segmint.store import Staging


def plan_cleaning(
    stage: Staging,
    table: Table,
    rules: CleaningRules | None,
    relation: str,
) -> tuple[str, dict[str, Any]]:
    """Plan the cleaning of the rows of ``relation`` (the valid rows of a load, staged in
    ``stage``).

    Statistics are computed with one aggregate query per rule; the cleaning itself is a
    select list (``coalesce`` for fills, ``greatest/least`` for caps) applied as the rows are
    written, so the data is never copied to be cleaned.

    Returns
    -------
    (select_list, report)
        The SQL select list producing the table's columns, and what will be done.
    """
    report: dict[str, Any] = {"missing": {}, "outliers": {}}
    exprs = {c: _q(c) for c in table.column_names}
    if rules is None:
        return ", ".join(exprs.values()), report
    for col, strategy in rules.missing.items():
        _plan_fill(stage, table, relation, col, strategy, exprs, report["missing"])
    for col, rule in rules.outliers.items():
        _plan_outliers(stage, table, relation, col, rule, exprs, report["outliers"])
    return ", ".join(exprs.values()), report


def _plan_fill(
    stage: Staging,
    table: Table,
    relation: str,
    col: str,
    strategy: Any,
    exprs: dict[str, str],
    report: dict[str, Any],
) -> None:
    """The fill of ``col``'s missing values: its statistic over ``relation``, the
    ``coalesce`` in ``exprs[col]`` and the entry in ``report`` (the report's "missing")."""
    if col not in table.column_names:
        raise _unknown_column(table, col, "missing")
    c = _q(col)
    if strategy == "drop":  # a validation check: those rows are already quarantined
        report[col] = {"strategy": "drop", "n_filled": 0}
        return
    if isinstance(strategy, ConstantFill):
        n_missing = int(stage.scalar(f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM {relation}"))
        value: Any = strategy.constant
    else:
        agg = "median" if strategy == "median" else "mode"
        n_missing, value = first_row(  # type: ignore[misc]
            stage, f"SELECT count(*) FILTER (WHERE {c} IS NULL), {agg}({c}) FROM {relation}"
        )
        n_missing = int(n_missing)
        if value is None:
            report[col] = {"strategy": agg, "n_filled": 0, "note": "all missing"}
            return
    ctype = table.column(col).type
    if ctype == "INTEGER":
        value = round(float(value))
    literal = _literal(value)
    exprs[col] = f"coalesce({c}, CAST({literal} AS {ctype})) AS {c}"
    report[col] = {
        "strategy": _name(strategy),
        "n_filled": n_missing,
        "value": value if isinstance(value, int | float | str | bool) else str(value),
    }


def _plan_outliers(
    stage: Staging,
    table: Table,
    relation: str,
    col: str,
    rule: Any,
    exprs: dict[str, str],
    report: dict[str, Any],
) -> None:
    """The outlier bounds of ``col`` over ``relation`` (IQR or percentiles), the cap in
    ``exprs[col]`` when the rule caps, and the entry in ``report`` (its "outliers")."""
    if col not in table.column_names:
        raise _unknown_column(table, col, "outliers")
    c = _q(col)
    if rule.method == "iqr":
        q1, q3 = first_row(  # type: ignore[misc]
            stage, f"SELECT quantile_cont({c}, 0.25), quantile_cont({c}, 0.75) FROM {relation}"
        )
        if q1 is None:
            return
        lo, hi = q1 - rule.factor * (q3 - q1), q3 + rule.factor * (q3 - q1)
    else:
        lo, hi = first_row(  # type: ignore[misc]
            stage,
            f"SELECT quantile_cont({c}, {rule.lower}), quantile_cont({c}, {rule.upper}) "
            f"FROM {relation}",
        )
        if lo is None:
            return
    n_low, n_high = first_row(  # type: ignore[misc]
        stage,
        f"SELECT count(*) FILTER (WHERE {c} < {lo}), count(*) FILTER (WHERE {c} > {hi}) "
        f"FROM {relation}",
    )
    if rule.action == "cap" and n_low + n_high:
        base = exprs[col].removesuffix(f" AS {c}")
        ctype = table.column(col).type
        exprs[col] = f"CAST(greatest(least({base}, {hi}), {lo}) AS {ctype}) AS {c}"
    report[col] = {
        "method": rule.method,
        "action": rule.action,
        "lower_bound": float(lo),
        "upper_bound": float(hi),
        "n_low": int(n_low),
        "n_high": int(n_high),
    }


def _name(strategy: object) -> str:
    return "constant" if isinstance(strategy, ConstantFill) else str(strategy)


def _unknown_column(table: Table, col: str, what: str) -> Exception:
    from segmint.errors import ConfigError

    return ConfigError(
        f"cleaning.{table.name}.{what}: {col!r} is not a column of {table.name}; "
        f"columns are: {', '.join(table.column_names)}"
    )
