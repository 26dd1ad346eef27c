"""Ingestion benchmark (issue 2): segmint vs a bare DuckDB load vs two pandas pipelines.

Generates ``--users`` users and ``--orders`` orders (Parquet and CSV, cached in ``--out``)
with a few planted defects (~0.1%: negative totals, unknown customers, duplicate order
numbers, unknown statuses, malformed e-mails, missing customer ids) and, for each format in
the same run, times four ways of loading the same files into a fresh DuckDB file:

* ``segmint``  ``open_project(...).ingest()`` with full validation (users, then orders);
* ``duckdb``   ``CREATE TABLE ... AS SELECT * FROM read_parquet/read_csv(...)``: no checks;
* ``pandas``   ``pd.read_parquet`` / ``pd.read_csv``, the same row rules in pandas, then
  the accepted rows (and the rejects) inserted with ``con.register`` + ``INSERT ... SELECT``;
* ``pandas-rowwise``  read with pandas, then the same rules checked record by record in plain
  Python (``itertuples``; sets for duplicate keys and user ids), the accepted rows turned back
  into a DataFrame and inserted as above. Slow, so it runs on the first ``--rowwise-rows``
  orders (default 1,000,000; all users) and its orders time is extrapolated linearly; inside
  the same child (untimed) the vectorised rules run on the same rows, and the report checks
  that both accept and reject exactly the same counts.

Every path runs in its own process, so the peak RSS reported is that path's own.

Targets: segmint within 2x of the bare DuckDB load, at least 10x faster than each pandas
path, peak memory under 4 GiB.

    .venv/bin/python bench/ingest.py                       # 1M users / 20M orders
    .venv/bin/python bench/ingest.py --users 50000 --orders 1000000 --formats parquet
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    Timer,
    fmt_bytes,
    fmt_int,
    machine_facts,
    peak_rss_bytes,
    run_child,
    table,
)

HERE = Path(__file__).resolve().parent
PATHS = ("segmint", "duckdb", "pandas", "pandas-rowwise")
FORMATS = ("parquet", "csv")

# The canonical rules segmint applies to these sources (see segmint.sources._ingest), which
# the pandas path re-implements.
MAX_AMOUNT = 100_000.0
MIN_DATE = "1990-01-01"
FUTURE_TOLERANCE = timedelta(hours=24)
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
ORDER_STATUSES = ("completed", "refunded", "cancelled")
STATUS_MAP = {"paid": "completed"}


# -- data ---------------------------------------------------------------------------------


def _users_sql(n_users: int) -> str:
    # h decides the planted defects; everything is a deterministic function of the row number
    return f"""
    SELECT CASE WHEN h % 10000 = 0 THEN NULL ELSE 'C' || i END AS customer_id,
           TIMESTAMP '2018-01-01' + to_seconds((hash(i, 't') % 220000000)::BIGINT) AS signup_ts,
           CASE WHEN h % 2000 = 1 THEN 'user' || i || '.example.com'
                ELSE 'user' || i || '@example.com' END AS email,
           ['DE', 'FR', 'US', 'GB', 'NL', 'ES', 'IT', 'PL'][(hash(i, 'c') % 8)::INT + 1] AS country
    FROM (SELECT i, hash(i, 'u') AS h FROM range(1, {n_users + 1}) t(i))
    ORDER BY i"""


def _orders_sql(n_users: int, n_orders: int) -> str:
    return f"""
    SELECT CASE WHEN h % 10000 = 7 THEN 'O' || (i - 1) ELSE 'O' || i END AS order_no,
           CASE WHEN h % 2000 = 3 THEN 'X' || i
                ELSE 'C' || (1 + hash(i, 'c') % {n_users}) END AS customer_id,
           TIMESTAMP '2024-01-01' + to_seconds((hash(i, 't') % 63072000)::BIGINT) AS order_ts,
           (CASE WHEN h % 2000 = 5 THEN -1 ELSE 1 END)
               * round(5 + (hash(i, 'a') % 49500) / 100.0, 2) AS total,
           CASE WHEN hash(i, 'k') % 10 = 0 THEN 'USD' ELSE 'EUR' END AS currency,
           CASE WHEN h % 10000 = 9 THEN 'weird'
                WHEN hash(i, 's') % 20 = 0 THEN 'refunded'
                WHEN hash(i, 's') % 20 = 1 THEN 'cancelled'
                ELSE 'paid' END AS state
    FROM (SELECT i, hash(i, 'o') AS h FROM range(1, {n_orders + 1}) t(i))
    ORDER BY i"""


def data_files(out: Path, n_users: int, n_orders: int) -> dict[str, dict[str, Path]]:
    d = out / f"data-{n_users}u-{n_orders}o"
    return {fmt: {"users": d / f"users.{fmt}", "orders": d / f"orders.{fmt}"} for fmt in FORMATS}


def generate(out: Path, n_users: int, n_orders: int, formats: list[str]) -> None:
    """Write the data files that are missing (Parquet first; CSV is copied from it)."""
    import duckdb

    files = data_files(out, n_users, n_orders)
    need = [f for f in formats if not all(p.exists() for p in files[f].values())]
    if not need:
        return
    pq = files["parquet"]
    pq["users"].parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    for name, sql in (
        ("users", _users_sql(n_users)),
        ("orders", _orders_sql(n_users, n_orders)),
    ):
        if not pq[name].exists():
            print(f"generating {pq[name]} ...", flush=True)
            tmp = pq[name].with_suffix(".tmp")
            with Timer() as t:
                con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
            tmp.rename(pq[name])
            print(f"  {t.seconds:.1f} s, {fmt_bytes(pq[name].stat().st_size)}", flush=True)
        if "csv" in need and not files["csv"][name].exists():
            print(f"generating {files['csv'][name]} ...", flush=True)
            tmp = files["csv"][name].with_suffix(".tmp")
            with Timer() as t:
                con.execute(
                    f"COPY (SELECT * FROM read_parquet('{pq[name]}')) TO '{tmp}' "
                    "(FORMAT csv, HEADER true)"
                )
            tmp.rename(files["csv"][name])
            size = files["csv"][name].stat().st_size
            print(f"  {t.seconds:.1f} s, {fmt_bytes(size)}", flush=True)
    con.close()


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The options naming the benchmark data (shared by the ingestion bench scripts)."""
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=20_000_000)
    p.add_argument("--out", default=str(HERE / "out"), help="data, stores and results (gitignored)")


def bench_data(args: argparse.Namespace, formats: list[str]) -> dict[str, dict[str, Path]]:
    """The data files for ``args`` (see :func:`add_data_args`), generated where missing."""
    out = Path(args.out)
    generate(out, args.users, args.orders, formats)
    return data_files(out, args.users, args.orders)


def head_file(src: Path, n_rows: int) -> Path:
    """The first ``n_rows`` rows of ``src`` in the same format (cached next to it)."""
    import duckdb

    dst = src.with_name(f"{src.stem}-head{n_rows}{src.suffix}")
    if dst.exists():
        return dst
    reader = "read_parquet" if src.suffix == ".parquet" else "read_csv"
    fmt = (
        "(FORMAT parquet, COMPRESSION zstd)" if src.suffix == ".parquet" else "(FORMAT csv, HEADER)"
    )
    tmp = dst.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"COPY (SELECT * FROM {reader}('{src}') LIMIT {n_rows}) TO '{tmp}' {fmt}")
    con.close()
    tmp.rename(dst)
    return dst


def warm(paths: list[Path]) -> None:
    """Read the files once so every path starts with them in the page cache."""
    for p in paths:
        with p.open("rb") as f:
            while f.read(1 << 24):
                pass


# -- the paths (each runs in a child process) ----------------------------------------


def _fresh(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def write_project(fmt: str, users: Path, orders: Path, work: Path) -> None:
    """A fresh segmint project in ``work`` mapping the benchmark files (store: bench.duckdb)."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    _fresh(work / "bench.duckdb")
    cfg = {
        "store": "bench.duckdb",
        "timezone": "UTC",
        "sources": {
            "users": {
                "type": fmt,
                "path": str(users),
                "table": "users",
                "columns": {
                    "user_id": "customer_id",
                    "created_at": "signup_ts",
                    "email": "email",
                    "country": "country",
                },
            },
            "orders": {
                "type": fmt,
                "path": str(orders),
                "table": "orders",
                "columns": {
                    "order_id": "order_no",
                    "user_id": "customer_id",
                    "ts": "order_ts",
                    "amount": "total",
                    "currency": "currency",
                    "status": "state",
                },
                "values": {"status": STATUS_MAP},
            },
        },
    }
    (work / "segmint.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def child_segmint(fmt: str, users: Path, orders: Path, work: Path) -> dict[str, Any]:
    import segmint

    write_project(fmt, users, orders, work)
    stages: dict[str, Any] = {}
    with Timer() as total:
        project = segmint.open_project(work)
        with Timer() as t:
            _ = project.store  # open the store and create the schema
        stages["open"] = {"seconds": t.seconds}
        # one call for both, as `segmint ingest` does (later files are hashed while the
        # first ones load); each load's own time comes from its result
        for r in project.ingest(["users", "orders"], force=True):
            name = r.source
            stages[name] = {
                "seconds": r.seconds,
                "rows": r.rows_read,
                "accepted": r.rows_accepted,
                "rejected": r.rows_rejected,
                "inserted": r.rows_inserted,
                "by_rule": r.rejected_by_rule,
            }
        with Timer() as t:
            project.close()
        stages["close"] = {"seconds": t.seconds}
    return {"stages": stages, "seconds": total.seconds, "cpu_seconds": total.cpu_seconds}


def child_duckdb(fmt: str, users: Path, orders: Path, work: Path) -> dict[str, Any]:
    import duckdb

    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    _fresh(db)
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    stages: dict[str, Any] = {}
    with Timer() as total:
        con = duckdb.connect(str(db))
        for name, path in (("users", users), ("orders", orders)):
            with Timer() as t:
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM {reader}('{path}')")
            n = con.execute(f"SELECT count(*) FROM {name}").fetchone()
            stages[name] = {"seconds": t.seconds, "rows": int(n[0]) if n else 0}
        with Timer() as t:
            con.close()
        stages["close"] = {"seconds": t.seconds}
    return {"stages": stages, "seconds": total.seconds, "cpu_seconds": total.cpu_seconds}


def _text(s: Any) -> Any:
    """Strings trimmed, empty strings as missing (what segmint does to text columns)."""
    import pandas as pd

    s = s.astype("string").str.strip()
    return s.mask(s == "", pd.NA)


def _validate_users(df: Any, now: datetime) -> tuple[Any, Any]:
    """pandas version of segmint's row rules for users; returns (accepted, rejected)."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "_row": range(1, len(df) + 1),
            "user_id": _text(df["customer_id"]),
            "created_at": pd.to_datetime(df["signup_ts"], errors="coerce", utc=True),
            "email": _text(df["email"]),
            "country": _text(df["country"]),
        }
    )
    rule = pd.Series(pd.NA, index=out.index, dtype="string")

    def flag(mask: Any, name: str) -> None:
        rule[mask.fillna(False).astype(bool) & rule.isna()] = name

    flag(out["user_id"].isna(), "missing_required")
    # created_at and email are optional: a bad value is set to NULL, the user kept
    late = out["created_at"] > pd.Timestamp(now + FUTURE_TOLERANCE)
    early = out["created_at"] < pd.Timestamp(MIN_DATE, tz="UTC")
    out.loc[(late | early).fillna(False).astype(bool), "created_at"] = pd.NaT
    bad_email = out["email"].notna() & ~out["email"].str.fullmatch(EMAIL_RE)
    out.loc[bad_email.fillna(False).astype(bool), "email"] = pd.NA
    # duplicate keys among the rows that passed the row checks: the first one wins
    ok = rule.isna()
    dup = pd.Series(False, index=out.index)
    dup[ok] = out.loc[ok, "user_id"].duplicated(keep="first")
    flag(dup, "duplicate_key")
    return _split(out, rule)


def _validate_orders(df: Any, user_ids: Any, now: datetime) -> tuple[Any, Any]:
    """pandas version of segmint's row rules for orders; returns (accepted, rejected)."""
    import pandas as pd

    status = df["state"].astype("string").replace(STATUS_MAP).str.lower()
    out = pd.DataFrame(
        {
            "_row": range(1, len(df) + 1),
            "order_id": _text(df["order_no"]),
            "user_id": _text(df["customer_id"]),
            "ts": pd.to_datetime(df["order_ts"], errors="coerce", utc=True),
            "amount": pd.to_numeric(df["total"], errors="coerce"),
            "currency": _text(df["currency"]),
            "status": _text(status),
        }
    )
    rule = pd.Series(pd.NA, index=out.index, dtype="string")

    def flag(mask: Any, name: str) -> None:
        rule[mask.fillna(False).astype(bool) & rule.isna()] = name

    for col in ("order_id", "user_id", "ts", "amount"):
        flag(out[col].isna() & _text(df[_SOURCE_COL[col]]).isna(), "missing_required")
    flag(df["order_ts"].notna() & out["ts"].isna(), "unparseable_timestamp")
    flag(df["total"].notna() & out["amount"].isna(), "bad_type")
    flag(out["ts"] > pd.Timestamp(now + FUTURE_TOLERANCE), "future_timestamp")
    flag(out["ts"] < pd.Timestamp(MIN_DATE, tz="UTC"), "implausible_timestamp")
    flag(out["amount"] < 0, "negative_amount")
    flag(out["amount"] > MAX_AMOUNT, "absurd_amount")
    # status is optional: an unknown one is set to NULL, the order kept
    unknown = out["status"].notna() & ~out["status"].isin(ORDER_STATUSES)
    out.loc[unknown.fillna(False).astype(bool), "status"] = pd.NA
    # duplicates among the rows that passed the row checks (first wins), then references
    ok = rule.isna()
    dup = pd.Series(False, index=out.index)
    dup[ok] = out.loc[ok, "order_id"].duplicated(keep="first")
    flag(dup, "duplicate_key")
    flag(rule.isna() & ~out["user_id"].isin(user_ids), "unknown_reference")
    return _split(out, rule)


_SOURCE_COL = {
    "order_id": "order_no",
    "user_id": "customer_id",
    "ts": "order_ts",
    "amount": "total",
}


def _split(out: Any, rule: Any) -> tuple[Any, Any]:
    bad = rule.notna()
    rejected = out.loc[bad, ["_row"]].assign(rule=rule[bad])
    return out.loc[~bad].drop(columns="_row"), rejected


def child_pandas(fmt: str, users: Path, orders: Path, work: Path) -> dict[str, Any]:
    import duckdb
    import pandas as pd

    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    _fresh(db)
    now = datetime.now(UTC)
    stages: dict[str, Any] = {}
    with Timer() as total:
        con = duckdb.connect(str(db))
        con.execute("SET TimeZone='UTC'")
        con.execute(
            "CREATE TABLE users (user_id VARCHAR NOT NULL, created_at TIMESTAMPTZ, "
            "email VARCHAR, country VARCHAR)"
        )
        con.execute(
            "CREATE TABLE orders (order_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, "
            "ts TIMESTAMPTZ NOT NULL, amount DOUBLE NOT NULL, currency VARCHAR, "
            "channel VARCHAR, discount DOUBLE, status VARCHAR)"
        )
        con.execute('CREATE TABLE quarantine (source VARCHAR, "row" BIGINT, rule VARCHAR)')
        user_ids = None
        for name, path in (("users", users), ("orders", orders)):
            timings: dict[str, float] = {}
            with Timer() as t_all:
                with Timer() as t:
                    df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
                timings["read"] = t.seconds
                with Timer() as t:
                    if name == "users":
                        acc, rej = _validate_users(df, now)
                        user_ids = acc["user_id"]
                    else:
                        acc, rej = _validate_orders(df, user_ids, now)
                timings["validate"] = t.seconds
                with Timer() as t:
                    con.register("_acc", acc)
                    con.register("_rej", rej)
                    if name == "users":
                        con.execute(
                            "INSERT INTO users SELECT user_id, created_at, email, country FROM _acc"
                        )
                    else:
                        con.execute(
                            "INSERT INTO orders SELECT order_id, user_id, ts, amount, "
                            "currency, 'online', 0, status FROM _acc"
                        )
                    con.execute(f"INSERT INTO quarantine SELECT '{name}', _row, rule FROM _rej")
                    con.unregister("_acc")
                    con.unregister("_rej")
                timings["insert"] = t.seconds
            stages[name] = {
                "seconds": t_all.seconds,
                "rows": len(df),
                "accepted": len(acc),
                "rejected": len(rej),
                "by_rule": {str(k): int(v) for k, v in rej["rule"].value_counts().items()},
                "steps": timings,
            }
            del df, acc, rej
        with Timer() as t:
            con.close()
        stages["close"] = {"seconds": t.seconds}
    return {"stages": stages, "seconds": total.seconds, "cpu_seconds": total.cpu_seconds}


# -- pandas-rowwise: read with pandas, validate record by record in plain Python ------------

_EMAIL = re.compile(EMAIL_RE)
_MIN_TS = datetime.fromisoformat(MIN_DATE).replace(tzinfo=UTC)


def _isna(v: Any) -> bool:
    """None, NaN and NaT (and pd.NA, whose comparisons cannot be made bool) are missing."""
    try:
        return v is None or bool(v != v)
    except TypeError:
        return True


def _txt(v: Any) -> str | None:
    """A value as trimmed text, empty as missing (what ``_text`` does to a whole column)."""
    if _isna(v):
        return None
    return str(v).strip() or None


def _ts(v: Any) -> tuple[datetime | None, bool]:
    """(timestamp in UTC or None, whether a present value failed to parse)."""
    if _isna(v):
        return None, False
    if isinstance(v, datetime):  # Parquet: pd.Timestamp already
        ts = v
    else:
        try:
            ts = datetime.fromisoformat(str(v))
        except ValueError:
            return None, True
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts, False


def _num(v: Any) -> tuple[float | None, bool]:
    """(number or None, whether a present value failed to parse)."""
    if _isna(v):
        return None, False
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None, True
    if x != x:  # "nan" as text: present but not a number
        return None, True
    return x, False


def _check_user(rec: Any, max_ts: datetime) -> tuple[tuple[Any, ...] | None, str | None]:
    """One user record: (accepted row, None) or (None, rule)."""
    user_id = _txt(rec.customer_id)
    if user_id is None:
        return None, "missing_required"
    # created_at and email are optional: a bad value is set to None, the user kept
    created_at, bad = _ts(rec.signup_ts)
    if bad or (created_at is not None and not _MIN_TS <= created_at <= max_ts):
        created_at = None
    email = _txt(rec.email)
    if email is not None and not _EMAIL.fullmatch(email):
        email = None
    return (user_id, created_at, email, _txt(rec.country)), None


def _check_order(rec: Any, max_ts: datetime) -> tuple[tuple[Any, ...] | None, str | None]:
    """One order record's row checks: (row, None) or (None, rule); keys are checked later."""
    order_id = _txt(rec.order_no)
    user_id = _txt(rec.customer_id)
    ts, ts_bad = _ts(rec.order_ts)
    amount, amount_bad = _num(rec.total)
    if (
        (order_id is None)
        or (user_id is None)
        or (ts is None and _txt(rec.order_ts) is None)
        or (amount is None and _txt(rec.total) is None)
    ):
        return None, "missing_required"
    if ts_bad or ts is None:
        return None, "unparseable_timestamp"
    if amount_bad or amount is None:
        return None, "bad_type"
    if ts > max_ts:
        return None, "future_timestamp"
    if ts < _MIN_TS:
        return None, "implausible_timestamp"
    if amount < 0:
        return None, "negative_amount"
    if amount > MAX_AMOUNT:
        return None, "absurd_amount"
    status = None
    if not _isna(rec.state):
        s = str(rec.state)
        status = STATUS_MAP.get(s, s).lower().strip() or None
    if status is not None and status not in ORDER_STATUSES:
        status = None  # optional: an unknown status is set to None, the order kept
    return (order_id, user_id, ts, amount, _txt(rec.currency), status), None


def _rowwise_users(df: Any, now: datetime) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    max_ts = now + FUTURE_TOLERANCE
    accepted: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, rec in enumerate(df.itertuples(index=False), start=1):
        row, rule = _check_user(rec, max_ts)
        if row is not None:
            if row[0] in seen:
                rule = "duplicate_key"
            else:
                seen.add(row[0])
                accepted.append(row)
                continue
        rejected.append((i, str(rule)))
    return accepted, rejected


def _rowwise_orders(
    df: Any, user_ids: set[str], now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    max_ts = now + FUTURE_TOLERANCE
    accepted: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, rec in enumerate(df.itertuples(index=False), start=1):
        row, rule = _check_order(rec, max_ts)
        if row is not None:
            # the first row with a key wins, even if it then fails the reference check
            if row[0] in seen:
                rule = "duplicate_key"
            else:
                seen.add(row[0])
                if row[1] in user_ids:
                    accepted.append(row)
                    continue
                rule = "unknown_reference"
        rejected.append((i, str(rule)))
    return accepted, rejected


_USER_COLS = ["user_id", "created_at", "email", "country"]
_ORDER_COLS = ["order_id", "user_id", "ts", "amount", "currency", "status"]


def child_pandas_rowwise(fmt: str, users: Path, orders: Path, work: Path) -> dict[str, Any]:
    import duckdb
    import pandas as pd

    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    _fresh(db)
    now = datetime.now(UTC)
    stages: dict[str, Any] = {}

    def read(path: Path) -> Any:
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)

    with Timer() as total:
        con = duckdb.connect(str(db))
        con.execute("SET TimeZone='UTC'")
        con.execute(
            "CREATE TABLE users (user_id VARCHAR NOT NULL, created_at TIMESTAMPTZ, "
            "email VARCHAR, country VARCHAR)"
        )
        con.execute(
            "CREATE TABLE orders (order_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, "
            "ts TIMESTAMPTZ NOT NULL, amount DOUBLE NOT NULL, currency VARCHAR, "
            "channel VARCHAR, discount DOUBLE, status VARCHAR)"
        )
        con.execute('CREATE TABLE quarantine (source VARCHAR, "row" BIGINT, rule VARCHAR)')
        user_ids: set[str] = set()
        for name, path in (("users", users), ("orders", orders)):
            timings: dict[str, float] = {}
            with Timer() as t_all:
                with Timer() as t:
                    df = read(path)
                timings["read"] = t.seconds
                with Timer() as t:
                    if name == "users":
                        acc_rows, rej_rows = _rowwise_users(df, now)
                        user_ids = {row[0] for row in acc_rows}
                    else:
                        acc_rows, rej_rows = _rowwise_orders(df, user_ids, now)
                timings["validate"] = t.seconds
                with Timer() as t:
                    cols = _USER_COLS if name == "users" else _ORDER_COLS
                    acc = pd.DataFrame(acc_rows, columns=cols)
                    rej = pd.DataFrame(rej_rows, columns=["_row", "rule"])
                    con.register("_acc", acc)
                    con.register("_rej", rej)
                    if name == "users":
                        con.execute(
                            "INSERT INTO users SELECT user_id, created_at, email, country FROM _acc"
                        )
                    else:
                        con.execute(
                            "INSERT INTO orders SELECT order_id, user_id, ts, amount, "
                            "currency, 'online', 0, status FROM _acc"
                        )
                    con.execute(f"INSERT INTO quarantine SELECT '{name}', _row, rule FROM _rej")
                    con.unregister("_acc")
                    con.unregister("_rej")
                timings["insert"] = t.seconds
            stages[name] = {
                "seconds": t_all.seconds,
                "rows": len(df),
                "accepted": len(acc),
                "rejected": len(rej),
                "by_rule": _count_rules(r for _, r in rej_rows),
                "steps": timings,
            }
            del df, acc, rej, acc_rows, rej_rows
        with Timer() as t:
            con.close()
        stages["close"] = {"seconds": t.seconds}
    result: dict[str, Any] = {
        "stages": stages,
        "seconds": total.seconds,
        "cpu_seconds": total.cpu_seconds,
    }
    result["peak_rss"] = peak_rss_bytes()  # before the untimed check below

    # untimed: the vectorised rules on the same files, to show both give the same answer
    u_acc, u_rej = _validate_users(read(users), now)
    o_acc, o_rej = _validate_orders(read(orders), u_acc["user_id"], now)
    result["vectorised"] = {
        name: {
            "accepted": len(acc),
            "rejected": len(rej),
            "by_rule": {str(k): int(v) for k, v in rej["rule"].value_counts().items()},
        }
        for name, acc, rej in (("users", u_acc, u_rej), ("orders", o_acc, o_rej))
    }
    return result


def _count_rules(rules: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rules:
        counts[r] = counts.get(r, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


CHILDREN = {
    "segmint": child_segmint,
    "duckdb": child_duckdb,
    "pandas": child_pandas,
    "pandas-rowwise": child_pandas_rowwise,
}


def run_as_child(args: argparse.Namespace) -> None:
    fn = CHILDREN[args.child]
    result = fn(args.format, Path(args.users_file), Path(args.orders_file), Path(args.work))
    result.setdefault("peak_rss", peak_rss_bytes())
    print(json.dumps(result, default=str))


# -- the parent: run everything, check, report ---------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_data_args(p)
    p.add_argument("--formats", default="parquet,csv", help="comma-separated: parquet,csv")
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated: " + ",".join(PATHS))
    p.add_argument(
        "--pandas-rows",
        type=int,
        default=None,
        help="run the pandas path on the first N orders only and extrapolate its orders "
        "time linearly (default: all orders)",
    )
    p.add_argument(
        "--rowwise-rows",
        type=int,
        default=1_000_000,
        help="run the pandas-rowwise path on the first N orders only (and all users) and "
        "extrapolate its orders time linearly (default: 1,000,000; 0 = all orders)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run segmint and the bare load this many times, alternating, and report the "
        "median run (the pandas paths run once)",
    )
    # internal: run one path in this process
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--format", help=argparse.SUPPRESS)
    p.add_argument("--users-file", help=argparse.SUPPRESS)
    p.add_argument("--orders-file", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        run_as_child(args)
        return 0

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    for f in formats:
        if f not in FORMATS:
            p.error(f"unknown format {f!r}")
    for x in paths:
        if x not in PATHS:
            p.error(f"unknown path {x!r}")
    pandas_rows = args.pandas_rows
    if pandas_rows is not None and pandas_rows >= args.orders:
        pandas_rows = None
    rowwise_rows: int | None = args.rowwise_rows or None
    if rowwise_rows is not None and rowwise_rows >= args.orders:
        rowwise_rows = None
    subset = {"pandas": pandas_rows, "pandas-rowwise": rowwise_rows}

    started = datetime.now(UTC)
    facts = machine_facts()
    print(f"segmint ingestion benchmark, {started:%Y-%m-%d %H:%M} UTC")
    print(", ".join(f"{k} {v}" for k, v in facts.items()))
    generate(out, args.users, args.orders, formats)
    files = data_files(out, args.users, args.orders)
    log = out / "children.log"

    runs: dict[str, list[dict[str, Any]]] = {}
    for rnd, fmt, path in (
        (rnd, fmt, path) for rnd in range(args.rounds) for fmt in formats for path in paths
    ):
        users_f, orders_f = files[fmt]["users"], files[fmt]["orders"]
        if rnd and path in ("pandas", "pandas-rowwise"):
            continue  # the baselines run once: their spread is small next to their ratio
        o_file = orders_f
        if subset.get(path) is not None:
            o_file = head_file(orders_f, subset[path])
        warm([users_f, o_file])
        load_before = os.getloadavg()[0]
        print(f"[{fmt}] {path}{f' (round {rnd + 1})' if args.rounds > 1 else ''} ...", flush=True)
        r = run_child(
            [
                str(Path(__file__).resolve()),
                "--child",
                path,
                "--format",
                fmt,
                "--users-file",
                str(users_f),
                "--orders-file",
                str(o_file),
                "--work",
                str(out / f"run-{fmt}-{path}"),
            ],
            log,
        )
        # other work on the machine slows every path down: record the 1-min load average
        r["load_before"], r["load_after"] = load_before, os.getloadavg()[0]
        if subset.get(path) is not None:
            st = r["stages"]["orders"]
            r["measured_orders_rows"] = st["rows"]
            r["measured_orders_seconds"] = st["seconds"]
            scale = args.orders / st["rows"]
            r["seconds"] += st["seconds"] * (scale - 1)
            st["seconds"] *= scale
            st["rows"] = args.orders
            r["extrapolated"] = True
        print(
            f"  {r['seconds']:.1f} s, CPU {r['cpu_seconds']:.1f} s, "
            f"peak RSS {fmt_bytes(r['peak_rss'])}, "
            f"load {r['load_before']:.1f} -> {r['load_after']:.1f}"
            + (" (orders extrapolated)" if r.get("extrapolated") else ""),
            flush=True,
        )
        runs.setdefault(f"{fmt}/{path}", []).append(r)
    # with several rounds (alternating the paths), each path is reported by its median run
    results: dict[str, dict[str, Any]] = {}
    for key, rs in runs.items():
        ranked = sorted(rs, key=lambda r: r["seconds"])
        results[key] = dict(ranked[(len(ranked) - 1) // 2])
        results[key]["rounds_seconds"] = [r["seconds"] for r in rs]
        results[key]["rounds_cpu_seconds"] = [r["cpu_seconds"] for r in rs]

    report = build_report(args, formats, paths, results, subset)
    print()
    print(report)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    (out / f"ingest-{stamp}.json").write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "facts": facts,
                "args": vars(args),
                "results": results,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )
    (out / f"ingest-{stamp}.md").write_text(report + "\n", encoding="utf-8")
    print(f"\nresults: {out / f'ingest-{stamp}.json'}")
    return 0


def build_report(
    args: argparse.Namespace,
    formats: list[str],
    paths: list[str],
    results: dict[str, dict[str, Any]],
    subset: dict[str, int | None],
) -> str:
    lines: list[str] = []
    rows = []
    baselines = (("pandas", "pandas"), ("pandas-rowwise", "pandas row-wise"))
    for fmt in formats:
        bare = results.get(f"{fmt}/duckdb")
        for path in paths:
            r = results[f"{fmt}/{path}"]
            n = r["stages"]["users"]["rows"] + r["stages"]["orders"]["rows"]
            measured = (
                f"extrapolated from {fmt_int(r['measured_orders_rows'])} orders"
                if r.get("extrapolated")
                else "all rows"
            )
            speedups = []
            for base, _ in baselines:
                b = results.get(f"{fmt}/{base}")
                speedups.append(f"{b['seconds'] / r['seconds']:.1f}x" if b else "-")
            extrapolated = r.get("extrapolated")
            rounds = r.get("rounds_seconds", [])
            rows.append(
                [
                    path,
                    fmt,
                    fmt_int(n),
                    f"{r['seconds']:.1f}",
                    " / ".join(f"{x:.1f}" for x in rounds) if len(rounds) > 1 else "-",
                    "-" if extrapolated else f"{r['cpu_seconds']:.1f}",
                    measured,
                    fmt_int(n / r["seconds"]),
                    fmt_bytes(r["peak_rss"]),
                    f"{r['seconds'] / bare['seconds']:.2f}x" if bare else "-",
                    "-"
                    if extrapolated or not bare
                    else f"{r['cpu_seconds'] / bare['cpu_seconds']:.2f}x",
                    *speedups,
                ]
            )
    lines.append(
        table(
            [
                "path",
                "format",
                "rows",
                "seconds (median)",
                "each round",
                "CPU s",
                "timed on",
                "rows/s",
                "peak RSS",
                "time vs bare DuckDB",
                "CPU vs bare",
                *(f"speed-up vs {label}" for _, label in baselines),
            ],
            rows,
        )
    )

    lines.append("")
    detail = []
    for fmt in formats:
        for path in paths:
            r = results[f"{fmt}/{path}"]
            st = r["stages"]
            extra = ""
            if path in ("pandas", "pandas-rowwise"):
                steps = [st[n].get("steps", {}) for n in ("users", "orders")]
                extra = "; ".join(
                    n + ": " + ", ".join(f"{k} {v:.1f}" for k, v in s.items())
                    for n, s in zip(("users", "orders"), steps, strict=True)
                )
                if r.get("extrapolated"):
                    extra += (
                        f" (orders measured on {fmt_int(r['measured_orders_rows'])} rows in "
                        f"{r['measured_orders_seconds']:.1f} s)"
                    )
            o_acc, o_rej = st["orders"].get("accepted", "-"), st["orders"].get("rejected", "-")
            if r.get("extrapolated"):
                of = f" of {fmt_int(r['measured_orders_rows'])}"
                o_acc, o_rej = f"{o_acc}{of}", f"{o_rej}{of}"
            detail.append(
                [
                    path,
                    fmt,
                    f"{st['users']['seconds']:.1f}",
                    f"{st['orders']['seconds']:.1f}",
                    str(st["users"].get("accepted", "-")),
                    str(o_acc),
                    str(o_rej),
                    f"{r['load_before']:.1f} / {r['load_after']:.1f}",
                    extra,
                ]
            )
    lines.append(
        table(
            [
                "path",
                "format",
                "users s",
                "orders s",
                "users accepted",
                "orders accepted",
                "orders rejected",
                "load avg before / after",
                "pandas steps (s)",
            ],
            detail,
        )
    )

    lines.append("")
    for path, label in baselines:
        n_sub = subset.get(path)
        if n_sub is not None and path in paths:
            lines.append(
                f"NOTE: the {label} path read only the first {fmt_int(n_sub)} orders (and all "
                f"users); its orders time is extrapolated linearly to {fmt_int(args.orders)} "
                "rows (its peak RSS is as measured on the subset, i.e. an underestimate)."
            )
    lines.append(
        f"Machine load (1-min average) is recorded per path; on a {os.cpu_count()}-core "
        "machine a load well above that means other work shared the CPUs during the run."
    )
    lines.append("Targets (segmint):")
    for fmt in formats:
        s = results.get(f"{fmt}/segmint")
        if not s:
            continue
        checks = []
        bare = results.get(f"{fmt}/duckdb")
        if bare:
            ratio = s["seconds"] / bare["seconds"]
            checks.append((f"within 2x of bare DuckDB ({ratio:.2f}x)", ratio <= 2.0))
        for base, label in baselines:
            b = results.get(f"{fmt}/{base}")
            if b:
                speed = b["seconds"] / s["seconds"]
                note = " extrapolated" if b.get("extrapolated") else ""
                checks.append(
                    (f"at least 10x faster than {label} ({speed:.1f}x{note})", speed >= 10.0)
                )
        checks.append((f"peak RSS < 4 GiB ({fmt_bytes(s['peak_rss'])})", s["peak_rss"] < 4 * GIB))
        for text, ok in checks:
            lines.append(f"  [{fmt}] {'MET    ' if ok else 'NOT MET'} {text}")

    lines.append("Correctness:")
    n_expected = {"users": args.users, "orders": args.orders}
    for fmt in formats:
        s = results.get(f"{fmt}/segmint")
        bare = results.get(f"{fmt}/duckdb")
        for name in ("users", "orders"):
            msgs = []
            if s:
                st = s["stages"][name]
                msgs.append(
                    (
                        f"segmint read {fmt_int(st['rows'])} = accepted {fmt_int(st['accepted'])}"
                        f" + rejected {fmt_int(st['rejected'])}",
                        st["rows"] == st["accepted"] + st["rejected"] == n_expected[name],
                    )
                )
            if bare:
                n = bare["stages"][name]["rows"]
                msgs.append((f"bare DuckDB loaded {fmt_int(n)}", n == n_expected[name]))
            for base, label in baselines:
                b = results.get(f"{fmt}/{base}")
                if not (s and b):
                    continue
                if b.get("extrapolated") and name == "orders":
                    msgs.append(
                        (f"{label} accepted count vs segmint not comparable (subset)", True)
                    )
                else:
                    x, y = s["stages"][name]["accepted"], b["stages"][name]["accepted"]
                    msgs.append((f"accepted: segmint {fmt_int(x)}, {label} {fmt_int(y)}", x == y))
            rw = results.get(f"{fmt}/pandas-rowwise")
            if rw:
                st, vec = rw["stages"][name], rw["vectorised"][name]
                on = (
                    f"first {fmt_int(rw['measured_orders_rows'])} orders"
                    if rw.get("extrapolated") and name == "orders"
                    else f"{fmt_int(st['rows'])} {name}"
                )
                msgs.append(
                    (
                        f"same {on}: pandas row-wise accepted {fmt_int(st['accepted'])}, "
                        f"vectorised pandas {fmt_int(vec['accepted'])}",
                        st["accepted"] == vec["accepted"],
                    )
                )
                msgs.append(
                    (
                        f"same {on}: rejects by rule identical, row-wise vs vectorised",
                        st["by_rule"] == vec["by_rule"],
                    )
                )
            for text, ok in msgs:
                lines.append(f"  [{fmt}/{name}] {'OK  ' if ok else 'FAIL'} {text}")
        if s:
            lines.append(
                f"  [{fmt}] segmint orders rejected by rule: {s['stages']['orders']['by_rule']}"
            )
        for base in ("pandas", "pandas-rowwise"):
            b = results.get(f"{fmt}/{base}")
            if b and not b.get("extrapolated"):
                lines.append(
                    f"  [{fmt}] {base} orders rejected by rule: {b['stages']['orders']['by_rule']}"
                )
        rw = results.get(f"{fmt}/pandas-rowwise")
        if rw and rw.get("extrapolated"):
            lines.append(
                f"  [{fmt}] pandas-rowwise orders rejected by rule (subset): "
                f"{rw['stages']['orders']['by_rule']}; vectorised on the same subset: "
                f"{rw['vectorised']['orders']['by_rule']}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
