"""A source's ``filter:`` and ``columns: {expr: ...}``, checked before they reach SQL.

Each is one row-level expression over the source's own columns (the columns of the staged
source; for JSON lines, its keys, and ``_json``, the whole object), checked with the same
allow-list as custom features but the row-level functions of ``SOURCE_VOCABULARY``. The SQL
that runs is generated from the checked tree, with every column reference resolved to the
staged column (a quoted identifier) or, for JSON lines, to the key's text.
"""

from __future__ import annotations

from sqlglot import exp

from segmint._expressions import SOURCE_VOCABULARY, check_expression
from segmint.errors import ConfigError, SourceError
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
    segmint.errors.SourceError
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
        raise SourceError(f"source {source!r}: {kind}: {exc}") from None
    return tree.sql(dialect="duckdb")
