"""Business-rule segmentations: RFM, lifecycle, value tiers and custom rules.

Each is compiled to one SQL query over the features of a feature run (a DataFrame with one
row per user) and executed by DuckDB, or with ``engine: spark`` by Spark SQL (the same
query, transpiled by the engine); the SQL can be inspected (``*_sql`` functions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from segmint.config import (
    LifecycleSegmentation,
    RulesSegmentation,
    ValueTiersSegmentation,
)
from segmint.errors import ConfigError
from segmint.store import lit as _lit

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

# (R score, FM score) -> segment. FM = round-half-up of (F + M) / 2.
# Rows: R = 1..5, columns: FM = 1..5. See docs/segments.md.
RFM_GRID: dict[int, tuple[str, str, str, str, str]] = {
    1: ("Lost", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    4: ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Loyal"),
    5: ("New Customers", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
}
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)
NO_PURCHASE = "No Purchase"

LIFECYCLE_SEGMENTS = ("new", "active", "silent", "churned")
VALUE_TIERS = ("high-value", "potential", "general")


def _score(col: str, ascending: bool) -> str:
    """Quintile score 1-5 from ranks: ties share a score, skew does not matter."""
    order = "ASC" if ascending else "DESC"
    return (
        f"CAST(1 + floor(5.0 * (rank() OVER (ORDER BY {col} {order}) - 1) "
        f"/ count(*) OVER ()) AS INTEGER)"
    )


def rfm_sql(relation: str = "features") -> str:
    """SQL assigning R, F, M scores (1-5) and the named RFM segment to every user.

    Buyers (frequency > 0) are scored against each other; users without a completed order
    get scores 0 and the segment ``No Purchase``.
    """
    whens = " ".join(
        f"WHEN r_score = {r} AND fm_score = {fm + 1} THEN {_lit(name)}"
        for r, row in RFM_GRID.items()
        for fm, name in enumerate(row)
    )
    return f"""
    WITH scored AS (
        SELECT user_id,
               {_score("recency_days", ascending=False)} AS r_score,
               {_score("frequency", ascending=True)} AS f_score,
               {_score("monetary", ascending=True)} AS m_score
        FROM {relation} WHERE frequency > 0
    ), fm AS (
        SELECT *, CAST(floor((f_score + m_score + 1) / 2) AS INTEGER) AS fm_score FROM scored
    )
    SELECT u.user_id,
           coalesce(CASE {whens} END, {_lit(NO_PURCHASE)}) AS segment,
           coalesce(r_score, 0) AS r_score, coalesce(f_score, 0) AS f_score,
           coalesce(m_score, 0) AS m_score
    FROM {relation} u LEFT JOIN fm USING (user_id)
    ORDER BY u.user_id"""


def lifecycle_sql(spec: LifecycleSegmentation, relation: str = "features") -> str:
    """SQL for new / active / silent / churned.

    ``new``: signed up at most ``new_days`` ago; otherwise by days since the last activity
    (an order or an event): ``active`` within ``active_days``, ``churned`` after
    ``churned_days`` (or never active), ``silent`` in between.
    """
    if not spec.new_days <= spec.active_days < spec.churned_days:
        raise ConfigError(
            "lifecycle windows must satisfy new_days <= active_days < churned_days "
            f"(got {spec.new_days}, {spec.active_days}, {spec.churned_days})"
        )
    return f"""
    SELECT user_id,
           CASE WHEN tenure_days <= {spec.new_days} THEN 'new'
                WHEN last_active_days <= {spec.active_days} THEN 'active'
                WHEN last_active_days IS NULL OR last_active_days > {spec.churned_days}
                     THEN 'churned'
                ELSE 'silent' END AS segment
    FROM {relation} ORDER BY user_id"""


def value_tiers_sql(spec: ValueTiersSegmentation, relation: str = "features") -> str:
    """SQL for high-value / potential / general by quantiles of ``spec.feature`` among buyers."""
    if not spec.potential < spec.high:
        raise ConfigError(f"value_tiers: potential ({spec.potential}) must be below high")
    on = spec.feature
    return f"""
    WITH cut AS (
        SELECT quantile_cont({on}, {spec.high}) AS hi, quantile_cont({on}, {spec.potential}) AS mid
        FROM {relation} WHERE {on} > 0
    )
    SELECT user_id,
           CASE WHEN {on} > 0 AND {on} >= cut.hi THEN 'high-value'
                WHEN {on} > 0 AND {on} >= cut.mid THEN 'potential'
                ELSE 'general' END AS segment
    FROM {relation}, cut ORDER BY user_id"""


def _rule_conditions(
    spec: RulesSegmentation, columns: set[str], name: str
) -> list[tuple[str, str, str]]:
    """Each rule's context, checked condition (DuckDB SQL generated from the checked tree)
    and segment, in order."""
    from segmint.features import PERSONAL_COLUMNS, check_expression

    if not spec.rules:
        raise ConfigError(f"segmentation {name!r}: `rules` is empty")
    out = []
    for i, rule in enumerate(spec.rules):
        context = f"rule {i + 1} ({rule.segment!r}) of segmentation {name!r}"
        expr = check_expression(
            rule.when,
            columns,
            aggregates=False,
            context=context,
            denied_columns=PERSONAL_COLUMNS,
        )
        out.append((context, expr.sql(dialect="duckdb"), rule.segment))
    return out


def custom_rules_sql(
    spec: RulesSegmentation, columns: set[str], relation: str = "features", *, name: str = ""
) -> str:
    """SQL for an ordered list of (segment, condition): first match wins, else the default.

    Every condition is parsed and checked against the allow-list of feature columns and
    functions before anything runs; personal data (email, phone, birthday, traits) is
    refused.
    """
    whens = [
        f"WHEN {condition} THEN {_lit(segment)}"
        for _, condition, segment in _rule_conditions(spec, columns, name)
    ]
    return f"""
    SELECT user_id, CASE {" ".join(whens)} ELSE {_lit(spec.default)} END AS segment
    FROM {relation} ORDER BY user_id"""


def run_sql(
    sql: str,
    features: pd.DataFrame,
    *,
    engine: SparkEngine | None = None,
    context: str = "the segmentation query",
) -> pd.DataFrame:
    """Execute a segmentation query over a features DataFrame (exposed as ``features``):
    in an in-memory DuckDB, or on Spark when an ``engine`` is given (the same SQL,
    transpiled; ``context`` names the query in a ConfigError when Spark cannot run it)."""
    frame = features.reset_index() if "user_id" not in features else features
    if engine is not None:
        engine.view(frame, "features")
        return engine.to_pandas(engine.sql(sql, context=context))
    con = duckdb.connect()
    try:
        con.register("features", frame)
        return con.execute(sql).df()
    finally:
        con.close()


def run_rules(
    spec: RulesSegmentation,
    features: pd.DataFrame,
    *,
    name: str = "",
    engine: SparkEngine | None = None,
) -> pd.DataFrame:
    """Assign the segments of a rules segmentation (see :func:`custom_rules_sql`).

    A condition that compiles but fails on a value (a CAST of text that is not a number, an
    overflow) stops the run with a :class:`~segmint.errors.ConfigError` naming the rule and
    its condition, not an engine traceback. With a Spark ``engine`` each condition is
    first transpiled and analysed on its own, so one Spark SQL cannot run is named too.
    """
    frame = features.reset_index() if "user_id" not in features else features
    conditions = _rule_conditions(spec, set(frame.columns), name)
    sql = custom_rules_sql(spec, set(frame.columns), name=name)
    if engine is not None:
        return _run_rules_on_spark(sql, conditions, frame, engine, name=name)
    try:
        return run_sql(sql, frame)
    except duckdb.Error as exc:
        failure = exc
    con = duckdb.connect()
    try:
        con.register("features", frame)
        for context, condition, _ in conditions:
            try:
                con.execute(f"SELECT count(*) FROM features WHERE {condition}").fetchall()
            except duckdb.Error as exc:
                raise _failed_rule(context, condition, exc) from None
    finally:
        con.close()
    raise failure


def _run_rules_on_spark(
    sql: str,
    conditions: list[tuple[str, str, str]],
    frame: pd.DataFrame,
    engine: SparkEngine,
    *,
    name: str,
) -> pd.DataFrame:
    """:func:`run_rules` on Spark: every condition is transpiled and analysed (no job
    runs) before the query; a failure while running is traced to its rule."""
    engine.view(frame, "features")
    checks = [
        (
            context,
            condition,
            engine.sql(f"SELECT count(*) FROM features WHERE {condition}", context=context),
        )
        for context, condition, _ in conditions
    ]
    query = engine.sql(sql, context=f"segmentation {name!r}")
    try:
        return engine.to_pandas(query)
    except Exception as exc:  # Spark raises its own (Py4J, pyspark.errors) types
        failure = exc
    for context, condition, check in checks:
        try:
            check.collect()
        except Exception as exc:
            raise _failed_rule(context, condition, exc) from None
    raise failure


def _failed_rule(context: str, condition: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"{context} failed when run: {_first_line(exc)}; the condition was "
        f"{condition[:200]!r}. Fix it (e.g. TRY_CAST(... AS ...) gives NULL "
        "where CAST fails)"
    )


def _first_line(exc: BaseException) -> str:
    """The engine's message, first line, cut: it may quote a value of the data."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
