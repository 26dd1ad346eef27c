"""Validated, transactional, idempotent ingestion of one source into the store.

The whole pipeline is set-based SQL in the DuckDB engine, in the load's staging area
(:class:`~segmint.sources._area.Area`: each relation below is a role there, under a name
the store's staging area makes, dropped when the load ends); the source is typed once,
into one temp table that the checks and the insert both read:

1. a reader stages the source as ``raw`` (its own columns + ``_row``; a view over
   Parquet, the parsed table for text files); unparseable rows go to ``unparsed``;
2. ``typed`` (a view): the column map applied, values coerced to our types, timestamps in
   UTC; text values are cast, value-mapped and trimmed once each, in select layers below
   the coercions;
3. ``typed_rows`` (a temp table): one scan of ``typed`` materialises the typed rows once
   (the mapped columns; the views over it add the unmapped ones as constants), with a flag
   on the rows failing a row-level check and a 32-bit hash of each row's key, so neither
   the coercions nor the hash are evaluated again; where the source numbers its rows by
   position, the rowid gives the row number, which is then neither read nor stored;
4. ``rejects`` (small): every flagged row, then, among the others (``checked``),
   duplicate keys (exact copies vs conflicting rows; resolved only for the duplicated
   keys), the business-key rule of the cleaning config, and unknown references (orders ->
   users, order_items -> orders, events/consents -> users); ``valid`` is the rows not
   rejected (an anti-join: nothing is deleted from ``typed_rows``). ``rejected`` then
   reads the rejected rows again from the source, alone, for their raw content and the
   reasons of the flagged ones;
5. cleaning statistics are computed on the valid rows and applied as a select list;
6. in one transaction: accepted rows are inserted (first load) or upserted (keys dedupe,
   so a rerun adds nothing), the source's previous quarantine rows are replaced by this
   load's rejected rows (with their raw content and reasons) and field issues, and the load
   is recorded in ``loads`` with read = accepted + rejected;
7. still in that transaction, if rows were inserted, the rows of other sources held in
   the quarantine for a missing reference into this table are loaded again: the same
   pipeline over the held raw rows (:func:`_stage_held` stages them as ``raw``).

Field issues: a check on an optional column (neither key nor required) does not reject
the row. ``typed_rows`` holds the failing value as NULL and flags the row (``_fi``); the
flagged accepted rows are read again with the rejected ones, and each bad value becomes
one quarantine record (kind ``field_issue``, its field and raw value). On a row whose key
is already stored the field keeps its stored value (``field_issue_keys`` tells the store
which (key, field) pairs); on a new row it stays NULL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from segmint.clean import plan_cleaning
from segmint.config import ColumnExpr, ColumnRef, Config, CsvSource, JsonlSource, Source
from segmint.errors import (
    LoadError,
    MissingColumnError,
    NotFoundError,
    SourceConfigError,
    SourceError,
)
from segmint.sources._area import Area
from segmint.sources._checked import source_expression
from segmint.sources._frame import Frame, stage_frame
from segmint.sources._readers import Staged, _short, _sql_str, stage
from segmint.sources._seal import engine_vault, open_raw_sql, seal_accepted, seal_raw_sql
from segmint.store import ALLOWED_VALUES, TABLES, Column, Store, Table, Vault, split_columns
from segmint.store import ident as _q

log = logging.getLogger(__name__)

Callback = Callable[[str], None]

_NUMERIC = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "HUGEINT", "BIGINT", "INTEGER")


@dataclass(frozen=True)
class LoadResult:
    """What one load did. ``rows_read == rows_accepted + rows_rejected`` always; field
    issues are on accepted rows."""

    load_id: str
    source: str
    table: str
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    cleaning: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    seconds: float = 0.0
    # what the load may do to rows already stored: change the columns the source maps,
    # keep the others as stored (both empty for a skipped load)
    updates_columns: list[str] = field(default_factory=list)
    keeps_columns: list[str] = field(default_factory=list)
    # field issues: values of optional columns set to NULL on accepted rows, each recorded
    # in the quarantine (kind 'field_issue'); per field
    field_issues: int = 0
    field_issues_by_field: dict[str, int] = field(default_factory=dict)
    # of those, the ones on rows already stored: the field kept its stored value instead
    field_issues_kept: int = 0
    # a retry: the rows of this source held for a missing reference, loaded again from
    # the quarantine after table ``retry_of`` gained rows
    retry_of: str | None = None
    # the retries this load set off (each may carry its own)
    retries: list[LoadResult] = field(default_factory=list)
    # why a retry could not run (the source's mapping no longer fits the held rows): the
    # rows stay held, the load that set it off is kept
    retry_error: str | None = None

    def all_results(self) -> list[LoadResult]:
        """This load, then the retries it set off, depth first."""
        return [self, *(r for retry in self.retries for r in retry.all_results())]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_expr(col: Column, ref: str | ColumnExpr | None, staged: Staged, source: str) -> str:
    if ref is None:
        return col.default if col.default is not None else "NULL"
    if isinstance(ref, ColumnExpr):
        # checked like a custom feature; the SQL is generated from the checked tree
        what = f"the expression for column {col.name}"
        return f"({source_expression(source, ref.expr, staged, what=what)})"
    if staged.is_json_lines:
        path = _sql_str('$."' + ref.replace('"', '\\"') + '"')
        if col.type == "JSON":
            return f"json_extract(_json, {path})"
        return f"json_extract_string(_json, {path})"
    return _q(ref)


def _naive_as_utc(ts: str) -> str:
    """A naive TIMESTAMP read as UTC, as TIMESTAMPTZ: the same instant as a cast in the UTC
    session, without the per-value calendar work of the ICU cast (which stays the fallback
    for the values ``epoch_us`` cannot carry: infinities)."""
    return f"coalesce(make_timestamptz(epoch_us({ts})), CAST({ts} AS TIMESTAMPTZ))"


def _trimmed(text: str) -> str:
    """``NULLIF(trim(text), '')`` for a VARCHAR expression (evaluated several times: pass a
    column). ``trim`` copies every string; most need no trimming, and only a leading or
    trailing space (the one ASCII character DuckDB's trim removes) or a non-ASCII
    character (Unicode spaces) can change the result, so only the strings that may hold
    one are trimmed. The tests are the cheapest measured (``bench/ingest_forms.py``): a
    leading space by ``text < '!'`` (true for '' and any string whose first byte is a space
    or below), a byte comparison that costs next to nothing where ``starts_with`` costs
    about 5 ns a value; a non-ASCII character by its length in bytes differing from its
    length in characters."""
    return (
        f"NULLIF(CASE WHEN {text} < '!' OR ends_with({text}, ' ') "
        f"OR strlen({text}) <> length({text}) THEN trim({text}) ELSE {text} END, '')"
    )


# A timestamp text that carries its own offset (or Z) is cast as TIMESTAMPTZ, others are
# read in the source's time zone. The regular expression decides; the cheap test before it
# (a necessary condition: it ends with Z, or a + or - follows a colon) spares running it on
# the usual offset-less values.
_OFFSET_RE = "'\\d:\\d\\d(:\\d\\d(\\.\\d+)?)?\\s*(Z|[+-]\\d\\d(:?\\d\\d)?)$'"


def _has_offset(text: str) -> str:
    return (
        f"((ends_with({text}, 'Z') OR {text} LIKE '%:%+%' OR {text} LIKE '%:%-%') "
        f"AND regexp_matches({text}, {_OFFSET_RE}))"
    )


def _re2_char(c: str) -> str:
    """One character as a RE2 regular expression that matches only it."""
    return f"\\x{{{ord(c):X}}}"


def _number_text(text: str, decimal: str, thousands: str | None) -> str:
    """SQL: the number in ``text`` (trimmed text) written with a ``decimal`` mark and
    ``thousands`` separators (1.234,56), as text DuckDB casts (1234.56); NULL when it is
    not written so: digits grouped by three when a separator is used, at most one decimal
    mark, nothing else (1,234.56 in a file declaring decimal ',' is not read as 1.23456).
    The cast from this text to DOUBLE is correctly rounded, exactly as for 1234.56 written
    with a point: no arithmetic on floats."""
    d = _re2_char(decimal)
    whole = (
        "[0-9]+"
        if thousands is None
        else f"([0-9]+|[0-9]{{1,3}}({_re2_char(thousands)}[0-9]{{3}})+)"
    )
    pattern = f"[+-]?({whole}({d}[0-9]*)?|{d}[0-9]+)"
    out = text if thousands is None else f"replace({text}, {_sql_str(thousands)}, '')"
    out = out if decimal == "." else f"replace({out}, {_sql_str(decimal)}, '.')"
    return f"CASE WHEN regexp_full_match({text}, {_sql_str(pattern)}) THEN {out} END"


def _typed_expr(
    col: Column,
    raw: str,
    raw_type: str,
    tz: str,
    ts_format: str | None,
    text: str | None = None,
    *,
    decimal: str = ".",
    thousands: str | None = None,
) -> str:
    """The SQL coercing ``raw`` (of DuckDB type ``raw_type``) to ``col``'s type.

    ``text``, when given, names a column holding ``raw`` as trimmed text (NULL when
    empty), computed once by the caller; without it the text is computed inline.
    ``ts_format`` (strptime) reads a timestamp or date column written as text;
    ``decimal`` and ``thousands`` how numbers written as text are (:func:`_number_text`).
    """
    t = raw_type.upper()
    as_text = text or _trimmed(f"CAST({raw} AS VARCHAR)")
    if col.type in ("DOUBLE", "INTEGER") and t == "VARCHAR" and (decimal, thousands) != (".", None):
        as_text = _number_text(as_text, decimal, thousands)
    if col.type == "VARCHAR":
        if t.startswith(("DOUBLE", "FLOAT", "REAL", "DECIMAL")):
            return (
                f"CASE WHEN {raw} = trunc({raw}) AND abs({raw}) < 1e18 "
                f"THEN CAST(CAST({raw} AS BIGINT) AS VARCHAR) ELSE CAST({raw} AS VARCHAR) END"
            )
        return as_text
    if col.type == "TIMESTAMPTZ":
        tzs = _sql_str(tz)
        if t == "TIMESTAMP WITH TIME ZONE":
            return raw
        if t.startswith("TIMESTAMP") or t == "DATE":
            if tz == "UTC":
                return _naive_as_utc(f"CAST({raw} AS TIMESTAMP)")
            return f"timezone({tzs}, CAST({raw} AS TIMESTAMP))"
        if ts_format:
            return f"timezone({tzs}, try_strptime({as_text}, {_sql_str(ts_format)}))"
        naive = f"TRY_CAST({as_text} AS TIMESTAMP)"
        naive = _naive_as_utc(naive) if tz == "UTC" else f"timezone({tzs}, {naive})"
        return (
            f"CASE WHEN {_has_offset(as_text)} THEN TRY_CAST({as_text} AS TIMESTAMPTZ) "
            f"ELSE {naive} END"
        )
    if col.type == "DATE":
        if t == "DATE":
            return raw
        if t.startswith("TIMESTAMP"):
            return f"CAST({raw} AS DATE)"
        if ts_format:
            return f"CAST(try_strptime({as_text}, {_sql_str(ts_format)}) AS DATE)"
        return f"TRY_CAST({as_text} AS DATE)"
    if col.type == "DOUBLE":
        d = f"TRY_CAST({as_text} AS DOUBLE)" if t == "VARCHAR" else f"TRY_CAST({raw} AS DOUBLE)"
        return f"CASE WHEN isfinite({d}) THEN {d} END"  # NaN and inf are not amounts
    if col.type == "INTEGER":
        d = f"TRY_CAST({as_text} AS DOUBLE)"
        # 3, "3", "3.0", "1e3" are integers; 1.5 is not (TRY_CAST would round it)
        return f"CASE WHEN {d} = trunc({d}) THEN TRY_CAST({d} AS INTEGER) END"
    if col.type == "BOOLEAN":
        if t == "BOOLEAN":
            return raw
        low = f"lower({as_text})"
        return (
            f"CASE WHEN {low} IN ('true','t','yes','y','1') THEN TRUE "
            f"WHEN {low} IN ('false','f','no','n','0') THEN FALSE END"
        )
    if col.type == "JSON":
        if t == "JSON":
            return f"CASE WHEN json_type({raw}) = 'NULL' THEN NULL ELSE {raw} END"
        if t.startswith(("STRUCT", "MAP")) or t.endswith("[]"):
            return f"to_json({raw})"
        return f"CASE WHEN json_valid({as_text}) THEN CAST({as_text} AS JSON) END"
    raise SourceError(f"no coercion for type {col.type}")  # pragma: no cover - schema bug


def _present(raw: str) -> str:
    return f"({raw} IS NOT NULL AND trim(CAST({raw} AS VARCHAR)) <> '')"


def _show(raw: str) -> str:
    return f"coalesce(left(CAST({raw} AS VARCHAR), 80), 'NULL')"


Check = tuple[str, str]  # a row-level check: (SQL condition, SQL text 'rule|reason')


def is_optional(table: Table, col: Column) -> bool:
    """A column whose bad value is a field issue (the value is set to NULL, the row kept):
    neither required nor part of the table's key. A bad key or required value rejects
    the row."""
    return not col.required and col.name not in table.key


def _checks(
    table: Table,
    col: Column,
    mapped: bool,
    config: Config,
    now: datetime,
    source: Source,
) -> tuple[list[Check], list[Check]]:
    """The checks of one column, as (condition, 'rule|reason') SQL pairs: those rejecting
    the row, and those that only null the value (an optional column, see
    :func:`is_optional`). The cleaning rule ``missing: {col: drop}`` always rejects: it
    reads the value once field issues have nulled it."""
    row_level, field_level = _column_checks(table, col, mapped, config, now)
    rules = config.cleaning_for(table.name)
    if rules and mapped and rules.missing.get(col.name) == "drop":
        row_level.append(
            (
                f"{_q(col.name)} IS NULL",
                f"'missing_value_dropped|missing {col.name} (cleaning rule: drop)'",
            )
        )
    return row_level, field_level


def _column_checks(
    table: Table, col: Column, mapped: bool, config: Config, now: datetime
) -> tuple[list[Check], list[Check]]:
    """The checks of one column (before the cleaning rules): (row-level, field-level)."""
    c, r = _q(col.name), _q("r_" + col.name)
    out: list[Check] = []
    if col.required and col.name not in table.generated:
        out.append(
            (
                f"{c} IS NULL AND NOT {_present(r)}",
                f"'missing_required|missing required field {col.name}'",
            )
        )
    if not mapped:
        return out, []
    out.append(_type_check(col, c, r))
    if col.type in ("TIMESTAMPTZ", "DATE"):
        out += _time_checks(col, c, config, now)
    out += _range_checks(col, c, config)
    out += _allowed_check(table, col, c, config)
    return ([], out) if is_optional(table, col) else (out, [])


def _type_check(col: Column, c: str, r: str) -> Check:
    """A value present in the source (``r``) but not read as the column's type (``c``)."""
    kind = {
        "TIMESTAMPTZ": "unparseable_timestamp",
        "DATE": "unparseable_timestamp",
        "JSON": "malformed_json",
    }.get(col.type, "bad_type")
    what = {
        "unparseable_timestamp": f"unparseable timestamp in {col.name}: ",
        "malformed_json": f"malformed JSON in {col.name}: ",
        "bad_type": f"cannot read {col.name} as {col.type}: ",
    }[kind]
    return (f"{c} IS NULL AND {_present(r)}", f"'{kind}|{what}' || {_show(r)}")


def _time_checks(col: Column, c: str, config: Config, now: datetime) -> list[Check]:
    """A time in the future (beyond the tolerance) or implausibly old."""
    v = config.validation
    limit = (now + timedelta(hours=v.future_tolerance_hours)).strftime("%Y-%m-%d %H:%M:%S")
    # event times before validation.min_date are implausible; dates (birthdays) before 1900
    floor = v.min_date if col.type == "TIMESTAMPTZ" else "1900-01-01"
    return [
        (
            f"{c} > TIMESTAMPTZ {_sql_str(limit + '+00')}",
            f"'future_timestamp|{col.name} is in the future: ' || {_show(c)}",
        ),
        (
            f"{c} < TIMESTAMPTZ {_sql_str(floor + ' 00:00:00+00')}",
            f"{_sql_str(f'implausible_timestamp|{col.name} is before {floor}: ')} || {_show(c)}",
        ),
    ]


def _range_checks(col: Column, c: str, config: Config) -> list[Check]:
    """The plausible ranges of amounts, quantities and ages, and the shape of an email."""
    v = config.validation
    out: list[Check] = []
    if col.name in ("amount", "price", "unit_price", "discount"):
        out.append((f"{c} < 0", f"'negative_amount|negative {col.name}: ' || {_show(c)}"))
        out.append(
            (
                f"{c} > {v.max_amount}",
                f"'absurd_amount|absurd {col.name}: ' || {_show(c)} || "
                f"' (above validation.max_amount {v.max_amount:g})'",
            )
        )
    if col.name == "quantity":
        out.append(
            (
                f"{c} <= 0 OR {c} > {v.max_quantity}",
                f"'bad_quantity|quantity out of range 1..{v.max_quantity}: ' || {_show(c)}",
            )
        )
    if col.name == "age":
        out.append(
            (f"{c} < 0 OR {c} > 120", f"'implausible_age|age out of range 0..120: ' || {_show(c)}")
        )
    if col.name == "email":
        out.append(
            (
                f"{c} IS NOT NULL AND NOT regexp_full_match({c}, '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')",
                "'malformed_email|malformed email address'",
            )
        )
    return out


def _allowed_check(table: Table, col: Column, c: str, config: Config) -> list[Check]:
    """An enumerated column's value outside its allowed values (with a did-you-mean)."""
    allowed = _allowed_values(table, col.name, config)
    if not allowed:
        return []
    lst = ", ".join(_sql_str(a) for a in allowed)
    fix = (
        f"add it under consent.{col.name}s in segmint.yaml or map it under values:"
        if table.name == "consents"
        else "map it under values:"
    )
    return [
        (
            f"{c} IS NOT NULL AND {c} NOT IN ({lst})",
            f"'unknown_value|{col.name} ''' || {_show(c)} || "
            f"''' is not one of {', '.join(allowed)}' || {_did_you_mean(c, allowed)} || "
            f"' ({fix})'",
        )
    ]


def _allowed_values(table: Table, column: str, config: Config) -> tuple[str, ...] | None:
    """The values an enumerated column may hold (its source values are lower-cased), or
    None. Consent channels and purposes are the project's vocabulary (``consent:``)."""
    if table.name == "consents" and column == "channel":
        return config.consent.all_channels
    if table.name == "consents" and column == "purpose":
        return config.consent.all_purposes
    return ALLOWED_VALUES.get((table.name, column))


def _did_you_mean(value: str, allowed: tuple[str, ...]) -> str:
    """SQL: ``; did you mean 'x'?`` for the allowed value closest to ``value`` (an edit
    distance of at most a third of its length), else ''. Only rejected rows evaluate it."""
    v = f"left({value}, 100)"
    lst = "[" + ", ".join(_sql_str(a) for a in allowed) + "]"
    best = (
        f"list_filter(list_sort(list_transform({lst}, lambda x: {{'d': levenshtein({v}, x), "
        f"'x': x}})), lambda m: m.d * 3 <= length({v}))[1].x"
    )
    return f"coalesce('; did you mean ''' || {best} || '''?', '')"


def _value_map(text: str, mapping: dict[str, str] | None, lower: bool) -> str:
    """Map source values to ours. ``text`` is the value as text, already lower-cased for an
    enumerated column (``lower``), which is case-insensitive: PAID and paid map alike, and
    what it maps to is lower-cased too. Pass a column: the CASE compares it per WHEN."""
    whens = " ".join(
        f"WHEN {_sql_str(k.lower() if lower else k)} "
        f"THEN {f'lower({_sql_str(v)})' if lower else _sql_str(v)}"
        for k, v in (mapping or {}).items()
    )
    return f"CASE {text} {whens} ELSE {text} END" if whens else text


def _by_name(name: str, source: Source, staged: Staged, table: Table) -> Source:
    """A source without ``columns:`` takes the file's columns that carry our names (in
    any case: ``User_ID`` is ``user_id``); one with ``columns:`` is used as written."""
    if source.columns:
        return source
    by_lower = {c.lower(): c for c in reversed(staged.columns)}  # the first of equals wins
    found: dict[str, ColumnRef] = {
        c.name: (c.name if c.name in staged.columns else by_lower[c.name])
        for c in table.columns
        if not c.derived and (c.name in staged.columns or c.name in by_lower)
    }
    if not found:
        shown = ", ".join(staged.columns[:12]) + (", ..." if len(staged.columns) > 12 else "")
        raise SourceConfigError(
            f"source {name!r}: none of the file's columns ({shown}) has the name of a column "
            f"of {table.name} ({', '.join(table.column_names)}); map ours to yours under "
            "`columns:` in segmint.yaml"
        )
    return source.model_copy(update={"columns": found})


def _check_columns(name: str, source: Source, staged: Staged) -> None:
    wanted = [ref for ref in source.columns.values() if isinstance(ref, str)]
    if staged.is_json_lines:
        return  # JSON objects may omit keys: a missing key is a missing value, per row
    missing = [ref for ref in wanted if ref not in staged.columns]
    if missing:
        hint = None
        if isinstance(source, CsvSource) and len(staged.columns) == 1:
            seps = [x for x in (";", "\t", "|", ",") if x in staged.columns[0]]
            seps = [x for x in seps if x != source.delimiter]
            if seps:
                hint = (
                    f"The header looks delimited by {seps[0]!r}, not {source.delimiter!r}: "
                    f"set `delimiter: {seps[0]!r}` on this source."
                )
        raise MissingColumnError(name, missing, staged.columns, hint=hint)


def _load_id(source: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{source}-{secrets.token_hex(3)}"


def ingest_source(
    store: Store,
    config: Config,
    name: str,
    *,
    force: bool = False,
    now: datetime | None = None,
    callback: Callback | None = None,
    _before_commit: Callable[[], None] | None = None,
) -> LoadResult:
    """Load one named source from ``config`` into ``store``, then retry the rows of other
    sources held for a missing reference into its table, if it inserted rows.

    Parameters
    ----------
    store : Store
        Where the canonical tables live (schema is ensured first).
    config : Config
        The project's configuration.
    name : str
        The source's name under ``sources:``.
    force : bool
        Load even if the same file was already loaded with the same mapping. Keys dedupe, so
        a forced reload of the same data inserts nothing.
    now : datetime, optional
        "Now" for the future-timestamp check (tests pin it). Default: the current time.
    callback : callable, optional
        Called with a short stage name as the load progresses (the CLI draws progress).

    Returns
    -------
    LoadResult
        Counts of what was read, accepted, rejected, inserted, updated and unchanged, the
        field issues, and in ``retries`` the retries of held rows the load set off.
    """
    with store.ingest_lock():  # one load at a time per store (PostgreSQL: others wait)
        return _ingest_source(
            store,
            config,
            name,
            force=force,
            now=now,
            callback=callback,
            _before_commit=_before_commit,
        )


# --- one load, as named stages: read, map, validate, quarantine, write (and record) ------


def _read_stage(
    store: Store,
    area: Area,
    name: str,
    source: Source,
    config: Config,
    *,
    retry_of: str | None,
    step: Callback,
    frame: Frame | None = None,
) -> Staged:
    """Read: the file into staging, for a retry the source's held rows, or the rows in
    memory of a ``frame``."""
    if frame is not None:
        step("reading")
        return stage_frame(area, frame)
    if retry_of is not None:
        step("retrying held rows")
        return _stage_held(store, area, name, source, engine_vault(store, config, area))
    step("reading")
    return stage(area, name, source, config)


def _map_stage(name: str, source: Source, staged: Staged, table: Table) -> Source:
    """Map: the source's columns by name against what was read, all present."""
    source = _by_name(name, source, staged, table)
    _check_columns(name, source, staged)  # for a retry: the mapping may have changed since
    return source


def _checksum(staged: Staged, source: Source) -> str:
    """The checksum of the file read and the mapping: the same again skips the load."""
    source_json = json.dumps(source.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256((staged.checksum + source_json).encode()).hexdigest()


@dataclass(frozen=True)
class _Validated:
    """What validation found: rejects by rule, field issues by field, the cleaning done."""

    cleaning: Any
    by_rule: dict[str, int]
    by_field: dict[str, int]


def _validate_stage(
    store: Store,
    area: Area,
    name: str,
    source: Source,
    staged: Staged,
    table: Table,
    config: Config,
    now: datetime,
    step: Callback,
) -> _Validated:
    """Validate and clean: typed rows, rejects (``rejected``, ``unparsed``), field issues,
    and the accepted rows as cleaned (view ``accepted``; ``field_issue_keys`` when there
    are field issues)."""
    step("validating")
    try:
        typing = _build_typed(area, name, source, staged, table, config, now)
        _build_rejects(area, store, source, table, config, typing, staged)
        _fetch_rejected(area, staged, typing)
        step("cleaning")
        rules = config.cleaning_for(table.name)
        exprs, cleaning = plan_cleaning(area.stage, table, rules, area.valid)
        area.execute(
            f"CREATE OR REPLACE TEMP VIEW {area.accepted} AS SELECT {exprs} FROM {area.valid}"
        )
        by_rule = dict(
            area.rows(
                f"""SELECT rule, count(*) FROM (
                       SELECT split_part(reasons[1], '|', 1) AS rule FROM {area.rejected}
                       UNION ALL SELECT 'unparseable_row' FROM {area.unparsed})
                   GROUP BY rule ORDER BY 2 DESC, 1"""
            )
        )
        by_field = dict(
            area.rows(
                f"SELECT field, count(*) FROM {area.field_issues} GROUP BY field ORDER BY 2 DESC, 1"
            )
        )
        if by_field:  # the accepted rows' keys (as cleaned) of the fields with an issue; a
            # view: only a store holding rows reads it (a first load never does)
            keys = ", ".join(f"a.{_q(k)}" for k in table.key)
            area.execute(
                f"""CREATE OR REPLACE TEMP VIEW {area.field_issue_keys} AS
                SELECT {keys}, f.field AS _field
                FROM {area.field_issues} f JOIN (SELECT _row, {exprs} FROM {area.valid}) a USING (_row)"""
            )
    except duckdb.Error as exc:
        raise SourceError(f"source {name!r}: validation failed: {exc}") from None
    return _Validated(cleaning, by_rule, by_field)


def _quarantine_stage(
    store: Store, config: Config, area: Area, load_id: str, name: str, table: Table, step: Callback
) -> None:
    """Quarantine and seal: the rejected rows and field issues of this load (``quarantine``,
    ``quarantine_fields``) and the accepted rows as stored (personal values sealed,
    :func:`~segmint.sources._seal.seal_accepted`); the staging relations, all read now, are
    freed."""
    _build_quarantine(area, load_id, name, table, engine_vault(store, config, area))
    for staging in (area.typed, area.typed0, area.raw, area.raw0):  # all read: free them now
        area.drop(staging)
    step("sealing")
    seal_accepted(store, config, area, table)


def _record_load(area: Area, values: list[Any]) -> None:
    """Record: the load's row in ``loads`` (inside the write's transaction); ``values`` in
    the order of :data:`_LOAD_COLUMNS`."""
    area.execute(f"DROP TABLE IF EXISTS {area.load_row}")
    area.execute(
        f"CREATE TEMP TABLE {area.load_row} AS SELECT ?::VARCHAR AS load_id, ?::VARCHAR AS source, "
        "?::VARCHAR AS target_table, ?::VARCHAR AS location, ?::VARCHAR AS checksum, "
        "?::TIMESTAMPTZ AS started_at, ?::TIMESTAMPTZ AS finished_at, "
        "?::BIGINT AS rows_read, ?::BIGINT AS rows_accepted, ?::BIGINT AS rows_rejected, "
        "?::BIGINT AS rows_inserted, ?::BIGINT AS rows_updated, "
        "?::BIGINT AS rows_unchanged, ?::JSON AS cleaning, ?::BIGINT AS field_issues, "
        "?::JSON AS raw_types, ?::VARCHAR AS retry_of",
        values,
    )
    area.stage.write("loads", area.load_row, _LOAD_COLUMNS)


def _ingest_source(
    store: Store,
    config: Config,
    name: str,
    *,
    force: bool,
    now: datetime | None,
    callback: Callback | None,
    _before_commit: Callable[[], None] | None,
    retry_of: str | None = None,
    frame: Frame | None = None,
) -> LoadResult:
    """One load (see :func:`ingest_source`); with ``frame``, of rows in memory under the
    source name ``name`` (not one of ``config.sources``), through the same stages."""
    if frame is not None:
        source: Source = frame.source()
    elif name not in config.sources:
        known = ", ".join(config.sources) or "(none)"
        raise NotFoundError(f"no source named {name!r} in segmint.yaml; known sources: {known}")
    else:
        source = config.sources[name]
    table = TABLES[source.table]
    now = now or datetime.now(UTC)
    with store.staging() as stage_area:
        area = Area(stage_area)
        try:
            return _load(
                store, area, config, name, source, table, force=force,
                now=now, callback=callback, before_commit=_before_commit, retry_of=retry_of,
                frame=frame,
            )  # fmt: skip
        finally:
            area.close()


def _load(
    store: Store,
    area: Area,
    config: Config,
    name: str,
    source: Source,
    table: Table,
    *,
    force: bool,
    now: datetime,
    callback: Callback | None,
    before_commit: Callable[[], None] | None,
    retry_of: str | None,
    frame: Frame | None = None,
) -> LoadResult:
    """One load in its staging area, stage by stage: read, map, validate, quarantine,
    write (and record); see the module's docstring. Rows in memory (``frame``) are read
    from it, never skipped as seen before, and add to the quarantine."""
    step = callback or (lambda _s: None)
    t0 = datetime.now(UTC)

    staged = _read_stage(
        store, area, name, source, config, retry_of=retry_of, step=step, frame=frame
    )
    source = _map_stage(name, source, staged, table)
    checksum: str | None = None  # a retry reads the quarantine, not the file: never skipped
    if retry_of is None and frame is None:
        checksum = _checksum(staged, source)
        previous = None if force else _loaded_before(store, name, checksum)
        if previous is not None:
            log.info("source %s unchanged since load %s; skipped", name, previous)
            return LoadResult(previous, name, table.name, 0, 0, 0, 0, 0, 0, skipped=True)
    found = _validate_stage(store, area, name, source, staged, table, config, now, step)
    rows_read = staged.n_rows + staged.n_unparsed
    rows_rejected = sum(found.by_rule.values())
    n_accepted = rows_read - rows_rejected
    n_field_issues = sum(found.by_field.values())

    load_id = _load_id(name)
    updates, keeps = split_columns(table, list(source.columns))  # on rows already stored
    _quarantine_stage(store, config, area, load_id, name, table, step)
    step("writing")
    inserted, updated, unchanged, n_kept, retries = _write_stage(
        store, area, config, name, table, staged, found, updates,
        load_id=load_id, checksum=checksum, started=t0, now=now, retry_of=retry_of,
        counts=(rows_read, n_accepted, rows_rejected, n_field_issues),
        callback=callback, before_commit=before_commit, append=frame is not None,
    )  # fmt: skip
    log.info(
        "loaded source %s into %s: read=%d accepted=%d rejected=%d inserted=%d field_issues=%d%s",
        name,
        table.name,
        rows_read,
        n_accepted,
        rows_rejected,
        inserted,
        n_field_issues,
        f" (retry after {retry_of} changed)" if retry_of else "",
    )
    return LoadResult(
        load_id,
        name,
        table.name,
        rows_read,
        n_accepted,
        rows_rejected,
        inserted,
        updated,
        unchanged,
        found.by_rule,
        found.cleaning,
        seconds=(datetime.now(UTC) - t0).total_seconds(),
        updates_columns=updates,
        keeps_columns=keeps,
        field_issues=n_field_issues,
        field_issues_by_field=found.by_field,
        field_issues_kept=n_kept,
        retry_of=retry_of,
        retries=retries,
    )


def _write_stage(
    store: Store,
    area: Area,
    config: Config,
    name: str,
    table: Table,
    staged: Staged,
    found: _Validated,
    updates: list[str],
    *,
    load_id: str,
    checksum: str | None,
    started: datetime,
    now: datetime,
    retry_of: str | None,
    counts: tuple[int, int, int, int],
    callback: Callback | None,
    before_commit: Callable[[], None] | None,
    append: bool = False,
) -> tuple[int, int, int, int, list[LoadResult]]:
    """Write, in one transaction: the accepted rows, the quarantine (replacing what the
    source's previous loads, or for a retry the held rows, put there) and the load's
    record; then the retries of other sources' held rows that new keys may let pass.
    ``append``: this load's quarantine rows are added to the source's earlier ones (a
    stream of batches, each new data, as tracking loads), not put in their place.
    Returns (inserted, updated, unchanged, field issues kept, retries)."""
    rows_read, n_accepted, rows_rejected, n_field_issues = counts
    t0 = started
    retries: list[LoadResult] = []
    try:
        with store.transaction():
            inserted, updated, unchanged, n_kept = store.write_accepted(
                table,
                area.accepted,
                columns=updates,
                now=now,
                kept=area.field_issue_keys if found.by_field else None,
            )
            if inserted + updated + unchanged != n_accepted:  # an invariant, checked anyway
                raise LoadError(
                    f"source {name!r}: accounting mismatch: {n_accepted} rows accepted but "
                    f"{inserted + updated + unchanged} written; rolled back, nothing changed"
                )
            # the quarantine describes the data as it is now: a load replaces what its
            # source's previous loads put there, a retry the held rows it read again
            held = " AND kind = 'rejected' AND rule = 'unknown_reference'" if retry_of else ""
            if not append:
                store.execute(f"DELETE FROM quarantine WHERE source = ?{held}", [name])
            area.stage.write("quarantine", area.quarantine, _QUARANTINE_COLUMNS[:7])
            area.stage.write("quarantine", area.quarantine_fields, _QUARANTINE_COLUMNS)
            _record_load(
                area,
                [
                    load_id, name, table.name, staged.location, checksum, t0,
                    datetime.now(UTC), rows_read, n_accepted, rows_rejected, inserted, updated,
                    unchanged, json.dumps(found.cleaning), n_field_issues,
                    json.dumps(staged.types), retry_of,
                ],
            )  # fmt: skip
            if inserted:  # new keys: rows of other sources held for a missing one may pass now
                area.close()  # this load's staging is all written: free it for the retries
                retries = _retry_held(store, config, table.name, now=now, callback=callback)
            if before_commit is not None:
                before_commit()
    except duckdb.Error as exc:
        raise LoadError(
            f"source {name!r}: the load failed and was rolled back; the store is unchanged: {exc}"
        ) from None
    return inserted, updated, unchanged, n_kept, retries


def _loaded_before(store: Store, name: str, checksum: str) -> str | None:
    """The last load of ``name`` with this checksum (same file, same mapping), if any."""
    previous = store.scalar(
        "SELECT load_id FROM loads WHERE source = ? AND checksum = ? "
        "ORDER BY started_at DESC LIMIT 1",
        [name, checksum],
    )
    return None if previous is None else str(previous)


_QUARANTINE_COLUMNS = [
    "load_id",
    "row",
    "source",
    "target_table",
    "rule",
    "reason",
    "raw",
    "kind",
    "field",
    "raw_value",
]
_LOAD_COLUMNS = [
    "load_id",
    "source",
    "target_table",
    "location",
    "checksum",
    "started_at",
    "finished_at",
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "cleaning",
    "field_issues",
    "raw_types",
    "retry_of",
]


def _retry_held(
    store: Store,
    config: Config,
    changed: str,
    *,
    now: datetime,
    callback: Callback | None,
) -> list[LoadResult]:
    """Load again, from the quarantine, the rows of every source held for a missing
    reference into table ``changed`` (``unknown_reference``), now that it has new keys.

    Runs inside the load's transaction: the load and its retries land together or not at
    all. A retry that inserts rows retries the tables referring to its own (order lines
    held for an order held for a user), so its results carry their own retries.
    """
    results: list[LoadResult] = []
    for name, source in config.sources.items():
        refs = TABLES[source.table].references.values()
        if not any(ref_table == changed for ref_table, _ in refs):
            continue
        n_held = store.scalar(
            "SELECT count(*) FROM quarantine "
            "WHERE source = ? AND kind = 'rejected' AND rule = 'unknown_reference'",
            [name],
        )
        if not n_held:
            continue
        try:
            results.append(
                _ingest_source(
                    store,
                    config,
                    name,
                    force=True,
                    now=now,
                    callback=callback,
                    _before_commit=None,
                    retry_of=changed,
                )
            )
        except SourceError as exc:  # raised before the retry writes anything
            log.warning("source %s: held rows not retried: %s", name, exc)
            results.append(
                LoadResult(
                    "",
                    name,
                    source.table,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    skipped=True,
                    retry_of=changed,
                    retry_error=str(exc),
                )
            )
    return results


def _stage_held(store: Store, area: Area, name: str, source: Source, vault: Vault) -> Staged:
    """Stage the rows of source ``name`` held in the quarantine for a missing reference as
    ``raw`` (each under its row number), typed as the source's last load read them."""
    area.execute(f"CREATE TEMP TABLE {area.unparsed} (_row BIGINT, raw VARCHAR, reason VARCHAR)")
    last = store.query(
        "SELECT location, CAST(raw_types AS VARCHAR) AS raw_types FROM loads "
        "WHERE source = ? AND raw_types IS NOT NULL ORDER BY started_at DESC LIMIT 1",
        [name],
    )
    sealed = area.stage.from_store(
        "held",
        'SELECT "row", CAST(raw AS VARCHAR) AS raw FROM quarantine WHERE source = '
        f"{_sql_str(name)} AND kind = 'rejected' AND rule = 'unknown_reference'",
        {"row": "BIGINT", "raw": "VARCHAR"},
    )
    held = area.stage.table(
        "held", f'SELECT "row", {open_raw_sql(vault, "CAST(raw AS JSON)")} AS raw FROM {sealed}'
    )
    area.stage.drop(sealed)
    location = str(last["location"].iat[0]) if len(last) else "quarantine"
    if isinstance(source, JsonlSource):
        area.execute(
            f"CREATE TEMP TABLE {area.raw} AS "
            f'SELECT CAST(raw AS JSON) AS _json, "row" AS _row FROM {held}'
        )
        keys = [
            r[0]
            for r in area.rows(
                f"SELECT DISTINCT unnest(json_keys(_json)) FROM {area.raw} ORDER BY 1"
            )
        ]
        types = dict.fromkeys(keys, "JSON")
    else:
        if len(last):
            types = json.loads(str(last["raw_types"].iat[0]))
        else:  # held before segmint recorded the types (schema 2): the text as read
            keys = area.rows(
                f"SELECT DISTINCT unnest(json_keys(CAST(raw AS JSON))) FROM {held} ORDER BY 1"
            )
            types = {r[0]: "VARCHAR" for r in keys}
        cols = ", ".join(
            (
                f"json_extract_string(raw, {_sql_str(_json_path(c))})"
                if t == "VARCHAR"
                else f"CAST(json_extract(raw, {_sql_str(_json_path(c))}) AS {t})"
            )
            + f" AS {_q(c)}"
            for c, t in types.items()
        )
        area.execute(f'CREATE TEMP TABLE {area.raw} AS SELECT {cols}, "row" AS _row FROM {held}')
    n_rows = area.count(area.raw)
    area.stage.drop(held)
    return Staged(
        list(types),
        types,
        n_rows,
        0,
        location,
        "",
        is_json_lines=isinstance(source, JsonlSource),
    )


def _json_path(column: str) -> str:
    return '$."' + column.replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Typing:
    """How one source is typed: the row-level checks ((condition, 'rule|reason') SQL
    pairs), the columns the source does not map with their (constant) typed value, and the
    typing query over any relation shaped like ``raw`` (``typed0`` is it over ``raw``;
    the rejected rows are typed again, alone, to spell out their reasons)."""

    checks: list[Check]
    constants: dict[str, str]
    innermost: str  # the select list of the innermost layer (over the relation)
    layers: tuple[list[str], ...]  # the select layers above it, innermost first
    outer: str  # the final select list
    # the checks of the optional columns, which null the value and keep the row
    field_checks: dict[str, list[Check]] = field(default_factory=dict)

    def nulled(self, relation: str) -> str:
        """SELECT over typed rows ``relation`` with the values failing a field check set to
        NULL (the row-level checks read these values)."""
        if not self.field_checks:
            return f"SELECT * FROM {relation}"
        sets = ", ".join(
            f"CASE WHEN {' OR '.join(f'({cond})' for cond, _ in checks)} THEN NULL "
            f"ELSE {_q(col)} END AS {_q(col)}"
            for col, checks in self.field_checks.items()
        )
        return f"SELECT * REPLACE ({sets}) FROM {relation}"

    def any_field_issue(self) -> str:
        """SQL over :meth:`nulled` rows: a value was nulled by a field check (each column
        with field checks has the type check, which is exactly this once nulled)."""
        return (
            " OR ".join(
                f"({_q(col)} IS NULL AND {_present(_q('r_' + col))})" for col in self.field_checks
            )
            or "FALSE"
        )

    def field_issues(self) -> str:
        """SQL over typed rows (not nulled): the list of field issues of a row, each a
        struct (field, reason 'rule|reason', raw value); the first failing check of each
        field gives its reason."""
        items = []
        for col, checks in self.field_checks.items():
            whens = " ".join(f"WHEN {cond} THEN {reason}" for cond, reason in checks)
            raw = f"left(CAST({_q('r_' + col)} AS VARCHAR), 200)"
            items.append(
                f"{{'field': {_sql_str(col)}, 'reason': CASE {whens} END, 'raw_value': {raw}}}"
            )
        if not items:
            return "CAST([] AS STRUCT(field VARCHAR, reason VARCHAR, raw_value VARCHAR)[])"
        return f"list_filter([{', '.join(items)}], lambda x: x.reason IS NOT NULL)"

    def sql(self, relation: str, keep: tuple[str, str] | None = None) -> str:
        """The typing query over ``relation``; ``keep`` (an expression over the relation's
        own columns, and its name) is computed in the innermost layer and kept to the end."""
        inner, outer = self.innermost, self.outer
        if keep is not None:
            inner, outer = f"{inner}, {keep[0]} AS {keep[1]}", f"{outer}, {keep[1]}"
        query = f"(SELECT {inner} FROM {relation})"
        for layer in self.layers:
            if layer:
                query = f"(SELECT *, {', '.join(layer)} FROM {query})"
        return f"SELECT {outer} FROM {query}"


def _build_typed(
    area: Area,
    name: str,
    source: Source,
    staged: Staged,
    table: Table,
    config: Config,
    now: datetime,
) -> Typing:
    """Create the view ``typed`` (the column map applied, values coerced) and return how
    the source is typed (its checks, its constant columns, its typing query)."""
    raw_cols = {
        c.name: _raw_expr(c, source.columns.get(c.name), staged, name) for c in table.columns
    }
    if "currency" in raw_cols and "currency" not in source.columns:
        raw_cols["currency"] = _sql_str(config.currency)
    coercion = _Coercion(source, table, config, _raw_types(area, name, raw_cols))
    typed = [f"{coercion.layered(c, _q('r_' + c.name))} AS {_q(c.name)}" for c in table.columns]
    # unmapped (and not generated) columns hold a default or NULL: the same on every row
    constants = {
        c.name: coercion.plain(c, f"({raw_cols[c.name]})")
        for c in table.columns
        if c.name not in source.columns and c.name not in table.generated and not c.derived
    }
    checks, field_checks = _all_checks(table, source, config, now)
    keep = ""
    if source.filter:
        # evaluated over the source's own columns, before the column map
        checked = source_expression(name, source.filter, staged, what="the filter")
        keep = f", coalesce(({checked}), FALSE) AS _keep"
        checks.insert(
            0,
            (
                "NOT _keep",
                f"'filtered|filtered out by the source filter: ' || {_sql_str(source.filter)}",
            ),
        )
    raw_select = ", ".join(f"{e} AS {_q('r_' + n)}" for n, e in raw_cols.items())
    r_cols = ", ".join(_q("r_" + n) for n in raw_cols)
    typing = Typing(
        checks,
        constants,
        innermost=f"_row, {raw_select}{keep}",
        layers=(coercion.as_source, coercion.as_text, coercion.trimmed),
        outer=f"_row, {r_cols}{', _keep' if keep else ''}, {', '.join(typed)}",
        field_checks=field_checks,
    )
    try:
        area.execute(f"CREATE OR REPLACE TEMP VIEW {area.typed0} AS {typing.sql(area.raw)}")
        area.execute(
            f"CREATE OR REPLACE TEMP VIEW {area.typed} AS SELECT {_generated(area, source, table)}"
        )
        area.rows(f"DESCRIBE SELECT * FROM {area.typed}")
    except duckdb.Error as exc:
        raise SourceConfigError(
            f"source {name!r}: cannot apply the column map: {_short(exc, 300)}"
        ) from None
    return typing


def _raw_types(area: Area, name: str, raw_cols: dict[str, str]) -> dict[str, str]:
    """The type of each column's raw expression over ``raw`` (it decides the coercion)."""
    probe = ", ".join(f"{e} AS {_q('r_' + n)}" for n, e in raw_cols.items())
    try:
        desc = area.rows(f"DESCRIBE SELECT {probe} FROM {area.raw}")
    except duckdb.Error as exc:
        raise SourceConfigError(
            f"source {name!r}: a column expression is invalid: {_short(exc, 300).rstrip('.')}. "
            "Cast text columns "
            "where a number or a date is needed, e.g. CAST(qty AS INTEGER)"
        ) from None
    return {r[0][2:]: r[1] for r in desc}


class _Coercion:
    """The coercion of each column's raw value to its type.

    Text is typed through select layers under the typed one, so that each value is cast
    to text, value-mapped and trimmed once, however many times the coercion refers to it:
    ``m_<col>`` the source value as text (lower-cased for an enumerated column), which a
    value map compares per WHEN (:attr:`as_source`); ``v_<col>`` the (mapped) text
    (:attr:`as_text`); ``t_<col>`` the trimmed text or NULL (:attr:`trimmed`).
    """

    def __init__(
        self, source: Source, table: Table, config: Config, raw_types: dict[str, str]
    ) -> None:
        self.source, self.table, self.config, self.raw_types = source, table, config, raw_types
        self.tz = source.timezone or config.timezone
        self.as_source: list[str] = []
        self.as_text: list[str] = []
        self.trimmed: list[str] = []

    def _mapped(self, c: Column, rexpr: str, layered: bool) -> tuple[str, str | None]:
        """The raw value, value-mapped (and lower-cased for an enumerated column), and its
        format (the column's own; the source's timestamp_format for a timestamp)."""
        source = self.source
        lower = _allowed_values(self.table, c.name, self.config) is not None
        mapped_raw = rexpr
        if c.name in source.values or lower:
            src = f"CAST({rexpr} AS VARCHAR)"
            src = f"lower({src})" if lower else src
            if layered:
                self.as_source.append(f"{src} AS {_q('m_' + c.name)}")
                src = _q("m_" + c.name)
            mapped_raw = _value_map(src, source.values.get(c.name), lower)
        fmt = source.formats.get(c.name)
        if fmt is None and c.type == "TIMESTAMPTZ":
            fmt = source.timestamp_format
        return mapped_raw, fmt

    def _marks(self) -> tuple[str, str | None]:
        """The decimal and thousands marks of numbers written as text."""
        source = self.source
        return (source.decimal, source.thousands) if isinstance(source, CsvSource) else (".", None)

    def plain(self, c: Column, rexpr: str) -> str:
        """The typed value of ``rexpr``, computed in place (a constant column)."""
        mapped_raw, fmt = self._mapped(c, rexpr, False)
        t = "VARCHAR" if mapped_raw != rexpr else self.raw_types[c.name]
        decimal, thousands = self._marks()
        return _typed_expr(c, mapped_raw, t, self.tz, fmt, decimal=decimal, thousands=thousands)

    def layered(self, c: Column, rexpr: str) -> str:
        """The typed value of ``rexpr``, its text computed once in the layers below."""
        mapped_raw, fmt = self._mapped(c, rexpr, True)
        t = "VARCHAR" if mapped_raw != rexpr else self.raw_types[c.name]
        decimal, thousands = self._marks()
        text = _q("t_" + c.name)
        expr = _typed_expr(
            c, mapped_raw, t, self.tz, fmt, text=text, decimal=decimal, thousands=thousands
        )
        if text in expr:
            self.as_text.append(f"CAST({mapped_raw} AS VARCHAR) AS {_q('v_' + c.name)}")
            self.trimmed.append(f"{_trimmed(_q('v_' + c.name))} AS {text}")
        return expr


def _all_checks(
    table: Table, source: Source, config: Config, now: datetime
) -> tuple[list[Check], dict[str, list[Check]]]:
    """Every column's checks: those rejecting the row, and per optional column those that
    only null its value."""
    checks: list[Check] = []
    field_checks: dict[str, list[Check]] = {}
    for c in table.columns:
        row_level, field_level = _checks(table, c, c.name in source.columns, config, now, source)
        checks += row_level
        if field_level:
            field_checks[c.name] = field_level
    return checks, field_checks


def _generated(area: Area, source: Source, table: Table) -> str:
    """The select list of ``typed``: generated keys filled in when the source lacks them."""
    if "event_id" in table.generated and "event_id" not in source.columns:
        content = ", ".join(
            f"coalesce(CAST({_q(c)} AS VARCHAR), '')" for c in table.column_names if c != "event_id"
        )
        return f"* REPLACE (md5(concat_ws('|', {content})) AS event_id) FROM {area.typed0}"
    if "line" in table.generated and "line" not in source.columns:
        return (
            "* REPLACE (CAST(row_number() OVER (PARTITION BY order_id ORDER BY _row) AS INTEGER)"
            f" AS line) FROM {area.typed0}"
        )
    if table.name == "users":  # derived columns (schema 9); the blind indexes: issue 21
        return (
            "* REPLACE (CAST(EXTRACT(MONTH FROM birthday) * 100 + EXTRACT(DAY FROM birthday) "
            f"AS INTEGER) AS birthday_md) FROM {area.typed0}"
        )
    return f"* FROM {area.typed0}"


def _build_rejects(
    area: Area,
    store: Store,
    source: Source,
    table: Table,
    config: Config,
    typing: Typing,
    staged: Staged,
) -> None:
    """Collect every rejected row into ``rejects`` (small), set-based.

    One scan of ``typed`` materialises the typed rows once in the temp table ``typed_rows``
    (row number, the mapped columns, and a flag on the rows failing a row-level check), so
    the coercions are evaluated once for the checks and the insert alike. Flagged rows go
    to ``rejects`` (their reasons are spelled out later, by :func:`_fetch_rejected`);
    duplicate keys (exact copies vs conflicting rows) and unknown references are then found
    among the others (the view ``checked``) with a sort of the key hashes, a window over
    the few duplicated keys, and anti-joins, and the business-key rule among the rows not
    rejected yet. The view ``valid`` holds the rows not rejected, with the unmapped
    columns as constants: once every check has run, the accepted rows.
    """
    content = [c for c in table.column_names if c not in table.generated]
    if "line" in table.generated and "line" not in source.columns:
        dup_key = content  # lines numbered by us: a duplicate is a repeated line
    else:
        dup_key = list(table.key)  # (a generated event_id is already an md5 of the content)
    rules = config.cleaning_for(table.name)
    biz = rules.duplicates if rules else None
    row = _stage_typed_rows(area, source, table, typing, staged, dup_key)
    _find_duplicates(area, table, content, dup_key)
    if biz:
        _find_business_duplicates(area, store, table, biz)
    # erased people first: their rows are dropped, not held for a missing reference
    _find_erased(area, store, table, engine_vault(store, config, area))
    _find_unknown_references(area, store, table)
    # the accepted rows holding a field issue (a rejected row's issues join its reasons)
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.fi_rows} AS
        SELECT _row FROM (SELECT {row} AS _row FROM {area.typed_rows} WHERE _fi) f
        WHERE NOT EXISTS (SELECT 1 FROM {area.rejects} r WHERE r._row = f._row)"""
    )


def _stage_typed_rows(
    area: Area,
    source: Source,
    table: Table,
    typing: Typing,
    staged: Staged,
    dup_key: list[str],
) -> str:
    """The scan materialising the typed rows (``typed_rows``, with the key hash and the
    flags), the rows failing a row-level check (``rejects``), and the views ``checked``
    and ``valid`` over them. Returns the expression of a row's number in ``typed_rows``."""
    checks, constants = typing.checks, typing.constants
    part = ", ".join(_q(k) for k in dup_key)

    # Each row's key hash is stored by the scan that materialises the typed rows; the keys
    # seen more than once are then found among the valid rows as the hashes equal to the
    # previous one in sorted order (a sort takes half the time and memory of a grouped
    # count over millions of distinct keys). The hashes are cut to 32 bits: sorting half the
    # bytes takes half the time. The collisions this adds (about n^2 / 2^33 pairs: 47,000
    # at 20M keys) only send a few more rows through the window below, which compares the
    # keys themselves.
    key_hash = f"CAST(hash({part}) >> 32 AS UINTEGER)"
    # One test per row, as a CASE condition: there DuckDB short-circuits the ORs and ANDs
    # over selection vectors (a plain boolean column of the same expression evaluates every
    # operand on every row, 3x slower). Only a flag is stored: spelling the reasons out in
    # this scan, even for the few failing rows, costs a quarter more, as every vector
    # holding one of them evaluates the whole list (bench/ingest_forms.py times both).
    any_problem = " OR ".join(f"({cond})" for cond, _ in checks) or "FALSE"
    stored = ", ".join(_q(c) for c in table.column_names if c not in constants)
    # Row numbers: where the source numbers its rows by position and ``typed`` keeps that
    # order (no generated line numbers, which a window computes), the materialised rows
    # keep it too (insertion order is preserved), so their rowid gives the row number and
    # it is neither read (Parquet's file_row_number) nor stored.
    in_order = staged.row_offset is not None and "OVER" not in _generated(area, source, table)
    row = f"(rowid + {staged.row_offset})" if in_order else "_row"
    t_row = f"(t.rowid + {staged.row_offset})" if in_order else "t._row"
    # optional values failing a field check are NULL from here on (the row-level checks
    # read them so); _fi flags the rows holding one (spelled out later, like the rejects)
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.typed_rows} AS
        SELECT {"" if in_order else "_row, "}{stored}, {key_hash} AS _kh,
               CASE WHEN {any_problem} THEN TRUE END AS _bad,
               CASE WHEN {typing.any_field_issue()} THEN TRUE END AS _fi
        FROM ({typing.nulled(area.typed)})"""
    )
    columns = ", ".join(
        f"{constants[c]} AS {_q(c)}" if c in constants else _q(c) for c in table.column_names
    )
    # reasons NULL: a row failing a row-level check, whose reasons _fetch_rejected finds
    area.execute(
        f"CREATE OR REPLACE TEMP TABLE {area.rejects} AS "
        f"SELECT {row} AS _row, CAST(NULL AS VARCHAR[]) AS reasons FROM {area.typed_rows} WHERE _bad"
    )
    # Rejected rows are not deleted from typed_rows: reading a table holding deletes (or
    # through a filter) made the insert of 20M rows read from a CSV 1.4 s slower; reading
    # through an anti-join did not (bench/ingest_forms.py; for Parquet it is a wash). So
    # the checks read checked, the rows passing the row-level checks (a filter, cheap
    # under a sort or a join), and add to rejects only the rows not rejected yet; valid,
    # the rows not rejected (an anti-join against the small rejects), is read by the
    # business-key rule, the cleaning and the insert. The price: a join does not keep row
    # order (DuckDB documents it; in practice one block of rows lands out of place), so
    # the accepted rows are stored in source order only up to that; no reader relies on
    # the physical order of a canonical table.
    area.execute(
        f"""CREATE OR REPLACE TEMP VIEW {area.checked} AS
        SELECT {row} AS _row, {columns}, _kh FROM {area.typed_rows} WHERE _bad IS NULL"""
    )
    area.execute(
        f"""CREATE OR REPLACE TEMP VIEW {area.valid} AS
        SELECT {t_row} AS _row, {columns}, _kh
        FROM {area.typed_rows} t ANTI JOIN {area.rejects} r ON {t_row} = r._row"""
    )
    return row


def _find_duplicates(area: Area, table: Table, content: list[str], dup_key: list[str]) -> None:
    """Duplicate keys among the ``checked`` rows: exact copies and conflicting rows (the
    first row of a key is kept), added to ``rejects``."""
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.dupkeys} AS
        SELECT DISTINCT kh FROM (
            SELECT _kh AS kh, lag(_kh) OVER (ORDER BY _kh) AS _prev FROM {area.checked}
        ) WHERE kh = _prev"""
    )
    key_text = " || '/' || ".join(f"coalesce(CAST({_q(k)} AS VARCHAR), '')" for k in table.key)
    h = "hash(" + ", ".join(f"t.{_q(c)}" for c in content) + ")"  # only for duplicated keys
    # rows matched by the key hash (stored by the materialising scan), then by the key
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.dups} AS
        SELECT _row, [CASE WHEN _h = _first_h
                           THEN 'exact_duplicate|exact duplicate of row ' || _first_row
                           ELSE 'duplicate_key|duplicate key ' || {key_text} ||
                                ' with different values (first seen at row ' || _first_row || ')'
                      END] AS reasons
        FROM (
            SELECT t.*, row_number() OVER w AS _krn, first_value({h}) OVER w AS _first_h,
                   {h} AS _h, first_value(t._row) OVER w AS _first_row
            FROM {area.checked} t SEMI JOIN {area.dupkeys} d ON t._kh = d.kh
            WINDOW w AS (PARTITION BY {", ".join("t." + _q(k) for k in dup_key)} ORDER BY t._row)
        ) WHERE _krn > 1"""
    )
    _move_to_rejects(area, area.dups)


def _find_business_duplicates(area: Area, store: Store, table: Table, biz: Any) -> None:
    """The cleaning config's business-key rule among the ``valid`` rows (and against the
    rows stored), added to ``rejects``."""
    bkey = ", ".join(_q(k) for k in biz.key)
    order = _q(biz.order_by) if biz.order_by else "_row"
    direction = "ASC" if biz.keep == "first" else "DESC"
    not_null = " AND ".join(f"{_q(k)} IS NOT NULL" for k in biz.key)
    pk = table.key[0]
    existing = store.columns_relation(table.name, [pk, *biz.key])
    exists = " AND ".join(f"e.{_q(k)} = b.{_q(k)}" for k in biz.key)
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.bizdups} AS
        SELECT _row, ['duplicate_business_key|duplicate {"/".join(biz.key)} (cleaning rule '
                      || 'duplicates, keep {biz.keep})'] AS reasons
        FROM (
            SELECT t.*, row_number() OVER (PARTITION BY {bkey}
                                           ORDER BY {order} {direction}, _row) AS _brn
            FROM {area.valid} t WHERE {not_null}
        ) b
        WHERE _brn > 1 OR EXISTS (SELECT 1 FROM {existing} e
                                  WHERE {exists} AND e.{_q(pk)} <> b.{_q(pk)})"""
    )
    _move_to_rejects(area, area.bizdups)


def _find_unknown_references(area: Area, store: Store, table: Table) -> None:
    """References to keys not stored (orders -> users, ...) among the ``checked`` rows,
    added to ``rejects``."""
    for col, (ref_table, ref_col) in table.references.items():
        rel = store.reference_keys(ref_table, ref_col)
        c = _q(col)
        area.execute(
            f"""CREATE OR REPLACE TEMP TABLE {area.badref} AS
            SELECT _row, ['unknown_reference|unknown {col} ' || {_show("t." + c)} ||
                          ' (not in {ref_table})'] AS reasons
            FROM {area.checked} t
            WHERE t.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rel} r WHERE r.k = t.{c})"""
        )
        _move_to_rejects(area, area.badref)


_ERASED_REASON = "'erased|this person asked to be forgotten'"


def _find_erased(area: Area, store: Store, table: Table, vault: Vault) -> None:
    """Rows of people who asked to be forgotten (table ``erasures``: the blind index of
    their user id, of their e-mail) among the ``checked`` rows, added to ``rejects`` (rule
    ``erased``; the quarantine keeps no raw content for them): a re-import of an old file
    does not bring them back."""
    if "user_id" not in table.column_names or not store.scalar("SELECT count(*) FROM erasures"):
        return
    erased = area.stage.from_store(
        "erased",
        "SELECT subject, email_index FROM erasures",
        {"subject": "VARCHAR", "email_index": "VARCHAR"},
    )
    conds = [f"{vault.index_sql('t.user_id', 'user')} IN (SELECT subject FROM {erased})"]
    if table.name == "users":
        conds.append(
            f"{vault.index_sql('t.email', 'email')} IN "
            f"(SELECT email_index FROM {erased} WHERE email_index IS NOT NULL)"
        )
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.badref} AS
        SELECT _row, [{_ERASED_REASON}] AS reasons FROM {area.checked} t
        WHERE t.user_id IS NOT NULL AND ({" OR ".join(conds)})"""
    )
    _move_to_rejects(area, area.badref)
    area.stage.drop(erased)


def _move_to_rejects(area: Area, found: str) -> None:
    """Add the newly found rejects not rejected yet (a row keeps the reason of the first
    check that rejected it), which takes them out of the accepted rows (``valid``)."""
    if area.count(found) == 0:
        return
    area.execute(
        f"INSERT INTO {area.rejects} SELECT _row, reasons FROM {found} f "
        f"WHERE NOT EXISTS (SELECT 1 FROM {area.rejects} r WHERE r._row = f._row)"
    )


def _fetch_rejected(area: Area, staged: Staged, typing: Typing) -> None:
    """``rejected``: each rejected row with all its reasons and its raw content as read;
    ``field_issues``: each field issue of an accepted row (field, reason, raw value).

    The rejected rows and the accepted rows holding a field issue are read again from the
    source, alone (by their position where the reader gives one: the scan then skips the
    others), and typed again with the same query, which spells out the reasons of those
    that failed a check (the materialising scan only flagged them) and keeps their raw
    content for the quarantine.
    """
    if _nothing_flagged(area):
        return
    if staged.is_json_lines:
        raw = "CAST(_json AS JSON)"
    else:
        raw = (
            "to_json(struct_pack(" + ", ".join(f"{_q(c)} := {_q(c)}" for c in staged.columns) + "))"
        )
    wanted = f"(SELECT _row FROM {area.rejects} UNION ALL SELECT _row FROM {area.fi_rows})"
    k, pos = staged.row_offset, staged.row_position
    if k is not None and pos is not None:
        rows = (
            f"(SELECT *, {pos} + {k} AS _row FROM {area.raw0} "
            f"WHERE {pos} IN (SELECT _row - {k} FROM {wanted}))"
        )
    else:
        rows = f"(SELECT * FROM {area.raw} WHERE _row IN {wanted})"
    found = (
        "list_filter(["
        + ", ".join(f"CASE WHEN {cond} THEN {reason} END" for cond, reason in typing.checks)
        + "], lambda x: x IS NOT NULL)"
        if typing.checks
        else "CAST([] AS VARCHAR[])"
    )
    # field issues are spelled out on the values as typed, the row-level reasons on the
    # values once nulled (as the materialising scan read them)
    with_issues = (
        f"(SELECT *, {typing.field_issues()} AS _ff FROM ({typing.sql(rows, (raw, '_raw_json'))}))"
    )
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.spelled} AS
        SELECT _row, {found} AS _found, _ff, _raw_json FROM ({typing.nulled(with_issues)})"""
    )
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.rejected} AS
        SELECT c._row, coalesce(c.reasons, r._found || list_transform(r._ff, lambda x: x.reason))
                   AS reasons,
               r._raw_json AS raw
        FROM {area.rejects} c JOIN {area.spelled} r ON r._row = c._row"""
    )
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.field_issues} AS
        SELECT _row, f.field AS field, f.reason AS reasons, f.raw_value AS raw_value, raw
        FROM (SELECT _row, unnest(_ff) AS f, _raw_json AS raw
              FROM {area.spelled} WHERE _row IN (SELECT _row FROM {area.fi_rows}))"""
    )
    # the flags and the reasons come from the same conditions over the same values
    n_rejects, n_found, n_without = area.row(
        f"SELECT (SELECT count(*) FROM {area.rejects}), count(*), "
        f"count(*) FILTER (WHERE len(reasons) = 0) FROM {area.rejected}"
    )  # type: ignore[misc]
    n_fi, n_fi_found = area.row(
        f"SELECT (SELECT count(*) FROM {area.fi_rows}), count(DISTINCT _row) FROM {area.field_issues}"
    )  # type: ignore[misc]
    if n_found != n_rejects or n_without or n_fi != n_fi_found:
        raise LoadError(
            f"internal error: {n_rejects} rows rejected, {n_found} found again, "
            f"{n_without} without a reason, {n_fi} rows with field issues of which "
            f"{n_fi_found} found again; nothing was written"
        )


def _nothing_flagged(area: Area) -> bool:
    """No row rejected and no field issue: ``rejected`` and ``field_issues`` are made
    empty, and the rows need no second reading."""
    n = area.row(
        f"SELECT (SELECT count(*) FROM {area.rejects}) + (SELECT count(*) FROM {area.fi_rows})"
    )
    if n is None or n[0] != 0:
        return False
    area.execute(
        f"CREATE OR REPLACE TEMP TABLE {area.rejected} (_row BIGINT, reasons VARCHAR[], raw JSON)"
    )
    area.execute(
        f"CREATE OR REPLACE TEMP TABLE {area.field_issues} (_row BIGINT, field VARCHAR, "
        "reasons VARCHAR, raw_value VARCHAR, raw JSON)"
    )
    return True


def _build_quarantine(area: Area, load_id: str, name: str, table: Table, vault: Vault) -> None:
    """The quarantine rows of this load, their raw content sealed (a row dropped because
    its person asked to be forgotten keeps no raw content at all)."""
    lid, src, tbl = _sql_str(load_id), _sql_str(name), _sql_str(table.name)
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.quarantine} AS
        SELECT load_id, "row", source, target_table, rule, reason,
               CASE WHEN rule = 'erased' THEN NULL ELSE {seal_raw_sql(vault, "raw")} END AS raw
        FROM (
        SELECT {lid} AS load_id, _row AS "row", {src} AS source, {tbl} AS target_table,
               split_part(reasons[1], '|', 1) AS rule,
               array_to_string(list_transform(reasons, lambda x: substr(x, strpos(x, '|') + 1)), '; ')
                   AS reason,
               raw
        FROM {area.rejected}
        UNION ALL
        SELECT {lid}, _row, {src}, {tbl}, 'unparseable_row', reason, to_json(raw)
        FROM {area.unparsed})"""
    )
    area.execute(
        f"""CREATE OR REPLACE TEMP TABLE {area.quarantine_fields} AS
        SELECT {lid} AS load_id, _row AS "row", {src} AS source, {tbl} AS target_table,
               split_part(reasons, '|', 1) AS rule, substr(reasons, strpos(reasons, '|') + 1)
                   AS reason,
               {seal_raw_sql(vault, "raw")} AS raw, 'field_issue' AS kind, field,
               {vault.seal_sql("raw_value", "quarantine.raw_value")} AS raw_value
        FROM {area.field_issues}"""
    )
