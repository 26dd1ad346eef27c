"""The allow-list checker for every SQL expression a user writes.

Custom features, segment rules and a source's ``filter:`` and ``columns: {expr: ...}`` all
go through :func:`check_expression`. Nothing a user writes is ever pasted into SQL: the
text is bounded (length, nesting), tokenized, parsed with sqlglot (DuckDB dialect), every
node of the tree is checked against an allow-list, and the SQL that runs is generated
back from the checked tree.

Each place draws its functions from a :class:`Vocabulary`: features and rules keep a small
set of aggregate and scalar functions (``FEATURE_VOCABULARY``); sources also get the
row-level string, date and JSON functions that reshape an export's values
(``SOURCE_VOCABULARY``). No function in either reads files, the environment, the clock,
the session or another table.

This module sits below the layers (sources, features and segments all import it) and
imports nothing of segmint but the errors.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, Tokenizer, TokenType

from segmint.errors import ConfigError

MAX_EXPRESSION_CHARS = 2000
# Parentheses, brackets, CASE ... END and runs of prefix operators (NOT, -, +) nested
# deeper than this are refused before parsing (see :func:`nesting`): sqlglot parses and
# generates SQL recursively, about 25 Python frames per level, and the expression is
# parsed again inside the whole feature query when the store transpiles it for
# PostgreSQL. Measured: at 20 levels that transpile still succeeds with 400 frames already
# on the stack (the CLI and pytest use well under 200); 300 parentheses took sqlglot 60 s
# to a RecursionError.
MAX_NESTING = 20

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

# Row-level functions a source's filter and column expressions may use as well: reshaping
# text, parsing dates and reading JSON keys, one row at a time.
SOURCE_SCALARS: tuple[type[exp.Expression], ...] = (
    exp.Replace,
    exp.RegexpReplace,
    exp.RegexpExtract,
    exp.RegexpLike,  # regexp_matches
    exp.SplitPart,
    exp.Left,
    exp.Right,
    exp.ConcatWs,
    exp.StartsWith,
    exp.EndsWith,
    exp.Contains,
    exp.StrPosition,  # strpos, instr, position
    exp.Pad,  # lpad, rpad (with a literal length, see _check_node)
    exp.StrToTime,  # strptime
    exp.TimeToStr,  # strftime
    exp.DateFromParts,  # make_date
    exp.TimestampFromParts,  # make_timestamp
    exp.UnixToTime,  # to_timestamp, epoch_ms
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.Week,
    exp.Day,
    exp.DayOfWeek,
    exp.DayOfYear,
    exp.Hour,
    exp.Minute,
    exp.Second,
    exp.JSONExtract,  # json_extract, ->
    exp.JSONExtractScalar,  # json_extract_string, ->>
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

# Typed reading of one key of a JSON column (users' ``traits``): ``traits.zip_code``,
# ``traits ->> 'zip_code'``, ``json_extract_string(traits, 'zip_code')`` and
# ``json_extract_scalar(...)`` all parse to the same node; it gives text (NULL where the key is
# missing), to cast with CAST / TRY_CAST. Only columns named in ``json_columns`` may be read.
JSON_KEY_NODES: tuple[type[exp.Expression], ...] = (
    exp.JSONExtractScalar,
    exp.JSONPath,
    exp.JSONPathRoot,
    exp.JSONPathKey,
)

PERSONAL_KEY_WORDS = (
    "email",
    "mail",
    "phone",
    "mobile",
    "tel",
    "name",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "username",
    "address",
    "street",
    "addr",
    "birthday",
    "birthdate",
    "dob",
    "ssn",
    "passport",
    "iban",
    "card",
    "password",
    "token",
    "ip",
    "contact",
)
"""Words that make a JSON key personal (``first_name``, ``email``, ``home_address``,
``phoneNumber``...): such a trait is never read by a feature, a rule or a breakdown."""

SOURCE_STRUCTURE: tuple[type[exp.Expression], ...] = (
    exp.JSONPath,
    exp.JSONPathRoot,
    exp.JSONPathKey,
    exp.JSONPathSubscript,
    exp.Interval,  # ts + INTERVAL 1 HOUR
    exp.Array,  # strptime(d, ['%d/%m/%Y', '%Y-%m-%d'])
)

_CAST_TYPES = frozenset(
    {
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
        exp.DataType.Type.TIMESTAMPNTZ,  # what TIMESTAMP parses to in DuckDB's dialect
        exp.DataType.Type.TIMESTAMPTZ,
    }
)
_SOURCE_CAST_TYPES = _CAST_TYPES | {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.INT128,  # HUGEINT
    exp.DataType.Type.TIME,
    exp.DataType.Type.JSON,
}

# Units of date_diff / date_trunc / extract: the ones DuckDB knows and sqlglot transpiles
# to PostgreSQL faithfully (an unknown unit otherwise fails only when a row is computed).
_DIFF_UNITS = (
    "microsecond",
    "millisecond",
    "second",
    "minute",
    "hour",
    "day",
    "month",
    "quarter",
    "year",
)
# Left out, as DuckDB and PostgreSQL disagree: date_diff('week') (Mondays crossed vs whole
# weeks: write date_diff('day', ...) / 7), date_trunc('century' / 'millennium') (2000 vs
# 2001), extract(dow / doy) (generated as DAYOFWEEK / DAYOFYEAR, unknown to PostgreSQL).
_TRUNC_UNITS = (*_DIFF_UNITS, "week", "decade")
_EXTRACT_UNITS = (*_TRUNC_UNITS, "century", "millennium", "isodow", "isoyear", "epoch")
DATE_UNITS: dict[str, tuple[str, ...]] = {
    "date_diff": _DIFF_UNITS,
    "date_trunc": _TRUNC_UNITS,
    "extract": _EXTRACT_UNITS,
}
_MAX_PAD = 1000  # lpad/rpad: the length must be a literal up to this


@dataclass(frozen=True)
class Vocabulary:
    """What an expression may call: sqlglot node classes, a few functions sqlglot does not
    model (by name), the types it may cast to, and the names shown in messages."""

    nodes: tuple[type[exp.Expression], ...]
    functions: tuple[str, ...]
    anonymous: frozenset[str] = frozenset()
    cast_types: frozenset[Any] = _CAST_TYPES  # of exp.DataType.Type
    # JSON functions take any argument (sources); otherwise only a key of ``json_columns``
    free_json: bool = False


_AGGREGATE_NAMES = {
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
}
ALLOWED_FUNCTIONS = sorted(
    _AGGREGATE_NAMES
    | {
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
        "json_extract_string",
    }
)
"""Names of the functions custom features and segment rules may call."""

SOURCE_FUNCTIONS = sorted(
    set(ALLOWED_FUNCTIONS) - _AGGREGATE_NAMES
    | {
        "replace",
        "regexp_replace",
        "regexp_extract",
        "regexp_matches",
        "split_part",
        "left",
        "right",
        "concat_ws",
        "starts_with",
        "ends_with",
        "contains",
        "strpos",
        "lpad",
        "rpad",
        "ltrim",
        "rtrim",
        "strptime",
        "try_strptime",
        "strftime",
        "make_date",
        "make_timestamp",
        "to_timestamp",
        "epoch_ms",
        "year",
        "quarter",
        "month",
        "week",
        "day",
        "dayofweek",
        "dayofyear",
        "hour",
        "minute",
        "second",
        "json_extract",
        "json_extract_string",
        "strip_accents",
    }
)
"""Names of the functions a source's ``filter`` and column expressions may call."""

FEATURE_VOCABULARY = Vocabulary(
    AGGREGATES + SCALARS + STRUCTURE + JSON_KEY_NODES, tuple(ALLOWED_FUNCTIONS)
)
SOURCE_VOCABULARY = Vocabulary(
    AGGREGATES + SCALARS + SOURCE_SCALARS + STRUCTURE + SOURCE_STRUCTURE,
    tuple(SOURCE_FUNCTIONS),
    anonymous=frozenset({"try_strptime", "strip_accents"}),
    cast_types=_SOURCE_CAST_TYPES,
    free_json=True,
)

# Prefix operators: a run of them nests like parentheses (NOT NOT NOT x).
_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}


def _fail(what: str, context: str) -> ConfigError:
    return ConfigError(f"{what} in {context}")


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key.lower()


def nesting(tokens: list[Token]) -> int:
    """How deep the tokens nest: open brackets and CASEs, each counting the prefix
    operators just before it (``NOT (`` is two levels), plus the run of prefix operators at
    the deepest point (``NOT NOT x``). Linear in the tokens, no parsing."""
    levels: list[int] = []
    depth = run = deepest = 0
    for token in tokens:
        kind = token.token_type
        if kind in _OPEN:
            levels.append(1 + run)
            depth, run = depth + levels[-1], 0
        elif kind in _CLOSE:
            depth, run = depth - (levels.pop() if levels else 1), 0
        elif kind in _PREFIX:
            run += 1
        else:
            run = 0
        deepest = max(deepest, depth + run)
    return deepest


def check_expression(
    expr: str,
    allowed_columns: Collection[str],
    *,
    aggregates: bool,
    context: str,
    qualifiers: Mapping[str, Collection[str]] | None = None,
    denied_columns: Mapping[str, str] | None = None,
    vocabulary: Vocabulary = FEATURE_VOCABULARY,
    resolve: Callable[[exp.Column], exp.Expression] | None = None,
    json_columns: Collection[str] = (),
) -> exp.Expression:
    """Parse one SQL expression and check it against an allow-list.

    The expression may contain only references to ``allowed_columns``, literals,
    arithmetic, comparison and boolean operators, ``CASE``/``COALESCE``/``NULLIF``/
    ``CAST`` and the functions of ``vocabulary`` (``ALLOWED_FUNCTIONS`` by default).
    Subqueries, statements, table functions, window functions, comments, ``;``, any
    unknown function or column, and nesting deeper than ``MAX_NESTING`` are refused.

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
    vocabulary : Vocabulary, default FEATURE_VOCABULARY
        The functions and cast types allowed (``SOURCE_VOCABULARY`` for sources).
    resolve : callable, optional
        Gives the expression that replaces each (checked) column reference in the result;
        by default the column's name, lower-cased and unqualified.
    json_columns : collection of str, optional
        JSON columns (users' ``traits``) whose keys may be read one at a time, as text:
        ``traits.zip_code`` (shorthand), ``traits ->> 'zip_code'`` or
        ``json_extract_string(traits, 'zip_code')``. The column itself is never read whole,
        even when ``denied_columns`` names it; keys that look personal (see
        ``PERSONAL_KEY_WORDS``) are refused. A key missing for a user gives NULL. The
        generated SQL reads ``CAST(col AS JSON)``, so a PostgreSQL JSONB or TEXT column works.

    Returns
    -------
    sqlglot.Expression
        The checked expression, with every column replaced by ``resolve(column)``.
        Generate SQL from it (``.sql(dialect=...)``); never use the input text.

    Raises
    ------
    segmint.errors.ConfigError
        When the expression cannot be parsed or uses anything outside the allow-list. The
        message names the offending part and ``context``.
    """
    _check_text(expr, context)
    with _depth_guard(context):
        return _check_tree(
            expr,
            allowed_columns,
            aggregates=aggregates,
            context=context,
            qualifiers=qualifiers,
            denied_columns=denied_columns,
            vocabulary=vocabulary,
            resolve=resolve,
            json_columns={c.lower() for c in json_columns},
        )


@contextlib.contextmanager
def _depth_guard(context: str) -> Iterator[None]:
    """A RecursionError as the ConfigError it means: a last resort, as the nesting bound
    of :func:`_check_text` should prevent it."""
    try:
        yield
    except RecursionError:
        raise _fail(
            f"an expression nested too deeply (at most {MAX_NESTING} levels): simplify it",
            context,
        ) from None


def _check_text(expr: Any, context: str) -> None:
    """The checks before parsing: not empty, not too long, readable tokens without a
    comment or a ``;``, nested at most :data:`MAX_NESTING` deep."""
    if not isinstance(expr, str) or not expr.strip():
        raise _fail("an empty expression", context)
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise _fail(
            f"an expression of {len(expr)} characters (at most {MAX_EXPRESSION_CHARS})", context
        )
    try:
        tokens = Tokenizer().tokenize(expr)
    except TokenError as exc:
        raise _fail(f"unreadable SQL ({str(exc)[:200]})", context) from None
    for token in tokens:
        if token.comments:
            raise _fail("a comment: comments are not allowed", context)
        if token.token_type == TokenType.SEMICOLON:
            raise _fail("';': only one expression is allowed, not several statements", context)
    deepest = nesting(tokens)
    if deepest > MAX_NESTING:
        raise _fail(
            f"an expression nested {deepest} deep (parentheses, function calls, CASE and "
            f"NOT/- in a row; at most {MAX_NESTING}): simplify it",
            context,
        )


def _check_tree(
    expr: str,
    allowed_columns: Collection[str],
    *,
    aggregates: bool,
    context: str,
    qualifiers: Mapping[str, Collection[str]] | None,
    denied_columns: Mapping[str, str] | None,
    vocabulary: Vocabulary,
    resolve: Callable[[exp.Column], exp.Expression] | None,
    json_columns: set[str],
) -> exp.Expression:
    try:
        parsed = sqlglot.parse(expr, read="duckdb")
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise _fail(f"SQL that does not parse as one expression ({first})", context) from None
    tree = parsed[0] if len(parsed) == 1 else None
    if not isinstance(tree, exp.Expression):
        raise _fail("not exactly one expression", context)
    allowed = {c.lower(): c for c in allowed_columns}
    quals = {t.lower(): {c.lower() for c in cols} for t, cols in (qualifiers or {}).items()}
    denied = {c.lower(): why for c, why in (denied_columns or {}).items()}

    if json_columns:
        tree = _expand_json_shorthand(tree, json_columns)
    for node in tree.walk():
        _check_node(node, context, vocabulary)
    if not vocabulary.free_json:
        _check_json_keys(tree, json_columns, context)
    _check_columns(tree, allowed, quals, denied, context, json_columns)
    _check_aggregation(tree, aggregates=aggregates, context=context)

    checked = tree.copy()
    for col in list(checked.find_all(exp.Column)):
        if _is_json_key_column(col, json_columns):
            col.replace(exp.cast(exp.column(col.name.lower()), exp.DataType.build("JSON")))
            continue
        col.replace(resolve(col) if resolve is not None else exp.column(col.name.lower()))
    # the SQL that runs is generated from this tree: generate it once here, so that any
    # failure to do so is the user's expression's, named as such
    checked.sql(dialect="duckdb")
    return checked


def _check_node(node: exp.Expr, context: str, vocabulary: Vocabulary) -> None:
    if isinstance(node, exp.Query | exp.Subquery):
        raise _fail("a subquery: subqueries are not allowed", context)
    if isinstance(node, exp.Window):
        raise _fail("a window function (OVER ...): window functions are not allowed", context)
    if isinstance(node, exp.DDL | exp.DML | exp.Command):
        raise _fail(f"a {node.key.upper()} statement: only an expression is allowed", context)
    if isinstance(node, exp.Anonymous) and _function_name(node) in vocabulary.anonymous:
        return
    if isinstance(node, exp.Func) and not isinstance(node, vocabulary.nodes):
        name = _function_name(node)
        close = difflib.get_close_matches(name, vocabulary.functions, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _fail(f"function {name} is not allowed{hint}", context)
    if not isinstance(node, vocabulary.nodes):
        raise _fail(f"{node.key.upper()} ({node.sql('duckdb')[:60]}) is not allowed", context)
    if isinstance(node, exp.DataType) and node.this not in vocabulary.cast_types:
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
    if isinstance(node, exp.DateDiff | exp.DateTrunc | exp.TimestampTrunc | exp.Extract):
        _check_unit(node, context)
    if isinstance(node, exp.Pad):
        length = node.args.get("expression")
        if not (
            isinstance(length, exp.Literal)
            and not length.is_string
            and length.this.isdigit()
            and int(length.this) <= _MAX_PAD
        ):
            name = "lpad" if node.args.get("is_left") else "rpad"
            raise _fail(f"{name} needs a literal length of at most {_MAX_PAD}", context)


def _check_unit(node: exp.Expr, context: str) -> None:
    """The unit of date_diff / date_trunc / extract is one known word, checked now rather
    than when a row is computed."""
    if isinstance(node, exp.Extract):
        name, unit = "extract", node.this
    else:
        name = "date_diff" if isinstance(node, exp.DateDiff) else "date_trunc"
        unit = node.args.get("unit")
    known = DATE_UNITS[name]
    if unit is None and name == "date_trunc":
        return
    if isinstance(unit, exp.Var | exp.Literal) and not (
        isinstance(unit, exp.Literal) and not unit.is_string
    ):
        word = str(unit.this).lower()
        if word in known:
            return
        close = difflib.get_close_matches(word.rstrip("s"), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(
            f"the unit {word[:40]!r} of {name}{hint}: use one of {', '.join(known)}", context
        )
    raise _fail(
        f"the unit of {name} must be a quoted word such as 'day' (one of {', '.join(known)})",
        context,
    )


def _expand_json_shorthand(tree: exp.Expression, json_columns: set[str]) -> exp.Expression:
    """``traits.zip_code`` -> ``traits ->> '$.zip_code'`` (a column qualified by a JSON
    column's name reads that key)."""
    for col in list(tree.find_all(exp.Column)):
        parts = [p.name for p in col.parts]
        if len(parts) == 2 and parts[0].lower() in json_columns:
            path = exp.JSONPath(expressions=[exp.JSONPathRoot(), exp.JSONPathKey(this=parts[1])])
            node = exp.JSONExtractScalar(this=exp.column(parts[0].lower()), expression=path)
            if col is tree:
                return node
            col.replace(node)
    return tree


def is_personal_key(key: str) -> bool:
    """Whether a JSON key names personal data (``first_name``, ``eMail``, ``home_address``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", spaced) if w]
    joined = "".join(words)
    return any(w in PERSONAL_KEY_WORDS for w in words) or any(
        k in joined for k in ("email", "phone", "address", "name", "birth", "password")
    )


def _is_json_key_column(col: exp.Column, json_columns: Collection[str]) -> bool:
    return (
        col.name.lower() in json_columns
        and not col.table
        and isinstance(col.parent, exp.JSONExtractScalar)
        and col.arg_key == "this"
    )


def _check_json_keys(tree: exp.Expr, json_columns: set[str], context: str) -> None:
    """Each JSON extraction reads one non-personal key of a JSON column named in
    ``json_columns``."""
    for node in tree.find_all(exp.JSONExtractScalar):
        target = node.this
        shown = node.sql("duckdb")[:80]
        if not (isinstance(target, exp.Column) and _is_json_key_column(target, json_columns)):
            where = " or ".join(sorted(json_columns)) or "no column here"
            raise _fail(f"{shown}: JSON keys may only be read from {where}", context)
        path = node.expression
        keys = path.expressions[1:] if isinstance(path, exp.JSONPath) else []
        if len(keys) != 1 or not isinstance(keys[0], exp.JSONPathKey):
            raise _fail(
                f"{shown}: read one top-level key, e.g. {target.name}.zip_code or "
                f"{target.name} ->> 'zip_code'",
                context,
            )
        key = str(keys[0].this)
        if is_personal_key(key):
            raise _fail(
                f"the trait {key!r}: personal data (names, contacts, addresses, birthdays) "
                "is never read by features, rules or breakdowns; use a non-personal trait",
                context,
            )


def _check_columns(
    tree: exp.Expr,
    allowed: dict[str, str],
    quals: dict[str, set[str]],
    denied: dict[str, str],
    context: str,
    json_columns: Collection[str] = (),
) -> None:
    for col in tree.find_all(exp.Column):
        if isinstance(col.this, exp.Star):
            raise _fail(f"{col.sql('duckdb')}: '*' outside count(*) is not allowed", context)
        name = col.name.lower()
        if _is_json_key_column(col, json_columns):
            continue
        parts = [p.name.lower() for p in col.parts]
        if len(parts) > 2:
            raise _fail(f"the name {'.'.join(parts)[:100]} is not allowed", context)
        if name in denied:
            raise _fail(f"column {name} ({denied[name]})", context)
        if len(parts) == 2:
            table = parts[0]
            if table not in quals:
                raise _fail(
                    f"the qualifier {table[:60]} in {table[:60]}.{name[:60]} is not allowed"
                    + (f" (use one of {', '.join(sorted(quals))} or none)" if quals else ""),
                    context,
                )
            if name not in quals[table]:
                raise _fail(f"unknown column {table}.{name[:60]}", context)
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {_shown(allowed[close[0]])}? " if close else ""
            known = ", ".join(_shown(allowed[c]) for c in sorted(allowed))
            known = known if len(known) <= 300 else known[:300] + ", ..."
            raise _fail(f"unknown column {name[:60]} ({hint}known columns: {known})", context)


def _shown(column: str) -> str:
    """A column name as the user would write it (double-quoted when it needs quotes)."""
    plain = column.replace("_", "a").isalnum() and not column[:1].isdigit()
    return column if plain else '"' + column.replace('"', '""') + '"'


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
