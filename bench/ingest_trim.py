"""The cost of the "does this text need trimming?" test, form by form.

Every text value the ingestion types goes through ``NULLIF(trim(x), '')``; trimming copies
the string, so it runs only where a test says it could change something
(``segmint.sources._ingest._trimmed``). This script times the candidate tests on the
benchmark's 20M orders (four text columns: 80M values, copied into a temp table), side by
side with the plain copy and with trimming everything, and checks that each form gives
exactly what ``NULLIF(trim(x), '')`` gives.

    .venv/bin/python bench/ingest_trim.py            # the 20M-order Parquet file of bench/ingest.py
    .venv/bin/python bench/ingest_trim.py --orders 1000000 --users 50000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

from ingest import data_files, generate

HERE = Path(__file__).resolve().parent

FORMS = {
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=20_000_000)
    p.add_argument("--rounds", type=int, default=3, help="best of N per form")
    p.add_argument("--out", default=str(HERE / "out"))
    args = p.parse_args(argv)

    out = Path(args.out)
    generate(out, args.users, args.orders, ["parquet"])
    orders = data_files(out, args.users, args.orders)["parquet"]["orders"]
    con = duckdb.connect()
    # the four text columns, plus a few padded values so that every branch is taken
    con.execute(
        f"""CREATE TEMP TABLE s AS
        SELECT order_no AS a, customer_id AS b, currency AS c, state AS d
        FROM read_parquet('{orders}')
        UNION ALL SELECT ' x', 'x ', '\u00a0x', '' FROM range(1000)"""
    )
    n = con.execute("SELECT count(*) * 4 FROM s").fetchone()[0]  # type: ignore[index]
    print(f"{n:,} text values; best of {args.rounds} per form; duckdb {duckdb.__version__}")
    print(f"{'form':45s} {'seconds':>8s} {'exact':>6s}")
    for label, form in FORMS.items():
        sel = ", ".join(f"{form.format(v=c)} AS {c}" for c in "abcd")
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TEMP TABLE o AS SELECT {sel} FROM s")
            best = min(best, time.perf_counter() - t0)
        wrong = con.execute(
            "SELECT count(*) FROM (SELECT " + sel + ", a AS ra, b AS rb, c AS rc, d AS rd FROM s) "
            "WHERE " + " OR ".join(f"{c} IS DISTINCT FROM NULLIF(trim(r{c}), '')" for c in "abcd")
        ).fetchone()[0]  # type: ignore[index]
        print(f"{label:45s} {best:8.2f} {'yes' if wrong == 0 else f'no ({wrong:,})':>6s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
