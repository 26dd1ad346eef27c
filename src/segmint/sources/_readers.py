"""Readers: put one source's rows into a staging relation of the DuckDB engine.

Each reader creates the load's ``raw`` relation (:class:`~segmint.sources._area.Area`) in
the store's staging area: the source's own columns plus ``_row`` (the 1-based row number
in the source: the line number for text files, the row index for Parquet and databases).
Rows the reader cannot even parse go to ``unparsed`` (``_row``, ``raw``, ``reason``) so
they are quarantined, never lost.

Text files are read by DuckDB's CSV reader as they are, in one pass. Only when it stops at
an unexpected line ending, or reads no row of a file that has some, the file is copied
once with uniform line endings (:mod:`segmint.sources._line_endings`) and read again.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import re
import stat
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt

from segmint._redact import redact_values
from segmint.config import (
    Config,
    CsvSource,
    JsonlSource,
    ParquetSource,
    PostgresSource,
    QuerySource,
    Source,
)
from segmint.errors import SourceConfigError, SourceError
from segmint.sources._area import Area
from segmint.sources._encodings import is_utf8, transcode_to_utf8
from segmint.sources._line_endings import (
    Rewritten,
    open_decompressed,
    rewrite_line_endings,
    stray_reason,
)
from segmint.store import ident as _ident
from segmint.store import lit as _sql_str

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """What a reader produced: columns found, rows read, a checksum of the input.

    ``digest`` may still be being computed (a file's SHA-256 runs in a background thread
    while DuckDB reads the file); :attr:`checksum` waits for it.
    """

    columns: list[str]
    types: dict[str, str]
    n_rows: int
    n_unparsed: int
    location: str
    digest: str | Future[str]
    is_json_lines: bool = False
    # When set, ``_row`` is the scan position in ``raw`` plus this offset, so a table
    # materialised from it in scan order can number its rows by ``rowid`` instead of
    # storing them (Parquet: file_row_number + 1; CSV without broken lines: the line).
    row_offset: int | None = None
    # ... and the column of ``raw0`` (the source as read) holding that position, so that
    # rows can be fetched by number with a filter the scan itself applies.
    row_position: str | None = None

    @property
    def checksum(self) -> str:
        return self.digest if isinstance(self.digest, str) else self.digest.result()


def file_checksum(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segmint-checksum")
_PREFETCHED: dict[tuple[str, int, int], Future[str]] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def file_checksum_async(path: Path) -> Future[str]:
    """:func:`file_checksum` in a background thread (hashlib releases the GIL), so that
    hashing a large file (1.3 s for 1 GB here) overlaps with DuckDB's work. A checksum
    asked for ahead by :func:`prefetch_checksums` is used if the file is unchanged since
    (same size and modification time), and computed again otherwise."""
    ahead = _PREFETCHED.pop(_file_key(path), None)
    return ahead if ahead is not None else _HASHER.submit(file_checksum, path)


def prefetch_checksums(config: Config, names: list[str]) -> None:
    """Start hashing the files of these sources now, in order, so that each is ready (or
    nearly) when its load needs it: a project's later sources are hashed while the first
    ones load."""
    for name in names:
        source = config.sources[name]
        if isinstance(source, CsvSource | ParquetSource | JsonlSource):
            path = config.resolve(source.path)
            if path.is_file():
                key = _file_key(path)
                if key not in _PREFETCHED:
                    _PREFETCHED[key] = _HASHER.submit(file_checksum, path)


def check_files(config: Config, names: list[str]) -> None:
    """Check, before any loads, that each of these sources' files is one regular file
    (:func:`_need_file`): a wrong ``path:`` stops the run before anything is loaded."""
    for name in names:
        source = config.sources[name]
        if isinstance(source, CsvSource | ParquetSource | JsonlSource):
            _need_file(
                name, config.resolve(source.path), text=not isinstance(source, ParquetSource)
            )


_COMPRESSED = {".gz": ("gzip", b"\x1f\x8b"), ".zst": ("zstd", b"\x28\xb5\x2f\xfd")}
# suffixes DuckDB takes for a compression it cannot read
_UNREADABLE = {".bz2": "bzip2", ".xz": "xz", ".lz4": "lz4", ".zip": "zip", ".br": "brotli"}
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _need_file(name: str, path: Path, *, text: bool = False) -> None:
    """Refuse, with the fix, a path that is not one regular file segmint can read whole:
    a folder, a device such as /dev/zero (which never ends), a pipe; and for text files
    (``text``) a compressed suffix that DuckDB cannot read or that the bytes belie."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceConfigError(
            f"source {name!r}: file {path} does not exist. Fix `path:` in segmint.yaml "
            "(relative paths are relative to the folder holding segmint.yaml)"
        ) from None
    except OSError as exc:
        raise SourceError(f"source {name!r}: cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise SourceConfigError(
            f"source {name!r}: {path} is a folder, not a file; point `path:` at one file"
        )
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "a special file")
        raise SourceConfigError(
            f"source {name!r}: {path} is {kind}, not a regular file; segmint reads only "
            "regular files: copy the data into a file and point `path:` at it"
        )
    if not text:
        return
    suffix = path.suffix.lower()
    if suffix in _UNREADABLE:
        raise SourceError(
            f"source {name!r}: {path} ends in {suffix} ({_UNREADABLE[suffix]}); segmint "
            "reads plain, .gz and .zst files: decompress it (or compress it with gzip)"
        )
    if suffix in _COMPRESSED:
        fmt, magic = _COMPRESSED[suffix]
        try:
            with path.open("rb") as f:
                head = f.read(len(magic))
        except OSError as exc:
            raise SourceError(f"source {name!r}: cannot read {path}: {exc.strerror}") from None
        if head and head != magic:
            raise SourceError(
                f"source {name!r}: {path} ends in {suffix} but is not {fmt}-compressed "
                f"(it starts with {head!r}); rename it without {suffix} if it is plain "
                f"text, or compress it with {fmt}"
            )


def _short(exc: BaseException, limit: int = 200) -> str:
    """An engine error in one line: its first line, cut (DuckDB's CSV errors go on with the
    offending line itself, up to 10,000 characters of it), the values it quotes masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = redact_values(text)  # a conversion error quotes the value: no personal data out
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stage(area: Area, name: str, source: Source, config: Config) -> Staged:
    """Stage ``source`` into the load's ``raw`` (and ``unparsed``) relations."""
    area.execute(f"CREATE TEMP TABLE {area.unparsed} (_row BIGINT, raw VARCHAR, reason VARCHAR)")
    try:
        if isinstance(source, CsvSource):
            return _stage_csv(area, name, source, config)
        if isinstance(source, ParquetSource):
            return _stage_parquet(area, name, source, config)
        if isinstance(source, JsonlSource):
            return _stage_jsonl(area, name, source, config)
        if isinstance(source, QuerySource):
            return _stage_query(area, name, source, config)
        if isinstance(source, PostgresSource):
            return _stage_postgres(area, name, source, config)
    except duckdb.IOException as exc:
        if "No files found" in str(exc):  # a query source naming a file that is not there
            raise SourceConfigError(
                f"source {name!r}: {_short(exc).removeprefix('IO Error: ')}; fix the file "
                "name in the query (relative paths are relative to the folder you run "
                "segmint in: write {here}/file to mean this project's folder)"
            ) from None
        raise SourceError(f"source {name!r}: cannot read it: {_short(exc)}") from None
    except duckdb.Error as exc:
        raise SourceError(f"source {name!r}: cannot read it: {_short(exc)}") from None
    raise SourceError(f"source {name!r}: unknown source type {type(source).__name__}")


def _finish(
    area: Area,
    location: str,
    checksum: str | Future[str],
    is_json_lines: bool = False,
    row_offset: int | None = None,
    row_position: str | None = None,
) -> Staged:
    desc = area.rows(f"DESCRIBE {area.raw}")
    types = {r[0]: r[1] for r in desc if r[0] != "_row"}
    n_rows = area.count(area.raw)
    n_unparsed = area.count(area.unparsed)
    return Staged(
        list(types),
        types,
        n_rows,
        n_unparsed,
        location,
        checksum,
        is_json_lines,
        row_offset,
        row_position,
    )


# DuckDB's default line limit, passed explicitly so that the quarantine reason can name it.
MAX_LINE_BYTES = 2_000_000
# DuckDB keeps this many characters of a rejected line (``csv_line``); longer lines are cut.
_RAW_CHARS = 10_000


def _head(area: Area, name: str, path: Path) -> bytes:
    """The first 64 KiB of the file's content (decompressed)."""
    if path.suffix.lower() == ".zst":  # no zstd in Python's standard library: ask DuckDB
        try:
            line = area.scalar(
                f"""SELECT line FROM read_csv({_sql_str(str(path))}, columns={{'line': 'VARCHAR'}},
                    header=false, auto_detect=false, delim=chr(1), quote='', escape='',
                    strict_mode=false, null_padding=true) LIMIT 1"""
            )
        except duckdb.InvalidInputException:
            return b"\xff"  # not UTF-8: said as such by the caller
        except duckdb.Error as exc:
            raise SourceError(f"source {name!r}: cannot read {path}: {_short(exc)}") from None
        return b"" if line is None else str(line).encode()
    try:
        with open_decompressed(path) as fb:
            return fb.read(1 << 16)
    except _DAMAGED as exc:
        raise _damaged(name, path, exc) from None
    except OSError as exc:
        raise SourceError(f"source {name!r}: cannot read {path}: {exc.strerror or exc}") from None


# what gzip raises on a file cut short or damaged
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile)


def _damaged(name: str, path: Path, exc: BaseException) -> SourceError:
    return SourceError(
        f"source {name!r}: cannot decompress {path} ({_short(exc, 100)}): the file is "
        "damaged or was cut short; copy or export it again"
    )


def headerless_names(n_columns: int) -> list[str]:
    """The column names of a file without a header, as DuckDB's ``read_csv(...,
    header=false)`` names them: ``column0``, ``column1``, ... numbered from 0 and
    zero-padded to the width of the last number (``column00`` .. ``column10`` for 11)."""
    width = len(str(n_columns - 1))
    return [f"column{i:0{width}d}" for i in range(n_columns)]


def _csv_header(area: Area, name: str, path: Path, source: CsvSource) -> list[str]:
    """Column names from the first line (or :func:`headerless_names` without a header)."""
    import csv

    first = re.split(rb"\r\n|\r|\n", _head(area, name, path), maxsplit=1)[0]
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        if not is_utf8(source.encoding):
            raise SourceConfigError(
                f"source {name!r}: the first line of {path} holds bytes that are not valid "
                f"{source.encoding}: check `encoding:` on this source"
            ) from None
        raise SourceConfigError(
            f"source {name!r}: the first line of {path} is not valid UTF-8: set `encoding:` "
            "on this source to the file's encoding (e.g. encoding: cp1252 for a Windows "
            "export in a Western European language, latin-1, or gb18030 for Chinese)"
        ) from None
    try:
        row = next(csv.reader([text], delimiter=source.delimiter), [])
    except csv.Error as exc:
        raise SourceError(f"source {name!r}: cannot read the header of {path}: {exc}") from None
    if not row:
        raise SourceError(
            f"source {name!r}: the first line of {path} is empty; expected "
            + ("the header (the column names)" if source.header else "a first row of data")
        )
    if source.header:
        names = [c.strip() for c in row]
        if len(set(names)) != len(names) or any(not n for n in names):
            shown = ", ".join(map(repr, names))
            shown = shown if len(shown) <= 200 else shown[:199] + "…"
            raise SourceError(
                f"source {name!r}: the header of {path} has empty or repeated column names: "
                f"[{shown}]; fix the header row"
            )
        return names
    return headerless_names(len(row))


def _read_text(area: Area, path: str, columns: dict[str, str], options: str) -> None:
    """``raw0`` (the rows, in file order) and ``text_rejects`` (DuckDB's rejects) from one
    scan of a text file: strict (a record DuckDB cannot split is a reject, never guessed
    at), every column VARCHAR, no sniffing."""
    for leftover in (area.text_rejects, area.text_scans, area.raw0):
        area.execute(f"DROP TABLE IF EXISTS {leftover}")
    spec = "{" + ", ".join(f"{_sql_str(c)}: {_sql_str(t)}" for c, t in columns.items()) + "}"
    area.execute(
        f"""CREATE TEMP TABLE {area.raw0} AS SELECT * FROM read_csv({_sql_str(path)},
            columns={spec}, header=false, auto_detect=false, strict_mode=true,
            max_line_size={MAX_LINE_BYTES}, store_rejects=true,
            rejects_table={_sql_str(area.text_rejects)},
            rejects_scan={_sql_str(area.text_scans)}, {options})"""
    )


@dataclass(frozen=True)
class _Lines:
    """How the records read map to the file's record numbers (lines, for files without
    quoted line breaks): ``first`` is the number of the first record read; rows are the
    records not rejected and not blank, in order."""

    first: int
    reject_offset: int = 0  # to add to DuckDB's line numbers (the header left out of a copy)
    n_records: int | None = None  # known when the file was rewritten
    blank: npt.NDArray[np.int64] | None = None  # records DuckDB skips (rewritten files)
    stray: npt.NDArray[np.int64] | None = None  # records holding a stray line ending
    ending: str = "LF"


def _rewrite(
    name: str,
    path: Path,
    out: Path,
    *,
    quote: bytes | None,
    delimiter: bytes,
    skip_first: bool,
    failure: duckdb.Error | None,
) -> Rewritten:
    """Copy ``path`` with uniform line endings into ``out`` (see ``_line_endings``)."""
    if path.suffix.lower() == ".zst":
        found = f"DuckDB stopped: {_short(failure, 120)}" if failure else "it read no row"
        raise SourceError(
            f"source {name!r}: cannot read {path} as it is ({found}); segmint repairs mixed "
            "line endings only in plain or .gz files: decompress it and load it again"
        )
    try:
        with open_decompressed(path) as src, out.open("wb") as dst:
            return rewrite_line_endings(
                src, dst, quote=quote, delimiter=delimiter, skip_first=skip_first
            )
    except ValueError:
        raise SourceError(
            f"source {name!r}: the header line of {path} holds a carriage return (CR) in the "
            "middle; fix the header row"
        ) from None
    except _DAMAGED as exc:
        raise _damaged(name, path, exc) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise SourceError(
                f"source {name!r}: no space left for a copy of {path} with uniform line "
                f"endings in {out.parent.parent}: free some space there, or point TMPDIR at a "
                "larger folder"
            ) from None
        raise SourceError(f"source {name!r}: cannot read {path}: {exc.strerror or exc}") from None


def _register_lines(area: Area, table: str, lines: npt.NDArray[np.int64]) -> None:
    import pyarrow as pa

    area.execute(f"DROP TABLE IF EXISTS {table}")
    view = area.frame("lines", pa.table({"line": pa.array(lines, pa.int64())}))
    try:
        area.execute(f"CREATE TEMP TABLE {table} AS SELECT line FROM {view}")
    finally:
        area.stage.drop(view)


def _unparsed_from_rejects(
    area: Area,
    lines: _Lines,
    what: str,
    overrides: dict[str, str] | None = None,
) -> None:
    """Gather DuckDB's rejects (one row per line and error) into ``unparsed_lines`` (one
    row per record: its number, raw text, reasons).

    The reason holds no row content beyond DuckDB's own message (cut to 200 characters);
    ``raw`` keeps the line as DuckDB gives it, at most 10,000 characters: a longer line is
    cut there, and says so. ``overrides`` replaces DuckDB's message for an error type.
    """
    errors = "error_type || ': ' || error_message"
    for error_type, reason in (overrides or {}).items():
        errors = f"CASE WHEN error_type = {_sql_str(error_type)} THEN {_sql_str(reason)} ELSE {errors} END"
    limit_mb = f"{MAX_LINE_BYTES / 1e6:g}"
    size = "TRY_CAST(regexp_extract(error_message, 'Actual Size:\\s*([0-9]+)', 1) AS BIGINT)"
    stray = f"line IN (SELECT line FROM {area.stray_lines})" if lines.stray is not None else "FALSE"
    area.execute(f"DROP TABLE IF EXISTS {area.unparsed_lines}")
    area.execute(
        f"""CREATE TEMP TABLE {area.unparsed_lines} AS
        SELECT line, CASE WHEN n_chars >= {_RAW_CHARS} OR over_limit
                          THEN left(raw, {_RAW_CHARS}) || ' …[truncated: only the first '
                               || least(n_chars, {_RAW_CHARS}) || ' characters are kept]'
                          ELSE raw END AS raw,
               'unparseable row: ' || CASE
                   WHEN {stray} THEN {_sql_str(stray_reason(lines.ending))}
                   WHEN over_limit THEN 'line of ' || printf('%.1f', bytes / 1e6) || ' MB ('
                        || bytes || ' bytes) is over the {limit_mb} MB limit of the {what} reader'
                   ELSE left(errors, 200) END AS reason
        FROM (
            SELECT line::BIGINT + {lines.reject_offset} AS line, first(csv_line) AS raw,
                   length(first(csv_line)) AS n_chars,
                   bool_or(error_type = 'LINE SIZE OVER MAXIMUM') AS over_limit,
                   max({size}) AS bytes,
                   string_agg(DISTINCT {errors}, '; ') AS errors
            FROM {area.text_rejects} GROUP BY line
        )"""
    )


def _number_rows(area: Area, lines: _Lines, n_data: int, n_unparsed: int, target: str) -> None:
    """``target`` (a table): the rows of ``raw0`` with ``_row``, their record numbers: the
    records neither rejected nor blank, in order."""
    total = lines.n_records if lines.n_records is not None else n_data + n_unparsed
    blank = f"AND l NOT IN (SELECT line FROM {area.blank_lines})" if lines.blank is not None else ""
    area.execute(
        f"""CREATE TEMP TABLE {target} AS
        WITH lines AS (
            SELECT l AS line, row_number() OVER (ORDER BY l) AS ord
            FROM range({lines.first}, {lines.first + total}) r(l)
            WHERE l NOT IN (SELECT line FROM {area.unparsed_lines}) {blank}
        ), recs AS (SELECT *, rowid + 1 AS ord FROM {area.raw0})
        SELECT recs.* EXCLUDE (ord), lines.line::BIGINT AS _row
        FROM recs JOIN lines USING (ord)"""
    )


def _unaccounted(area: Area, name: str, path: Path, lines: _Lines) -> str | None:
    """After a rewrite, every record must be accounted for: read, rejected, or blank (and
    each record holding a stray line ending rejected). Returns what does not add up."""
    n_data = area.count(area.raw0)
    n_unparsed = area.count(area.unparsed_lines)
    n_blank = 0 if lines.blank is None else len(lines.blank)
    unrejected = int(
        area.scalar(
            f"SELECT count(*) FROM {area.stray_lines} "
            f"WHERE line NOT IN (SELECT line FROM {area.unparsed_lines})"
        )
    )
    found = n_data + n_unparsed + n_blank
    if found == lines.n_records and not unrejected:
        return None
    return (
        f"source {name!r}: cannot tell the records of {path} apart: by its line endings "
        f"it holds {lines.n_records} records (after the header), but the reader found "
        f"{found} ({n_data} rows, {n_unparsed} unreadable, {n_blank} blank); nothing was "
        "loaded. Save it with one kind of line ending (LF) and check its quoting"
    )


def _empty_read(area: Area) -> bool:
    return not area.scalar(f"SELECT EXISTS (FROM {area.raw0}) OR EXISTS (FROM {area.text_rejects})")


def _breaks_in_rejects(area: Area) -> bool:
    """Whether a rejected record holds a line break: a line ending DuckDB took for data
    (an LF line in a file it reads as CRLF) makes two records one, and a reject."""
    return bool(
        area.scalar(
            f"SELECT EXISTS (FROM {area.text_rejects} "
            "WHERE contains(csv_line, chr(10)) OR contains(csv_line, chr(13)))"
        )
    )


def _rename(area: Area, pairs: dict[str, str]) -> None:
    """Rename relations by role (``{old role: new role}``)."""
    for old_role, new_role in pairs.items():
        old, new = getattr(area, old_role), getattr(area, new_role)
        area.execute(f"DROP TABLE IF EXISTS {new}")
        area.execute(f"ALTER TABLE {old} RENAME TO {new}")


_FIRST = {"raw0": "first_raw0", "text_rejects": "first_rejects"}  # roles


def _mixed_line_endings(head: bytes) -> bool:
    """Whether the file's first bytes (:func:`_head`) hold line endings of two kinds (CRLF
    and a bare LF, or a bare CR and an LF). DuckDB may then read it without an error yet
    merge lines into one record (a CRLF header, LF lines, quoted commas: a user id of
    ',"\\nu'), so such a file is read again from a copy with uniform line endings (a
    small file's copy costs little; a large one pays it only when its head mixes them)."""
    crlf = head.count(b"\r\n")
    bare_lf = head.count(b"\n") - crlf
    bare_cr = head.count(b"\r") - crlf
    return bool((crlf and bare_lf) or (bare_cr and (bare_lf or crlf)))


def _read_lines(
    area: Area,
    name: str,
    path: Path,
    columns: dict[str, str],
    options: str,
    *,
    header: int,
    quote: bytes | None,
    delimiter: bytes,
    what: str,
    overrides: dict[str, str] | None = None,
) -> _Lines:
    """Read a text file into ``raw0`` (the rows) and ``unparsed_lines`` (the records
    DuckDB rejected): as it is, in one pass. Only when something looks wrong (DuckDB
    stopped at a line ending, read nothing, or rejected a record holding a line break) the
    file is copied with uniform line endings and read again; the copy's reading is kept
    when it accounts for every record, and otherwise the load stops (or, when DuckDB's own
    reading had stood, that one is kept). Returns how rows map to record numbers."""
    as_is = _Lines(first=header + 1)
    failure: duckdb.Error | None = None
    try:
        _read_text(area, str(path), columns, f"skip={header}, {options}")
    except duckdb.InvalidInputException as exc:  # e.g. an unexpected carriage return
        failure = exc
    read_as_is = failure is None and not _empty_read(area)
    if (
        read_as_is
        and not _breaks_in_rejects(area)
        and not _mixed_line_endings(_head(area, name, path))
    ):
        _unparsed_from_rejects(area, as_is, what, overrides)
        return as_is
    if failure is None:
        _rename(area, _FIRST)
    with tempfile.TemporaryDirectory(prefix="segmint-") as tmp:
        out = Path(tmp) / "lines.txt"
        fixed = _rewrite(
            name,
            path,
            out,
            quote=quote,
            delimiter=delimiter,
            skip_first=bool(header),
            failure=failure,
        )
        skips_blank = len(columns) > 1  # DuckDB reads a blank line as a row of one column
        if failure is None and fixed.n_records == (len(fixed.blank) if skips_blank else 0):
            _rename(area, {v: k for k, v in _FIRST.items()})  # only a header and blank lines
            _unparsed_from_rejects(area, as_is, what, overrides)
            return as_is
        try:
            _read_text(area, str(out), columns, f"skip=0, new_line='\\n', {options}")
        except duckdb.Error as exc:
            raise SourceError(f"source {name!r}: cannot read {path}: {_short(exc)}") from None
    lines = _Lines(
        first=header + 1,
        reject_offset=header,
        n_records=fixed.n_records,
        blank=fixed.blank if skips_blank else None,
        stray=fixed.stray,
        ending=fixed.ending,
    )
    _register_lines(area, area.stray_lines, fixed.stray)
    if lines.blank is not None:
        _register_lines(area, area.blank_lines, lines.blank)
    _unparsed_from_rejects(area, lines, what, overrides)
    problem = _unaccounted(area, name, path, lines)
    if problem is None:
        for role in _FIRST.values():
            area.execute(f"DROP TABLE IF EXISTS {getattr(area, role)}")
        return lines
    if not read_as_is:
        raise SourceError(problem)
    log.info("%s; DuckDB's reading of the file as it is stands", problem)
    _rename(area, {v: k for k, v in _FIRST.items()})
    _unparsed_from_rejects(area, as_is, what, overrides)
    return as_is


def _numbered(
    area: Area,
    lines: _Lines,
    target: str | None = None,
    blank_column: str | None = None,
) -> bool:
    """Quarantine the unreadable records (``unparsed_lines``) and number the rows:
    ``target`` (default ``raw``) as a view over ``raw0`` numbered by position when no record was rejected
    or skipped (returns True), else as a table numbered by :func:`_number_rows` (returns
    False). ``blank_column``: the only column of a CSV file read with quoted empty values
    kept as '', where DuckDB reads a blank line as a row holding NULL: such rows are
    numbered, then left out (blank lines are not rows), and '' becomes NULL, as in any
    other file."""
    target = target or area.raw
    n_data = area.count(area.raw0)
    n_unparsed = area.count(area.unparsed_lines)
    area.execute(f"INSERT INTO {area.unparsed} SELECT line, raw, reason FROM {area.unparsed_lines}")
    blank_rows = blank_column is not None and bool(
        area.scalar(f"SELECT EXISTS (FROM {area.raw0} WHERE {_ident(blank_column)} IS NULL)")
    )
    try:
        if n_unparsed == 0 and not blank_rows and (lines.blank is None or len(lines.blank) == 0):
            # rowid is the insertion order of the table read from the file: no copy needed
            values = "*"
            if blank_column is not None:
                col = _ident(blank_column)
                values = f"NULLIF({col}, '') AS {col}"
            area.execute(
                f"CREATE TEMP VIEW {target} AS "
                f"SELECT {values}, (rowid + {lines.first})::BIGINT AS _row FROM {area.raw0}"
            )
            return True
        _number_rows(area, lines, n_data, n_unparsed, target)
        area.execute(f"DROP TABLE {area.raw0}")
        if blank_column is not None:
            col = _ident(blank_column)
            area.execute(f"DELETE FROM {target} WHERE {col} IS NULL")
            area.execute(f"UPDATE {target} SET {col} = NULL WHERE {col} = ''")
        return False
    finally:
        for helper in (
            area.unparsed_lines,
            area.stray_lines,
            area.blank_lines,
            area.text_rejects,
            area.text_scans,
        ):
            area.execute(f"DROP TABLE IF EXISTS {helper}")


def _stage_csv(area: Area, name: str, source: CsvSource, config: Config) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path, text=True)
    if path.stat().st_size == 0:
        raise SourceError(f"source {name!r}: file {path} is empty (0 bytes, not even a header row)")
    digest = file_checksum_async(path)
    if is_utf8(source.encoding):
        return _stage_csv_utf8(area, name, path, source, digest)
    with tempfile.TemporaryDirectory(prefix="segmint-") as tmp:
        copy = _as_utf8(name, path, source.encoding, Path(tmp) / "utf8.csv")
        try:
            staged = _stage_csv_utf8(area, name, copy, source, digest)
        except SourceError as exc:  # name the user's file, not the copy
            raise type(exc)(str(exc).replace(str(copy), str(path))) from None
    return Staged(
        staged.columns,
        staged.types,
        staged.n_rows,
        staged.n_unparsed,
        str(path),
        digest,
        row_offset=staged.row_offset,
        row_position=staged.row_position,
    )


def _as_utf8(name: str, path: Path, encoding: str, out: Path) -> Path:
    """``path`` (plain or .gz, in ``encoding``) copied as UTF-8 into ``out``
    (:mod:`segmint.sources._encodings`)."""
    if path.suffix.lower() == ".zst":
        raise SourceError(
            f"source {name!r}: segmint reads a file in {encoding} (not UTF-8) only when it "
            f"is plain or .gz: decompress {path} and load it again"
        )
    try:
        with open_decompressed(path) as src, out.open("wb") as dst:
            n_bad = transcode_to_utf8(src, dst, encoding)
    except _DAMAGED as exc:
        raise _damaged(name, path, exc) from None
    except UnicodeError as exc:  # not a bad byte (those are marked): e.g. no BOM for utf-16
        raise SourceConfigError(
            f"source {name!r}: cannot read {path} as {encoding}: {_short(exc, 100)}; "
            "check `encoding:` (a file without a byte order mark needs the byte order in the "
            "name, e.g. utf-16-le)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise SourceError(
                f"source {name!r}: no space left for a UTF-8 copy of {path} in "
                f"{out.parent.parent}: free some space there, or point TMPDIR at a larger "
                "folder"
            ) from None
        raise SourceError(f"source {name!r}: cannot read {path}: {exc.strerror or exc}") from None
    if n_bad:
        log.info("source %s: %d byte sequences not valid %s", name, n_bad, encoding)
    return out


def _stage_csv_utf8(
    area: Area,
    name: str,
    path: Path,
    source: CsvSource,
    digest: str | Future[str],
) -> Staged:
    """Stage a CSV file in UTF-8 (``path``: the user's file, or its UTF-8 copy)."""
    columns = _csv_header(area, name, path, source)
    # No sniffing: the header is read here and every column is text, so one stray quote
    # cannot make the sniffer pick another dialect for the whole file. No `new_line`
    # either: DuckDB finds the line ending as it parses, quotes understood (a guess from
    # the first bytes read a file of LF lines with a CRLF in one quoted value as nothing).
    header = 1 if source.header else 0
    lines = _read_lines(
        area,
        name,
        path,
        dict.fromkeys(columns, "VARCHAR"),
        f"delim={_sql_str(source.delimiter)}, quote='\"', escape='\"', null_padding=false, "
        f"parallel=true{', allow_quoted_nulls=false' if len(columns) == 1 else ''}",
        header=header,
        quote=b'"',
        delimiter=source.delimiter.encode(),
        what="CSV",
        overrides={"INVALID ENCODING": _invalid_encoding(source.encoding)},
    )
    if _numbered(area, lines, blank_column=columns[0] if len(columns) == 1 else None):
        return _finish(area, str(path), digest, row_offset=lines.first, row_position="rowid")
    return _finish(area, str(path), digest)  # row numbers skip the broken lines


def _invalid_encoding(encoding: str) -> str:
    """The quarantine reason of a line holding bytes not valid in the file's encoding."""
    if is_utf8(encoding):
        return (
            "the line is not valid UTF-8: if the file is in another encoding, set "
            "`encoding:` on the source (e.g. cp1252, latin-1, gb18030)"
        )
    return f"the line holds bytes that are not valid {encoding} (shown as ? in raw)"


def _stage_parquet(area: Area, name: str, source: ParquetSource, config: Config) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path)
    digest = file_checksum_async(path)
    # A view, not a copy: Parquet is already typed and columnar; validation reads it once.
    area.execute(
        f"CREATE TEMP VIEW {area.raw0} AS "
        f"SELECT * FROM read_parquet({_sql_str(str(path))}, file_row_number=true)"
    )
    area.execute(
        f"CREATE TEMP VIEW {area.raw} AS SELECT * EXCLUDE (file_row_number), "
        f"(file_row_number + 1)::BIGINT AS _row FROM {area.raw0}"
    )
    return _finish(area, str(path), digest, row_offset=1, row_position="file_row_number")


def _stage_jsonl(area: Area, name: str, source: JsonlSource, config: Config) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path, text=True)
    digest = file_checksum_async(path)
    # Read each line as text first, so one malformed line is quarantined, not fatal. Strict:
    # a line holding the byte 0x01 (the "delimiter", never valid in JSON) is rejected whole,
    # not cut there.
    lines = _read_lines(
        area,
        name,
        path,
        {"line": "VARCHAR"},
        "delim=chr(1), quote='', escape='', null_padding=true, parallel=false",
        header=0,
        quote=None,
        delimiter=b"\x01",
        what="JSON lines",
        overrides={
            "TOO MANY COLUMNS": "malformed JSON line: it holds the control character U+0001",
            "INVALID ENCODING": "the line is not valid UTF-8",
        },
    )
    _numbered(area, lines, target=area.lines)
    area.execute(
        f"""INSERT INTO {area.unparsed}
        SELECT _row, line, 'malformed JSON line' FROM {area.lines}
        WHERE line IS NOT NULL AND trim(line) <> ''
          AND (NOT json_valid(line) OR json_type(line) <> 'OBJECT')"""
    )
    area.execute(
        f"""CREATE TEMP TABLE {area.raw} AS
        SELECT line::JSON AS _json, _row FROM {area.lines}
        WHERE line IS NOT NULL AND trim(line) <> '' AND json_valid(line)
          AND json_type(line) = 'OBJECT'"""
    )
    area.drop(area.lines)
    area.drop(area.raw0)
    keys = [
        r[0]
        for r in area.rows(f"SELECT DISTINCT unnest(json_keys(_json)) FROM {area.raw} ORDER BY 1")
    ]
    staged = _finish(area, str(path), digest, is_json_lines=True)
    return Staged(
        keys,
        dict.fromkeys(keys, "JSON"),
        staged.n_rows,
        staged.n_unparsed,
        staged.location,
        staged.digest,
        is_json_lines=True,
    )


def _stage_query(area: Area, name: str, source: QuerySource, config: Config) -> Staged:
    from segmint.sources._checked import checked_query  # it reads Staged from here

    sql = checked_query(name, source.query.replace("{here}", str(config.root)))
    area.execute(
        f"CREATE TEMP TABLE {area.raw} AS "
        f"SELECT *, (row_number() OVER ())::BIGINT AS _row FROM ({sql})"
    )
    checksum = hashlib.sha256(sql.encode()).hexdigest()
    return _finish(area, f"query:{name}", checksum)


def _stage_postgres(area: Area, name: str, source: PostgresSource, config: Config) -> Staged:
    import psycopg

    dsn = source.dsn
    if dsn.startswith("$"):
        dsn = os.environ.get(dsn[1:], "")
        if not dsn:
            raise SourceConfigError(
                f"source {name!r}: environment variable {source.dsn[1:]} is not set"
            )
    select = source.query or f"SELECT * FROM {source.relation}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.csv"
        try:
            with psycopg.connect(dsn) as pg, pg.cursor() as cur, out.open("wb") as f:
                copy_sql = f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true)"
                with cur.copy(copy_sql) as copy:  # type: ignore[arg-type]
                    for chunk in copy:
                        f.write(chunk)
        except psycopg.Error as exc:
            raise SourceError(f"source {name!r}: PostgreSQL read failed: {exc}") from None
        area.execute(
            f"""CREATE TEMP TABLE {area.raw} AS
            SELECT *, (row_number() OVER ())::BIGINT AS _row
            FROM read_csv({_sql_str(str(out))}, all_varchar=true, header=true)"""
        )
        checksum = file_checksum(out)
    return _finish(area, f"postgres:{source.relation or 'query'}", checksum)
