"""The SQL forms the ingestion chose, timed against the forms it did not, on the bench data.

Three choices of ``segmint.sources._ingest``, each measured side by side in one run:

* ``trim``: the test deciding whether a text value needs trimming (``_trimmed``), on the
  orders' four text columns (80M values), each form checked against ``NULLIF(trim(x), '')``;
* ``checks``: what the materialising scan stores about the row-level checks of the 20M
  orders, through the real typing query: a flag (``CASE WHEN <any fails> THEN TRUE END``,
  the choice), the same test as a plain boolean column, or the reasons spelled out;
* ``insert``: how the accepted rows reach the insert into the store, after the real checks
  (users loaded first): through the anti-join against the rejects (``_valid``, the choice),
  from a copy of the typed rows with the rejects deleted (the previous way), or through a
  filter on the row-check flag (which drops the flagged rows only). Each insert runs in a
  transaction rolled back, alternating forms.

    .venv/bin/python bench/ingest_forms.py                          # all three, Parquet
    .venv/bin/python bench/ingest_forms.py --format csv --only insert
    .venv/bin/python bench/ingest_forms.py --users 50000 --orders 1000000   # quick

Best of ``--rounds`` for trim and checks; every round for insert (the first insert of a
process is often the slowest). One-off choices, so a script and not part of ``ingest.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ingest import add_data_args, bench_data, write_project

TRIM_FORMS = {
    "copy (no trim, wrong on padded text)": "{v}",
    "trim every value": "NULLIF(trim({v}), '')",
    "starts_with + ends_with + length (before)": (
        "NULLIF(CASE WHEN starts_with({v}, ' ') OR ends_with({v}, ' ') "
        "OR strlen({v}) <> length({v}) THEN trim({v}) ELSE {v} END, '')"
    ),
    "LIKE ' %' + LIKE '% ' + length": (
        "NULLIF(CASE WHEN {v} LIKE ' %' OR {v} LIKE '% ' "
        "OR strlen({v}) <> length({v}) THEN trim({v}) ELSE {v} END, '')"
    ),
    "< '!' + ends_with + length (segmint)": (
        "NULLIF(CASE WHEN {v} < '!' OR ends_with({v}, ' ') "
        "OR strlen({v}) <> length({v}) THEN trim({v}) ELSE {v} END, '')"
    ),
}


def _timed(con: Any, sql: str) -> float:
    t0 = time.perf_counter()
    con.execute(sql)
    return time.perf_counter() - t0


def _best(con: Any, sql: str, rounds: int) -> float:
    return min(_timed(con, sql) for _ in range(rounds))


def trim_forms(orders: Path, rounds: int) -> None:
    con = duckdb.connect()
    reader = "read_parquet" if orders.suffix == ".parquet" else "read_csv"
    # the four text columns, plus a few padded values so that every branch is taken
    con.execute(
        f"""CREATE TEMP TABLE s AS
        SELECT CAST(order_no AS VARCHAR) AS a, CAST(customer_id AS VARCHAR) AS b,
               CAST(currency AS VARCHAR) AS c, CAST(state AS VARCHAR) AS d
        FROM {reader}('{orders}')
        UNION ALL SELECT ' x', 'x ', '\u00a0x', '' FROM range(1000)"""
    )
    n = con.execute("SELECT count(*) * 4 FROM s").fetchone()[0]  # type: ignore[index]
    print(f"\n[trim] {n:,} text values, best of {rounds}")
    print(f"  {'form':45s} {'seconds':>8s} {'exact':>6s}")
    for label, form in TRIM_FORMS.items():
        sel = ", ".join(f"{form.format(v=c)} AS {c}" for c in "abcd")
        best = _best(con, f"CREATE OR REPLACE TEMP TABLE o AS SELECT {sel} FROM s", rounds)
        wrong = con.execute(
            f"SELECT count(*) FROM (SELECT {sel}, a AS ra, b AS rb, c AS rc, d AS rd FROM s) WHERE "
            + " OR ".join(f"{c} IS DISTINCT FROM NULLIF(trim(r{c}), '')" for c in "abcd")
        ).fetchone()[0]  # type: ignore[index]
        print(f"  {label:45s} {best:8.2f} {'yes' if wrong == 0 else f'no ({wrong:,} rows)':>6s}")
    con.close()


def _pipeline(fmt: str, files: dict[str, Path], work: Path, through: str) -> tuple[Any, ...]:
    """A fresh store with the users loaded and the orders staged and typed (``through``
    "typed") or also checked (``through`` "checked"), by the real ingestion code, in a
    staging area of the store's engine (``area.raw``, ``area.typed`` ... name its tables)."""
    from segmint.config import load_config
    from segmint.sources import _ingest as ing
    from segmint.sources._area import Area
    from segmint.sources._readers import stage
    from segmint.store import TABLES, open_store

    write_project(fmt, files["users"], files["orders"], work)
    for f in work.glob("bench.duckdb*"):
        f.unlink()
    config = load_config(work / "segmint.yaml")
    store = open_store(str(work / "bench.duckdb"))
    ing.ingest_source(store, config, "users")
    area = Area(store.staging())
    source, table = config.sources["orders"], TABLES["orders"]
    staged = stage(area, "orders", source, config)
    typing = ing._build_typed(area, "orders", source, staged, table, config, datetime.now(UTC))
    if through == "checked":
        ing._build_rejects(area, store, source, table, config, typing, staged)
    return store, area, staged, typing, table


def check_forms(fmt: str, files: dict[str, Path], work: Path, rounds: int) -> None:
    store, area, _staged, typing, table = _pipeline(fmt, files, work, "typed")
    con = area.stage
    any_fails = " OR ".join(f"({cond})" for cond, _ in typing.checks)
    reasons = ", ".join(f"CASE WHEN {cond} THEN {reason} END" for cond, reason in typing.checks)
    cols = ", ".join(f'"{c}"' for c in table.column_names if c not in typing.constants)
    forms = {
        "flag: CASE WHEN <any fails> THEN TRUE END (segmint)": (
            f"CASE WHEN {any_fails} THEN TRUE END"
        ),
        "plain boolean column: (<any fails>)": f"({any_fails})",
        "reasons: CASE WHEN <any> THEN list_filter([...]) END": (
            f"CASE WHEN {any_fails} THEN list_filter([{reasons}], lambda x: x IS NOT NULL) END"
        ),
        "nothing (the typed rows alone)": "NULL",
    }
    n = area.count(area.raw)
    print(f"\n[checks] materialise {n:,} typed orders ({fmt}) with ..., best of {rounds}")
    for label, form in forms.items():
        sql = f"CREATE OR REPLACE TEMP TABLE _x AS SELECT {cols}, {form} AS _c FROM {area.typed}"
        print(f"  {label:55s} {_best(con, sql, rounds):8.2f} s")
    store.close()


def insert_forms(fmt: str, files: dict[str, Path], work: Path, rounds: int) -> None:
    store, area, staged, typing, table = _pipeline(fmt, files, work, "checked")
    con = area.stage
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    const = ", ".join(
        f"{typing.constants[c]} AS {c}" if c in typing.constants else f'"{c}"'
        for c in table.column_names
    )
    # the previous way: the rejected rows deleted from (a copy of) the typed rows
    row = f"(rowid + {staged.row_offset})" if staged.row_offset is not None else "_row"
    con.execute(f"CREATE TEMP TABLE _deleted AS SELECT * FROM {area.typed_rows}")
    con.execute(f"DELETE FROM _deleted WHERE {row} IN (SELECT _row FROM {area.rejects})")
    forms = {
        "anti-join against the rejects (segmint)": f"SELECT {cols} FROM {area.valid}",
        "rejects deleted (before)": f"SELECT {const} FROM _deleted",
        "filter on the row-check flag": f"SELECT {const} FROM {area.typed_rows} WHERE _bad IS NULL",
    }
    print(f"\n[insert] the accepted orders ({fmt}) into the store, each round rolled back")
    times: dict[str, list[float]] = {k: [] for k in forms}
    for _ in range(rounds):
        for label, select in forms.items():
            con.execute("BEGIN")
            times[label].append(_timed(con, f"INSERT INTO orders ({cols}) {select}"))
            con.execute("ROLLBACK")
    for label, ts in times.items():
        print(f"  {label:45s} {' / '.join(f'{t:.2f}' for t in ts)} s")
    store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.add_argument("--only", default="trim,checks,insert", help="comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    add_data_args(p)
    args = p.parse_args(argv)
    files = bench_data(args, [args.format])[args.format]
    work = Path(args.out) / f"forms-{args.format}"
    print(f"duckdb {duckdb.__version__}, {args.users:,} users, {args.orders:,} orders")
    only = args.only.split(",")
    if "trim" in only:
        trim_forms(files["orders"], args.rounds)
    if "checks" in only:
        check_forms(args.format, files, work, args.rounds)
    if "insert" in only:
        insert_forms(args.format, files, work, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
