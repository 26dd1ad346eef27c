"""Readers: put one source's rows into a staging relation of the DuckDB engine.

Each reader creates ``_raw`` in the engine: the source's own columns plus ``_row`` (the
1-based row number in the source: the line number for text files, the row index for
Parquet and databases). Rows the reader cannot even parse go to ``_unparsed``
(``_row``, ``raw``, ``reason``) so they are quarantined, never lost.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from segmint.config import (
    Config,
    CsvSource,
    JsonlSource,
    ParquetSource,
    PostgresSource,
    QuerySource,
    Source,
)
from segmint.errors import SourceError


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
    # When set, ``_row`` is the scan position in ``_raw`` plus this offset, so a table
    # materialised from it in scan order can number its rows by ``rowid`` instead of
    # storing them (Parquet: file_row_number + 1; CSV without broken lines: the line).
    row_offset: int | None = None
    # ... and the column of ``_raw0`` (the source as read) holding that position, so that
    # rows can be fetched by number with a filter the scan itself applies.
    row_position: str | None = None

    @property
    def checksum(self) -> str:
        return self.digest if isinstance(self.digest, str) else self.digest.result()


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


def _need_file(name: str, path: Path) -> None:
    if not path.exists():
        raise SourceError(
            f"source {name!r}: file {path} does not exist. Fix `path:` in segmint.yaml "
            "(relative paths are relative to the folder holding segmint.yaml)"
        )


def _drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    if kind:
        con.execute(f"DROP {'VIEW' if kind[0] == 'VIEW' else 'TABLE'} {name}")


def stage(con: duckdb.DuckDBPyConnection, name: str, source: Source, config: Config) -> Staged:
    """Stage ``source`` into ``_raw`` (and ``_unparsed``) in the engine ``con``."""
    con.execute("DROP TABLE IF EXISTS _unparsed")
    con.execute("CREATE TEMP TABLE _unparsed (_row BIGINT, raw VARCHAR, reason VARCHAR)")
    for leftover in ("_raw", "_raw0"):
        _drop_relation(con, leftover)
    try:
        if isinstance(source, CsvSource):
            return _stage_csv(con, name, source, config)
        if isinstance(source, ParquetSource):
            return _stage_parquet(con, name, source, config)
        if isinstance(source, JsonlSource):
            return _stage_jsonl(con, name, source, config)
        if isinstance(source, QuerySource):
            return _stage_query(con, name, source, config)
        if isinstance(source, PostgresSource):
            return _stage_postgres(con, name, source, config)
    except duckdb.Error as exc:
        raise SourceError(f"source {name!r}: cannot read it: {exc}") from None
    raise SourceError(f"source {name!r}: unknown source type {type(source).__name__}")


def _finish(
    con: duckdb.DuckDBPyConnection,
    location: str,
    checksum: str | Future[str],
    is_json_lines: bool = False,
    row_offset: int | None = None,
    row_position: str | None = None,
) -> Staged:
    desc = con.execute("DESCRIBE _raw").fetchall()
    types = {r[0]: r[1] for r in desc if r[0] != "_row"}
    n_rows = int(con.execute("SELECT count(*) FROM _raw").fetchone()[0])  # type: ignore[index]
    n_unparsed = int(con.execute("SELECT count(*) FROM _unparsed").fetchone()[0])  # type: ignore[index]
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


def _csv_newline(path: Path) -> str:
    """The line terminator, for files that end lines with a bare carriage return."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fb:
        head = fb.read(1 << 16)
    if b"\r\n" in head:
        return "\\r\\n"
    return "\\r" if b"\r" in head and b"\n" not in head else "\\n"


def _csv_header(name: str, path: Path, source: CsvSource) -> list[str]:
    """Column names from the first line (or column1..N without a header)."""
    import csv
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fb:
        head = fb.read(1 << 16)
    first = re.split(rb"\r\n|\r|\n", head, maxsplit=1)[0]
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(
            f"source {name!r}: the first line of {path} is not valid UTF-8 (latin-1 or "
            "cp1252?); re-export the file as UTF-8"
        ) from None
    try:
        row = next(csv.reader([text], delimiter=source.delimiter), [])
    except csv.Error as exc:
        raise SourceError(f"source {name!r}: cannot read the header of {path}: {exc}") from None
    if source.header:
        names = [c.strip() for c in row]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise SourceError(
                f"source {name!r}: the header of {path} has empty or repeated column names: "
                f"{names}; fix the header row"
            )
        return names
    return [f"column{i + 1}" for i in range(len(row))]


def _stage_csv(
    con: duckdb.DuckDBPyConnection, name: str, source: CsvSource, config: Config
) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path)
    if path.stat().st_size == 0:
        raise SourceError(f"source {name!r}: file {path} is empty (0 bytes, not even a header row)")
    columns = _csv_header(name, path, source)
    digest = file_checksum_async(path)
    con.execute("DROP TABLE IF EXISTS _csv_rejects")
    con.execute("DROP TABLE IF EXISTS _csv_scans")
    # No sniffing: the header is read here and every column is text, so one stray quote
    # cannot make the sniffer pick another dialect for the whole file.
    spec = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in columns) + "}"
    opts = (
        f"columns={spec}, header=false, skip={1 if source.header else 0}, auto_detect=false, "
        f"delim={_sql_str(source.delimiter)}, quote='\"', escape='\"', store_rejects=true, "
        f"new_line='{_csv_newline(path)}', "
        "rejects_table='_csv_rejects', rejects_scan='_csv_scans', "
        "null_padding=false, parallel=true"
    )
    con.execute(f"CREATE TEMP TABLE _raw0 AS SELECT * FROM read_csv({_sql_str(str(path))}, {opts})")
    n_rej = int(con.execute("SELECT count(*) FROM _csv_rejects").fetchone()[0])  # type: ignore[index]
    header = 1 if source.header else 0
    row_offset: int | None = 1 + header
    if n_rej == 0:
        # rowid is the insertion order of the table read from the file: no copy needed
        con.execute(
            f"CREATE TEMP VIEW _raw AS SELECT *, (rowid + 1 + {header})::BIGINT AS _row FROM _raw0"
        )
    else:
        # Map record ordinals to file lines: the data lines that were not rejected, in order.
        # (Assumes one line per record, i.e. no quoted newlines among the rejected lines.)
        con.execute(
            """CREATE TEMP TABLE _unparsed_lines AS
            SELECT DISTINCT line::BIGINT AS line, first(csv_line) AS raw,
                   string_agg(DISTINCT error_type || ': ' || error_message, '; ') AS reason
            FROM _csv_rejects GROUP BY line"""
        )
        con.execute(
            "INSERT INTO _unparsed SELECT line, raw, 'unparseable row: ' || reason "
            "FROM _unparsed_lines"
        )
        n_data = int(con.execute("SELECT count(*) FROM _raw0").fetchone()[0])  # type: ignore[index]
        total = n_data + int(con.execute("SELECT count(*) FROM _unparsed_lines").fetchone()[0])  # type: ignore[index]
        con.execute(
            f"""CREATE TEMP TABLE _raw AS
            WITH lines AS (
                SELECT l AS line, row_number() OVER (ORDER BY l) AS ord
                FROM range({header + 1}, {header + total + 1}) r(l)
                WHERE l NOT IN (SELECT line FROM _unparsed_lines)
            ), recs AS (SELECT *, rowid + 1 AS ord FROM _raw0)
            SELECT recs.* EXCLUDE (ord), lines.line::BIGINT AS _row
            FROM recs JOIN lines USING (ord)"""
        )
        con.execute("DROP TABLE _unparsed_lines")
        con.execute("DROP TABLE _raw0")
        row_offset = None  # line numbers skip the broken lines
    return _finish(
        con,
        str(path),
        digest,
        row_offset=row_offset,
        row_position=None if row_offset is None else "rowid",
    )


def _stage_parquet(
    con: duckdb.DuckDBPyConnection, name: str, source: ParquetSource, config: Config
) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path)
    digest = file_checksum_async(path)
    # A view, not a copy: Parquet is already typed and columnar; validation reads it once.
    con.execute(
        f"CREATE TEMP VIEW _raw0 AS "
        f"SELECT * FROM read_parquet({_sql_str(str(path))}, file_row_number=true)"
    )
    con.execute(
        "CREATE TEMP VIEW _raw AS "
        "SELECT * EXCLUDE (file_row_number), (file_row_number + 1)::BIGINT AS _row FROM _raw0"
    )
    return _finish(con, str(path), digest, row_offset=1, row_position="file_row_number")


def _stage_jsonl(
    con: duckdb.DuckDBPyConnection, name: str, source: JsonlSource, config: Config
) -> Staged:
    path = config.resolve(source.path)
    _need_file(name, path)
    digest = file_checksum_async(path)
    # Read each line as text first, so one malformed line is quarantined, not fatal.
    con.execute(
        f"""CREATE TEMP TABLE _lines AS
        SELECT line, (row_number() OVER ())::BIGINT AS _row
        FROM read_csv({_sql_str(str(path))}, columns={{'line': 'VARCHAR'}}, header=false,
                      delim=chr(1), quote='', escape='', auto_detect=false,
                      strict_mode=false, null_padding=true, parallel=false)"""
    )
    con.execute(
        """INSERT INTO _unparsed
        SELECT _row, line, 'malformed JSON line' FROM _lines
        WHERE line IS NOT NULL AND trim(line) <> ''
          AND (NOT json_valid(line) OR json_type(line) <> 'OBJECT')"""
    )
    con.execute(
        """CREATE TEMP TABLE _raw AS
        SELECT line::JSON AS _json, _row FROM _lines
        WHERE line IS NOT NULL AND trim(line) <> '' AND json_valid(line)
          AND json_type(line) = 'OBJECT'"""
    )
    con.execute("DROP TABLE _lines")
    keys = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT unnest(json_keys(_json)) FROM _raw ORDER BY 1"
        ).fetchall()
    ]
    staged = _finish(con, str(path), digest, is_json_lines=True)
    return Staged(
        keys,
        dict.fromkeys(keys, "JSON"),
        staged.n_rows,
        staged.n_unparsed,
        staged.location,
        staged.digest,
        is_json_lines=True,
    )


def _stage_query(
    con: duckdb.DuckDBPyConnection, name: str, source: QuerySource, config: Config
) -> Staged:
    sql = source.query.replace("{here}", str(config.root))
    con.execute(
        f"CREATE TEMP TABLE _raw AS SELECT *, (row_number() OVER ())::BIGINT AS _row FROM ({sql})"
    )
    checksum = hashlib.sha256(sql.encode()).hexdigest()
    return _finish(con, f"query:{name}", checksum)


def _stage_postgres(
    con: duckdb.DuckDBPyConnection, name: str, source: PostgresSource, config: Config
) -> Staged:
    import psycopg

    dsn = source.dsn
    if dsn.startswith("$"):
        dsn = os.environ.get(dsn[1:], "")
        if not dsn:
            raise SourceError(f"source {name!r}: environment variable {source.dsn[1:]} is not set")
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
        con.execute(
            f"""CREATE TEMP TABLE _raw AS
            SELECT *, (row_number() OVER ())::BIGINT AS _row
            FROM read_csv({_sql_str(str(out))}, all_varchar=true, header=true)"""
        )
        checksum = file_checksum(out)
    return _finish(con, f"postgres:{source.relation or 'query'}", checksum)
