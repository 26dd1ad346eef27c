"""The built-in feature catalog, written once as SQL in DuckDB's dialect.

One query computes every feature for every user: orders, events, sessions and category
spend are each aggregated per user in a CTE, then LEFT JOINed to ``users`` (no correlated
subqueries, so DuckDB runs it as a handful of hash aggregates). The as-of timestamp and
the window boundaries are literals computed in Python, so the SQL contains no interval
arithmetic and transpiles cleanly to PostgreSQL and Spark SQL with sqlglot.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import sqlglot
from sqlglot import exp

from segmint._time import to_utc
from segmint.errors import ConfigError
from segmint.features._custom import CustomFeature
from segmint.store import COMPLETED, completed, lit, scratch_engine, ts_lit
from segmint.store import ident as _q


@dataclass(frozen=True)
class FeatureSpec:
    """One built-in feature: its column name, type, unit and a one-line description.

    Parameters
    ----------
    name : str
        Column name in the ``features`` table.
    type : str
        SQL type (DuckDB name): ``BIGINT``, ``INTEGER``, ``DOUBLE`` or ``VARCHAR``.
    unit : str
        Unit of the value (``days``, ``orders``, ``currency``, ``ratio``, ...).
    description : str
        What the value means, in one line.
    """

    name: str
    type: str
    unit: str
    description: str


_SPECS = (
    FeatureSpec(
        "recency_days",
        "BIGINT",
        "days",
        "UTC calendar days from the last completed order to the as-of date; NULL without orders",
    ),
    FeatureSpec("frequency", "BIGINT", "orders", "number of completed orders"),
    FeatureSpec("monetary", "DOUBLE", "currency", "total amount of completed orders"),
    FeatureSpec(
        "avg_order_value", "DOUBLE", "currency", "monetary / frequency; NULL without orders"
    ),
    FeatureSpec(
        "tenure_days",
        "BIGINT",
        "days",
        "UTC calendar days from sign-up (created_at) to the as-of date; NULL if unknown",
    ),
    FeatureSpec(
        "mean_days_between_orders",
        "DOUBLE",
        "days",
        "(last - first completed order) / (frequency - 1); NULL below two orders",
    ),
    FeatureSpec("orders_30d", "BIGINT", "orders", "completed orders in the 30 days before as-of"),
    FeatureSpec("orders_90d", "BIGINT", "orders", "completed orders in the 90 days before as-of"),
    FeatureSpec("orders_365d", "BIGINT", "orders", "completed orders in the 365 days before as-of"),
    FeatureSpec("spend_30d", "DOUBLE", "currency", "completed spend in the 30 days before as-of"),
    FeatureSpec("spend_90d", "DOUBLE", "currency", "completed spend in the 90 days before as-of"),
    FeatureSpec("spend_365d", "DOUBLE", "currency", "completed spend in the 365 days before as-of"),
    FeatureSpec(
        "refund_rate",
        "DOUBLE",
        "ratio",
        "refunded orders / all orders (any status); NULL without orders",
    ),
    FeatureSpec(
        "discount_share",
        "DOUBLE",
        "ratio",
        "discount / (amount + discount) over completed orders; NULL without orders",
    ),
    FeatureSpec(
        "last_active_days",
        "BIGINT",
        "days",
        "UTC calendar days from the last order (any status) or event to as-of; NULL if none",
    ),
    FeatureSpec("events_7d", "BIGINT", "events", "events in the 7 days before as-of"),
    FeatureSpec("events_30d", "BIGINT", "events", "events in the 30 days before as-of"),
    FeatureSpec(
        "sessions_30d",
        "BIGINT",
        "sessions",
        "sessions in the 30 days before as-of (a gap over 30 minutes starts a new session)",
    ),
    FeatureSpec(
        "offline_share",
        "DOUBLE",
        "ratio",
        "offline completed orders / completed orders; NULL without orders",
    ),
    FeatureSpec(
        "app_share", "DOUBLE", "ratio", "app events / (web + app events); NULL without any"
    ),
    FeatureSpec(
        "favourite_category",
        "VARCHAR",
        "category",
        "category with the most completed spend (quantity * unit_price); ties: first by name",
    ),
    FeatureSpec(
        "favourite_category_share",
        "DOUBLE",
        "ratio",
        "share of the completed item spend that went to favourite_category",
    ),
    FeatureSpec(
        "shares_likes_90d", "BIGINT", "events", "share and like events in the 90 days before"
    ),
    FeatureSpec("age", "INTEGER", "years", "age from users"),
    FeatureSpec("gender", "VARCHAR", "", "gender from users"),
    FeatureSpec("country", "VARCHAR", "", "country from users"),
    FeatureSpec("city", "VARCHAR", "", "city from users"),
)

CATALOG: dict[str, FeatureSpec] = {s.name: s for s in _SPECS}
"""The built-in features by name, in column order (for docs and the features table)."""

SESSION_GAP_SECONDS = 30 * 60
UNKNOWN_CATEGORY = "unknown"
"""The category of an item that has none (in category spend, shares and personas)."""
DIALECTS = ("duckdb", "postgres", "spark")


def _ts(value: datetime) -> str:
    """A TIMESTAMPTZ literal of an aware UTC instant."""
    return ts_lit(value)


def _category_spend_sql(as_of: datetime) -> str:
    """Per (user, category) completed item spend before ``as_of``, users as of then."""
    a = _ts(as_of)
    unknown = lit(UNKNOWN_CATEGORY)
    return f"""
    SELECT o.user_id,
           coalesce(i.category, {unknown}) AS category,
           sum(oi.quantity * coalesce(oi.unit_price, i.price)) AS spend
    FROM order_items AS oi
    JOIN orders AS o ON o.order_id = oi.order_id
    LEFT JOIN items AS i ON i.item_id = oi.item_id
    WHERE {completed("o")} AND o.ts < {a} AND o.user_id IS NOT NULL
    GROUP BY o.user_id, coalesce(i.category, {unknown})"""


def _users_sql(as_of: datetime) -> str:
    return (
        "SELECT user_id, created_at, age, gender, country, city FROM users "
        f"WHERE created_at IS NULL OR created_at < {_ts(as_of)}"
    )


def _builtin_ctes(as_of: datetime) -> list[str]:
    a = _ts(as_of)
    t7, t30, t90, t365 = (_ts(as_of - timedelta(days=d)) for d in (7, 30, 90, 365))
    completed = COMPLETED
    return [
        f"u AS ({_users_sql(as_of)})",
        f"""o AS (
    SELECT user_id,
           count(*) AS n_all,
           count(*) FILTER (WHERE status = 'refunded') AS n_refunded,
           count(*) FILTER (WHERE {completed}) AS frequency,
           sum(amount) FILTER (WHERE {completed}) AS monetary,
           sum(coalesce(discount, 0)) FILTER (WHERE {completed}) AS discount,
           min(ts) FILTER (WHERE {completed}) AS first_ts,
           max(ts) FILTER (WHERE {completed}) AS last_ts,
           max(ts) AS last_any_ts,
           count(*) FILTER (WHERE {completed} AND channel = 'offline') AS n_offline,
           count(*) FILTER (WHERE {completed} AND ts >= {t30}) AS orders_30d,
           count(*) FILTER (WHERE {completed} AND ts >= {t90}) AS orders_90d,
           count(*) FILTER (WHERE {completed} AND ts >= {t365}) AS orders_365d,
           sum(amount) FILTER (WHERE {completed} AND ts >= {t30}) AS spend_30d,
           sum(amount) FILTER (WHERE {completed} AND ts >= {t90}) AS spend_90d,
           sum(amount) FILTER (WHERE {completed} AND ts >= {t365}) AS spend_365d
    FROM orders
    WHERE ts < {a} AND user_id IS NOT NULL
    GROUP BY user_id)""",
        f"""e AS (
    SELECT user_id,
           count(*) FILTER (WHERE ts >= {t7}) AS events_7d,
           count(*) FILTER (WHERE ts >= {t30}) AS events_30d,
           count(*) FILTER (WHERE channel = 'app') AS n_app,
           count(*) FILTER (WHERE channel IN ('web', 'app')) AS n_web_app,
           count(*) FILTER (WHERE event IN ('share', 'like') AND ts >= {t90}) AS shares_likes_90d,
           max(ts) AS last_ts
    FROM events
    WHERE ts < {a} AND user_id IS NOT NULL
    GROUP BY user_id)""",
        f"""s AS (
    SELECT user_id, count(*) AS sessions_30d
    FROM (
        SELECT user_id, ts, lag(ts) OVER (PARTITION BY user_id ORDER BY ts) AS prev_ts
        FROM events
        WHERE ts >= {t30} AND ts < {a} AND user_id IS NOT NULL
    ) AS gaps
    WHERE prev_ts IS NULL
       OR date_diff('microsecond', prev_ts, ts) > {SESSION_GAP_SECONDS * 1_000_000}
    GROUP BY user_id)""",
        f"c AS ({_category_spend_sql(as_of)})",
        """fav AS (
    SELECT user_id, category AS favourite_category,
           spend / nullif(total, 0) AS favourite_category_share
    FROM (
        SELECT user_id, category, spend,
               sum(spend) OVER (PARTITION BY user_id) AS total,
               row_number() OVER (
                   PARTITION BY user_id ORDER BY spend DESC NULLS LAST, category
               ) AS rn
        FROM c
    ) AS ranked
    WHERE rn = 1)""",
    ]


def _builtin_columns(as_of: datetime) -> dict[str, str]:
    day = f"CAST('{as_of.date().isoformat()}' AS DATE)"

    def days_since(ts: str) -> str:
        return f"CAST(date_diff('day', CAST({ts} AS DATE), {day}) AS BIGINT)"

    def count(col: str) -> str:
        return f"CAST(coalesce({col}, 0) AS BIGINT)"

    def money(col: str) -> str:
        return f"CAST(coalesce({col}, 0) AS DOUBLE)"

    def ratio(num: str, den: str) -> str:
        return f"CAST({num} AS DOUBLE) / nullif({den}, 0)"

    return {
        "recency_days": days_since("o.last_ts"),
        "frequency": count("o.frequency"),
        "monetary": money("o.monetary"),
        "avg_order_value": ratio("o.monetary", "o.frequency"),
        "tenure_days": days_since("u.created_at"),
        "mean_days_between_orders": (
            "CAST(date_diff('microsecond', o.first_ts, o.last_ts) AS DOUBLE) / 86400000000.0 "
            "/ nullif(o.frequency - 1, 0)"
        ),
        "orders_30d": count("o.orders_30d"),
        "orders_90d": count("o.orders_90d"),
        "orders_365d": count("o.orders_365d"),
        "spend_30d": money("o.spend_30d"),
        "spend_90d": money("o.spend_90d"),
        "spend_365d": money("o.spend_365d"),
        "refund_rate": ratio("o.n_refunded", "o.n_all"),
        "discount_share": ratio("o.discount", "o.monetary + o.discount"),
        "last_active_days": days_since(
            "CASE WHEN e.last_ts IS NULL OR o.last_any_ts >= e.last_ts "
            "THEN o.last_any_ts ELSE e.last_ts END"
        ),
        "events_7d": count("e.events_7d"),
        "events_30d": count("e.events_30d"),
        "sessions_30d": count("s.sessions_30d"),
        "offline_share": ratio("o.n_offline", "o.frequency"),
        "app_share": ratio("e.n_app", "e.n_web_app"),
        "favourite_category": "fav.favourite_category",
        "favourite_category_share": "CAST(fav.favourite_category_share AS DOUBLE)",
        "shares_likes_90d": count("e.shares_likes_90d"),
        "age": "CAST(u.age AS INTEGER)",
        "gender": "u.gender",
        "country": "u.country",
        "city": "u.city",
    }


# -- custom features ------------------------------------------------------------------------

_CUSTOM_SOURCES = {
    "orders": "orders WHERE ts < {a} AND user_id IS NOT NULL",
    "events": "events WHERE ts < {a} AND user_id IS NOT NULL",
    "users": "users WHERE created_at IS NULL OR created_at < {a}",
    "order_items": """(
        SELECT oi.order_id, oi.line, oi.item_id, oi.quantity, oi.unit_price,
               i.category, i.price, o.user_id, o.ts, o.amount, o.channel, o.status
        FROM order_items AS oi
        JOIN orders AS o ON o.order_id = oi.order_id
        LEFT JOIN items AS i ON i.item_id = oi.item_id
        WHERE o.ts < {a} AND o.user_id IS NOT NULL
    ) AS src""",
}

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_TYPE_MAP = {
    "DOUBLE": "DOUBLE",
    "FLOAT": "DOUBLE",
    "VARCHAR": "VARCHAR",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
}


def _normalize_type(duck_type: str, context: str) -> str:
    if duck_type in _INTEGER_TYPES:
        return "BIGINT"
    if duck_type.startswith("DECIMAL"):
        return "DOUBLE"
    if duck_type in _TYPE_MAP:
        return _TYPE_MAP[duck_type]
    raise ConfigError(
        f"{context} has type {duck_type}; a feature must be a number, text, boolean, date or "
        "timestamp: wrap the expression in CAST(... AS DOUBLE) or CAST(... AS VARCHAR)"
    )


@functools.lru_cache(maxsize=1)
def _scratch() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with empty canonical tables, to bind and type expressions."""
    return scratch_engine()


@functools.lru_cache(maxsize=256)
def _custom_type(table: str, sql: str, context: str) -> str:
    source = _CUSTOM_SOURCES[table].format(a=_ts(datetime(2000, 1, 1, tzinfo=UTC)))
    try:
        described = (
            _scratch()
            .execute(f"DESCRIBE SELECT {sql} AS v FROM {source} GROUP BY user_id")
            .fetchall()
        )
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{context} does not compile: {first}") from None
    return _normalize_type(str(described[0][1]), context)


def custom_type(feature: CustomFeature) -> str:
    """The SQL type (DuckDB name) of a custom feature's values."""
    return _custom_type(feature.table, feature.checked().sql(dialect="duckdb"), feature.context)


def _is_count(tree: exp.Expression) -> bool:
    """A bare count(...), possibly with FILTER: 0 rather than NULL for users without rows."""
    if isinstance(tree, exp.Filter):
        tree = tree.this
    return isinstance(tree, exp.Count | exp.CountIf)


def _custom_value_sql(feature: CustomFeature) -> str:
    return f"CAST({feature.checked().sql(dialect='duckdb')} AS {custom_type(feature)})"


def custom_probe_sql(feature: CustomFeature, as_of: datetime | date) -> str:
    """A query computing one custom feature alone, every value of it (DuckDB dialect): to
    find which feature fails when the whole feature query does."""
    source = _CUSTOM_SOURCES[feature.table].format(a=_ts(to_utc(as_of)))
    return (
        f"SELECT count(v) AS n FROM (SELECT user_id, {_custom_value_sql(feature)} AS v "
        f"FROM {source} GROUP BY user_id) AS probe"
    )


def check_custom(custom: Sequence[CustomFeature]) -> tuple[CustomFeature, ...]:
    """Validate a set of custom features together (types, unique names)."""
    seen: set[str] = set()
    out = []
    for feature in custom:
        if not isinstance(feature, CustomFeature):
            raise ConfigError(
                f"custom features must be CustomFeature objects, got {type(feature).__name__}"
            )
        if feature.name in seen:
            raise ConfigError(f"custom feature {feature.name!r} is defined twice")
        seen.add(feature.name)
        custom_type(feature)
        out.append(feature)
    return tuple(out)


def feature_columns(custom: Sequence[CustomFeature] = ()) -> dict[str, str]:
    """Feature name -> SQL type (DuckDB name), built-ins first, then custom features."""
    cols = {name: spec.type for name, spec in CATALOG.items()}
    for feature in check_custom(custom):
        cols[feature.name] = custom_type(feature)
    return cols


def feature_sql(
    as_of: datetime | date,
    custom: Sequence[CustomFeature] = (),
    dialect: str = "duckdb",
) -> str:
    """The SELECT that computes every feature for every user as of ``as_of``.

    Parameters
    ----------
    as_of : datetime or date
        Only data strictly before this instant is used (orders.ts, events.ts and
        users.created_at; users without created_at are kept). A naive datetime is UTC; a
        date means its midnight UTC.
    custom : sequence of CustomFeature, optional
        User-defined features, appended after the built-ins in the given order.
    dialect : {'duckdb', 'postgres', 'spark'}
        SQL dialect of the result; the query is written in DuckDB's dialect and transpiled
        with sqlglot.

    Returns
    -------
    str
        One SELECT with columns ``user_id`` then one column per feature (see ``CATALOG``),
        one row per user created before ``as_of``.

    Raises
    ------
    segmint.errors.ConfigError
        For an unknown dialect or a custom feature that is not allowed.
    """
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown SQL dialect {dialect!r}; use one of {', '.join(DIALECTS)}")
    at = to_utc(as_of)
    custom = check_custom(custom)
    ctes = _builtin_ctes(at)
    columns = [f"{sql} AS {_q(name)}" for name, sql in _builtin_columns(at).items()]
    joins = [
        "LEFT JOIN o ON o.user_id = u.user_id",
        "LEFT JOIN e ON e.user_id = u.user_id",
        "LEFT JOIN s ON s.user_id = u.user_id",
        "LEFT JOIN fav ON fav.user_id = u.user_id",
    ]
    by_table: dict[str, list[CustomFeature]] = {}
    for feature in custom:
        by_table.setdefault(feature.table, []).append(feature)
    for table, features in by_table.items():
        alias = f"x_{table}"
        values = ", ".join(f"{_custom_value_sql(f)} AS {_q(f.name)}" for f in features)
        source = _CUSTOM_SOURCES[table].format(a=_ts(at))
        ctes.append(f"{alias} AS (SELECT user_id, {values} FROM {source} GROUP BY user_id)")
        joins.append(f"LEFT JOIN {alias} ON {alias}.user_id = u.user_id")
        for f in features:
            value = f"{alias}.{_q(f.name)}"
            if _is_count(f.checked()):
                value = f"CAST(coalesce({value}, 0) AS BIGINT)"
            columns.append(f"{value} AS {_q(f.name)}")
    sql = (
        "WITH "
        + ",\n".join(ctes)
        + "\nSELECT u.user_id,\n       "
        + ",\n       ".join(columns)
        + "\nFROM u\n"
        + "\n".join(joins)
    )
    if dialect == "duckdb":
        return sql
    return sqlglot.transpile(sql, read="duckdb", write=dialect, pretty=True)[0]


def category_shares_sql(as_of: datetime | date) -> str:
    """SELECT of user_id, category, spend, share: completed item spend per category.

    Written in DuckDB's dialect; see :func:`feature_sql` for the as-of rule.
    """
    at = to_utc(as_of)
    return f"""
    WITH u AS ({_users_sql(at)}), c AS ({_category_spend_sql(at)})
    SELECT c.user_id, c.category, CAST(c.spend AS DOUBLE) AS spend,
           CAST(c.spend AS DOUBLE) / nullif(sum(c.spend) OVER (PARTITION BY c.user_id), 0)
               AS share
    FROM c JOIN u ON u.user_id = c.user_id
    ORDER BY c.user_id, c.spend DESC NULLS LAST, c.category"""
