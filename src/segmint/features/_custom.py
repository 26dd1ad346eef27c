"""User-defined SQL: an allow-list checker for expressions and custom per-user features.

Nothing a user writes is ever pasted into SQL: the text is tokenized, parsed with sqlglot
(DuckDB dialect), every node of the tree is checked against an allow-list, and the SQL
that runs is generated back from the checked tree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Tokenizer, TokenType

from segmint.errors import ConfigError

MAX_EXPRESSION_CHARS = 2000

# Aggregate functions a feature may use (sqlglot node classes).
AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Sum,
    exp.Count,
    exp.CountIf,
    exp.Avg,
    exp.Min,
    exp.Max,
    exp.Median,
    exp.Stddev,
    exp.StddevSamp,
    exp.StddevPop,
    exp.Variance,
    exp.VariancePop,
)

# Scalar functions; none of them reads files, the environment, the clock or the session.
SCALARS: tuple[type[exp.Expression], ...] = (
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Sign,
    exp.Ln,
    exp.Log,
    exp.Exp,
    exp.Sqrt,
    exp.Pow,
    exp.Greatest,
    exp.Least,
    exp.DateDiff,
    exp.TimestampTrunc,
    exp.DateTrunc,
    exp.Extract,
    exp.TimeToUnix,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Trim,
    exp.Substring,
    exp.Concat,
    exp.Coalesce,
    exp.Nullif,
    exp.If,
    exp.Case,
    exp.Cast,
    exp.TryCast,
)

# Everything else that may appear in a tree: references, literals and operators.
STRUCTURE: tuple[type[exp.Expression], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Neg,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.DPipe,
    exp.DataType,
    exp.DataTypeParam,  # VARCHAR(10), DECIMAL(10, 2)
    exp.Distinct,  # count(DISTINCT x)
    exp.Filter,  # sum(x) FILTER (WHERE ...)
    exp.Where,
    exp.Star,  # count(*)
    exp.Var,  # units: date_diff('day', ...), extract(year FROM ...)
)

_CAST_TYPES = {
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.DOUBLE,
    exp.DataType.Type.FLOAT,
    exp.DataType.Type.DECIMAL,
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.TEXT,
    exp.DataType.Type.BOOLEAN,
    exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
}

_ALLOWED = AGGREGATES + SCALARS + STRUCTURE

ALLOWED_FUNCTIONS = sorted(
    {
        "sum",
        "count",
        "count_if",
        "avg",
        "min",
        "max",
        "median",
        "stddev",
        "stddev_samp",
        "stddev_pop",
        "variance",
        "var_pop",
        "abs",
        "round",
        "floor",
        "ceil",
        "sign",
        "ln",
        "log",
        "exp",
        "sqrt",
        "power",
        "greatest",
        "least",
        "date_diff",
        "date_trunc",
        "extract",
        "epoch",
        "lower",
        "upper",
        "length",
        "trim",
        "substring",
        "concat",
        "coalesce",
        "nullif",
        "if",
        "cast",
        "try_cast",
    }
)
"""Names of the functions user expressions may call (for documentation and messages)."""


def _fail(what: str, context: str) -> ConfigError:
    return ConfigError(f"{what} in {context}")


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key.lower()


def check_expression(
    expr: str,
    allowed_columns: Collection[str],
    *,
    aggregates: bool,
    context: str,
    qualifiers: Mapping[str, Collection[str]] | None = None,
    denied_columns: Mapping[str, str] | None = None,
) -> exp.Expression:
    """Parse one SQL expression and check it against an allow-list.

    The expression may contain only references to ``allowed_columns``, literals,
    arithmetic, comparison and boolean operators, ``CASE``/``COALESCE``/``NULLIF``/
    ``CAST`` and the functions in ``ALLOWED_FUNCTIONS``. Subqueries, statements, table
    functions, window functions, comments, ``;`` and any unknown function or column are
    refused.

    Parameters
    ----------
    expr : str
        The expression, in DuckDB's SQL dialect (e.g. ``"sum(amount) / count(*)"`` or
        ``"recency_days <= 30 AND frequency >= 3"``).
    allowed_columns : collection of str
        Column names the expression may reference (case-insensitive).
    aggregates : bool
        True for a per-user aggregate (every column must sit inside an aggregate function,
        e.g. a custom feature); False for a row-level condition (aggregate functions are
        refused, e.g. a segment rule over feature columns).
    context : str
        Where the expression comes from, used in every message (e.g. ``"feature 'x'"``).
    qualifiers : mapping of str to collection of str, optional
        Table names a column may be qualified with, and the columns of each. Without it,
        qualified names (``t.col``) are refused.
    denied_columns : mapping of str to str, optional
        Columns that exist but may not be used, with the reason shown to the user.

    Returns
    -------
    sqlglot.Expression
        The checked expression, with table qualifiers removed and names lower-cased.
        Generate SQL from it (``.sql(dialect=...)``); never use the input text.

    Raises
    ------
    segmint.errors.ConfigError
        When the expression cannot be parsed or uses anything outside the allow-list. The
        message names the offending part and ``context``.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise _fail("an empty expression", context)
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise _fail(
            f"an expression of {len(expr)} characters (at most {MAX_EXPRESSION_CHARS})", context
        )
    try:
        tokens = Tokenizer().tokenize(expr)
    except TokenError as exc:
        raise _fail(f"unreadable SQL ({exc})", context) from None
    for token in tokens:
        if token.comments:
            raise _fail("a comment: comments are not allowed", context)
        if token.token_type == TokenType.SEMICOLON:
            raise _fail("';': only one expression is allowed, not several statements", context)
    try:
        parsed = sqlglot.parse(expr, read="duckdb")
    except ParseError as exc:
        first = str(exc).splitlines()[0]
        raise _fail(f"SQL that does not parse as one expression ({first})", context) from None
    tree = parsed[0] if len(parsed) == 1 else None
    if not isinstance(tree, exp.Expression):
        raise _fail("not exactly one expression", context)
    allowed = {c.lower() for c in allowed_columns}
    quals = {t.lower(): {c.lower() for c in cols} for t, cols in (qualifiers or {}).items()}
    denied = {c.lower(): why for c, why in (denied_columns or {}).items()}

    for node in tree.walk():
        _check_node(node, context)
    _check_columns(tree, allowed, quals, denied, context)
    _check_aggregation(tree, aggregates=aggregates, context=context)

    checked = tree.copy()
    for col in list(checked.find_all(exp.Column)):
        col.replace(exp.column(col.name.lower()))
    return checked


def _check_node(node: exp.Expr, context: str) -> None:
    if isinstance(node, exp.Query | exp.Subquery):
        raise _fail("a subquery: subqueries are not allowed", context)
    if isinstance(node, exp.Window):
        raise _fail("a window function (OVER ...): window functions are not allowed", context)
    if isinstance(node, exp.DDL | exp.DML | exp.Command):
        raise _fail(f"a {node.key.upper()} statement: only an expression is allowed", context)
    if isinstance(node, exp.Func) and not isinstance(node, _ALLOWED):
        name = _function_name(node)
        close = difflib.get_close_matches(name, ALLOWED_FUNCTIONS, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _fail(f"function {name} is not allowed{hint}", context)
    if not isinstance(node, _ALLOWED):
        raise _fail(f"{node.key.upper()} ({node.sql('duckdb')[:60]}) is not allowed", context)
    if isinstance(node, exp.DataType) and node.this not in _CAST_TYPES:
        raise _fail(f"a cast to {node.sql('duckdb')} is not allowed", context)
    if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
        raise _fail("'*' outside count(*) is not allowed", context)
    if (
        isinstance(node, exp.Var)
        and node.arg_key != "unit"
        and not isinstance(node.parent, exp.Extract)
    ):
        raise _fail(f"the bare word {node.name} is not allowed", context)
    if isinstance(node, exp.In) and node.args.get("query") is not None:
        raise _fail("a subquery: subqueries are not allowed", context)


def _check_columns(
    tree: exp.Expr,
    allowed: set[str],
    quals: dict[str, set[str]],
    denied: dict[str, str],
    context: str,
) -> None:
    for col in tree.find_all(exp.Column):
        if isinstance(col.this, exp.Star):
            raise _fail(f"{col.sql('duckdb')}: '*' outside count(*) is not allowed", context)
        name = col.name.lower()
        parts = [p.name.lower() for p in col.parts]
        if len(parts) > 2:
            raise _fail(f"the name {'.'.join(parts)} is not allowed", context)
        if name in denied:
            raise _fail(f"column {name} ({denied[name]})", context)
        if len(parts) == 2:
            table = parts[0]
            if table not in quals:
                raise _fail(
                    f"the qualifier {table} in {table}.{name} is not allowed"
                    + (f" (use one of {', '.join(sorted(quals))} or none)" if quals else ""),
                    context,
                )
            if name not in quals[table]:
                raise _fail(f"unknown column {table}.{name}", context)
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise _fail(
                f"unknown column {name} ({hint}known columns: {', '.join(sorted(allowed))})",
                context,
            )


def _check_aggregation(tree: exp.Expr, *, aggregates: bool, context: str) -> None:
    aggs = [n for n in tree.walk() if isinstance(n, AGGREGATES)]
    if not aggregates:
        if aggs:
            name = _function_name(aggs[0])
            raise _fail(f"the aggregate function {name}: aggregates are not allowed here", context)
        if tree.find(exp.Filter) is not None:
            raise _fail("FILTER (WHERE ...) is not allowed here", context)
        return
    for agg in aggs:
        inner = agg.find_ancestor(*AGGREGATES)
        if inner is not None:
            raise _fail(
                f"an aggregate inside an aggregate ({_function_name(inner)} of "
                f"{_function_name(agg)}) is not allowed",
                context,
            )
    for node in tree.find_all(exp.Filter):
        if not isinstance(node.this, AGGREGATES):
            raise _fail("FILTER (WHERE ...) may only follow an aggregate function", context)
    for col in tree.find_all(exp.Column):
        if col.find_ancestor(*AGGREGATES) is None and col.find_ancestor(exp.Filter) is None:
            raise _fail(
                f"column {col.name} outside an aggregate function: a feature has one value "
                f"per user, so wrap it, e.g. sum({col.name}) or max({col.name})",
                context,
            )


# -- custom features -----------------------------------------------------------------------

CustomTable = Literal["orders", "events", "order_items", "users"]

# The columns each source offers to a custom feature. order_items is joined to its order
# and its item; each column may be qualified with the table it comes from.
SOURCE_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "orders": {
        "orders": (
            "order_id",
            "user_id",
            "ts",
            "amount",
            "currency",
            "channel",
            "discount",
            "status",
        )
    },
    "events": {
        "events": (
            "event_id",
            "user_id",
            "anonymous_id",
            "event",
            "ts",
            "channel",
            "item_id",
            "properties",
        )
    },
    "order_items": {
        "order_items": ("order_id", "line", "item_id", "quantity", "unit_price"),
        "items": ("category", "price"),
        "orders": ("user_id", "ts", "amount", "channel", "status"),
    },
    "users": {
        "users": (
            "user_id",
            "created_at",
            "gender",
            "age",
            "country",
            "city",
            "income_band",
            "acquisition_channel",
            "traits",
        )
    },
}

PERSONAL_COLUMNS = {
    "email": "personal data: not usable in features",
    "phone": "personal data: not usable in features",
    "birthday": "personal data: not usable in features; use age",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED_NAMES = {"user_id", "run_id"}


def _check_name(name: str, builtin: Collection[str]) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"custom feature name {name!r} is not a safe identifier: use lower-case letters, "
            "digits and '_', starting with a letter (at most 63 characters)"
        )
    if name in builtin or name in _RESERVED_NAMES:
        raise ConfigError(
            f"custom feature name {name!r} clashes with a built-in feature or column; "
            "choose another name"
        )
    for dialect in ("duckdb", "postgres", "spark"):
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(name)
        if len(tokens) != 1 or tokens[0].token_type != TokenType.VAR:
            raise ConfigError(
                f"custom feature name {name!r} is an SQL keyword in {dialect}; choose another name"
            )


@dataclass(frozen=True)
class CustomFeature:
    """A user-defined feature: one aggregate SQL expression over one table, per user.

    The expression is checked when the feature is created (see :func:`check_expression`)
    and computed with the same as-of cut-off as the built-in features.

    Parameters
    ----------
    name : str
        Column name of the feature: lower-case letters, digits and ``_``; must not clash
        with a built-in feature.
    expr : str
        Aggregate SQL expression in DuckDB's dialect, e.g.
        ``"count(*) FILTER (WHERE channel = 'offline')"``.
    table : {'orders', 'events', 'order_items', 'users'}
        The rows aggregated per user. ``order_items`` also offers ``items.category``,
        ``items.price`` and ``orders.ts``/``amount``/``channel``/``status``. Personal data
        (email, phone, birthday) is never available.

    Raises
    ------
    segmint.errors.ConfigError
        When the name, the table or the expression is not allowed.

    Notes
    -----
    A user without any row in ``table`` gets NULL, except when the expression is a bare
    ``count(...)``, which gives 0.
    """

    name: str
    expr: str
    table: CustomTable = "orders"

    def __post_init__(self) -> None:
        from segmint.features._catalog import CATALOG

        _check_name(self.name, CATALOG)
        if self.table not in SOURCE_COLUMNS:
            raise ConfigError(
                f"feature {self.name!r}: unknown table {self.table!r}; "
                f"use one of {', '.join(SOURCE_COLUMNS)}"
            )
        self.checked()

    @property
    def context(self) -> str:
        """How messages refer to this feature."""
        return f"feature {self.name!r}"

    def checked(self) -> exp.Expression:
        """The checked sqlglot expression (qualifiers removed)."""
        sources = SOURCE_COLUMNS[self.table]
        columns = {c for cols in sources.values() for c in cols}
        return check_expression(
            self.expr,
            columns,
            aggregates=True,
            context=self.context,
            qualifiers=sources,
            denied_columns=PERSONAL_COLUMNS,
        )
