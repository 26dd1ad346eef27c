"""Are two DuckDB stores' contents identical? For checking that a change to the loader
keeps its results: load the same files with the old code and the new, then compare.

    .venv/bin/python bench/compare_stores.py OLD.duckdb NEW.duckdb

Every canonical table present in both is compared row by row (``EXCEPT ALL`` both ways,
so duplicates count); ``quarantine`` without its load id and ``loads`` without its ids,
times and file location, which differ between any two loads. Exit code 0 when identical.

To load with the previous code: ``git archive <commit> src | tar -x -C /tmp/old`` and run
``PYTHONPATH=/tmp/old/src .venv/bin/python bench/ingest.py --paths segmint --out /tmp/o``
(each path's store is ``<out>/run-<format>-segmint/bench.duckdb``).
"""

from __future__ import annotations

import sys

import duckdb

COLUMNS = {
    "users": "*",
    "items": "*",
    "orders": "*",
    "order_items": "*",
    "events": "*",
    "consents": "*",
    "quarantine": "* EXCLUDE (load_id)",
    "loads": "source, target_table, checksum, rows_read, rows_accepted, rows_rejected, "
    "rows_inserted, rows_updated, rows_unchanged, cleaning",
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    con = duckdb.connect()
    con.execute("ATTACH ? AS a (READ_ONLY)", [argv[0]])
    con.execute("ATTACH ? AS b (READ_ONLY)", [argv[1]])
    same = True
    for table, cols in COLUMNS.items():
        present = [
            con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
                [db, table],
            ).fetchone()[0]  # type: ignore[index]
            for db in ("a", "b")
        ]
        if not all(present):
            continue
        n_a, n_b = (con.execute(f"SELECT count(*) FROM {db}.{table}").fetchone()[0] for db in "ab")  # type: ignore[index]
        only_a, only_b = (
            con.execute(
                f"SELECT count(*) FROM (SELECT {cols} FROM {x}.{table} "
                f"EXCEPT ALL SELECT {cols} FROM {y}.{table})"
            ).fetchone()[0]  # type: ignore[index]
            for x, y in (("a", "b"), ("b", "a"))
        )
        ok = n_a == n_b and only_a == only_b == 0
        same &= ok
        print(
            f"{'same' if ok else 'DIFFERENT':9} {table}: rows {n_a:,} / {n_b:,}, "
            f"only in the first {only_a:,}, only in the second {only_b:,}"
        )
    print("identical" if same else "the stores differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
