"""A source's ``filter:``, ``columns: {expr: ...}`` and ``query:``, checked before they
reach SQL.

Each is one row-level expression over the source's own columns (the columns of the staged
source; for JSON lines, its keys, and ``_json``, the whole object), checked with the same
allow-list as custom features but the row-level functions of ``SOURCE_VOCABULARY``. The SQL
that runs is generated from the checked tree, with every column reference resolved to the
staged column (a quoted identifier) or, for JSON lines, to the key's text.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from segmint._expressions import SOURCE_VOCABULARY, check_expression
from segmint.config import ColumnExpr, Config, QuerySource
from segmint.errors import ConfigError, SourceConfigError
from segmint.sources._readers import Staged

JSON_COLUMN = "_json"  # the parsed object of a JSON lines source, in its staged relation


def source_expression(source: str, expr: str, staged: Staged, *, what: str) -> str:
    """DuckDB SQL of one checked row-level expression over the staged source ``_raw``.

    Parameters
    ----------
    source : str
        The source's name, for messages.
    expr : str
        The expression as written in segmint.yaml.
    staged : Staged
        The staged source: its column names (or JSON keys) are the columns allowed.
    what : str
        What the expression is, for messages: ``"the filter"`` or
        ``"the expression for column amount"``.

    Raises
    ------
    segmint.errors.SourceConfigError
        When the expression is not one allowed expression over the source's columns; the
        message names the source, what the expression is for and the offending part.
    """
    by_lower: dict[str, list[str]] = {}
    for name in staged.columns:
        by_lower.setdefault(name.lower(), []).append(name)
    allowed = set(staged.columns)
    if staged.is_json_lines:
        allowed.add(JSON_COLUMN)

    def resolve(col: exp.Column) -> exp.Expression:
        written = col.name
        if staged.is_json_lines and written.lower() == JSON_COLUMN:
            return exp.column(JSON_COLUMN)
        names = by_lower[written.lower()]
        # JSON keys are case-sensitive: the key as written if there is one
        name = written if written in names else names[0]
        if len(names) > 1 and written not in names:
            raise ConfigError(
                f"the name {written[:60]!r} matches {', '.join(map(repr, names))}: write it "
                f"exactly, in double quotes, in {what}"
            )
        if staged.is_json_lines:
            path = '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            return exp.Anonymous(
                this="json_extract_string",
                expressions=[exp.column(JSON_COLUMN), exp.Literal.string(path)],
            )
        return exp.column(name, quoted=True)

    kind = "the filter is invalid" if what == "the filter" else "a column expression is invalid"
    try:
        tree = check_expression(
            expr,
            allowed,
            aggregates=False,
            context=what,
            vocabulary=SOURCE_VOCABULARY,
            resolve=resolve,
        )
    except ConfigError as exc:
        raise SourceConfigError(f"source {source!r}: {kind}: {exc}") from None
    return tree.sql(dialect="duckdb")


def check_source_sql(config: Config, names: list[str]) -> None:
    """Check, before any load, every ``filter:``, ``columns: {expr: ...}`` and ``query:`` of
    these sources that can be checked without reading a file: the shape of each expression
    (one expression, allowed functions, nesting) against the columns it names, and each
    query whole. A mistake in the last source then stops the run before the first loads;
    whether the named columns exist is checked when the source's file is read."""
    for name in names:
        source = config.sources[name]
        if isinstance(source, QuerySource):
            checked_query(name, source.query.replace("{here}", str(config.root)))
            continue
        written = [("the filter", source.filter)] if source.filter else []
        written += [
            (f"the expression for column {col}", ref.expr)
            for col, ref in source.columns.items()
            if isinstance(ref, ColumnExpr)
        ]
        for what, expr in written:
            kind = (
                "the filter is invalid"
                if what == "the filter"
                else "a column expression is invalid"
            )
            try:
                check_expression(
                    expr,
                    _named_columns(expr),
                    aggregates=False,
                    context=what,
                    vocabulary=SOURCE_VOCABULARY,
                )
            except ConfigError as exc:
                raise SourceConfigError(f"source {name!r}: {kind}: {exc}") from None


def _named_columns(expr: str) -> set[str]:
    """The column names an expression uses (empty when it does not parse: the check then
    says what is wrong with it)."""
    try:
        tree = sqlglot.parse_one(expr, dialect="duckdb")
    except (ParseError, TokenError, RecursionError):
        return set()
    return {c.name for c in tree.find_all(exp.Column) if not c.table}


# A `type: query` source is a whole DuckDB SELECT over files (to reshape an export), so
# any function may shape its values; what it may read is bounded instead: files through
# the file readers, and its own CTEs. Never the store's tables (the engine of a DuckDB store
# is the store itself: `FROM users` would copy every e-mail address into another table),
# never the engine's catalog or settings, never SQL held in a string.
FILE_READERS = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "parquet_scan",
        "read_json",
        "read_json_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_json_objects",
    }
)
_REFUSED_FUNCTIONS = frozenset(
    {"getenv", "current_setting", "query", "query_table", "glob", "read_text", "read_blob"}
)
_REFUSED_PREFIXES = ("duckdb_", "pragma_", "pg_", "sqlite_", "postgres_", "mysql_")


def checked_query(source: str, sql: str) -> str:
    """DuckDB SQL of a ``type: query`` source, generated from its checked tree.

    Raises
    ------
    segmint.errors.SourceConfigError
        When the text is not one SELECT (a statement, several, a comment hiding one), or
        reads anything but files and its own CTEs, or calls a function that reads the
        environment, the engine's catalog or SQL in a string.
    """

    def refuse(what: str) -> SourceConfigError:
        return SourceConfigError(
            f"source {source!r}: the query {what}; a query source is one SELECT over files "
            "(read_parquet, read_csv, read_json and their kin) and its own WITH tables"
        )

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except (ParseError, TokenError) as exc:
        raise refuse(f"does not parse ({str(exc).splitlines()[0][:200]})") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise refuse("is not exactly one SELECT")
    tree = statements[0]
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, exp.DDL | exp.DML | exp.Command | exp.Copy):
            raise refuse(f"holds a {node.key.upper()} statement")
        if isinstance(node, exp.Table):
            reader = node.this
            if isinstance(reader, exp.ReadCSV | exp.ReadParquet):
                continue
            if isinstance(reader, exp.Anonymous) and str(reader.name).lower() in FILE_READERS:
                continue
            if isinstance(reader, exp.Identifier) and not node.db and node.name.lower() in ctes:
                continue
            shown = node.sql("duckdb")[:80]
            raise refuse(f"reads {shown}, which is not a file reader nor one of its WITH tables")
        if isinstance(node, exp.Func):
            fname = (str(node.name) if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if fname in _REFUSED_FUNCTIONS or fname.startswith(_REFUSED_PREFIXES):
                raise refuse(f"calls {fname}(), which reads beyond the files")
    return tree.sql(dialect="duckdb")
