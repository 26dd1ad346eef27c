"""Where an ingestion spends its time: every SQL statement of one load, timed.

Loads the benchmark's users and orders (``bench/ingest.py`` generates and caches them in
``bench/out``) into a fresh DuckDB store through the real ingestion path, with the engine
connection wrapped so that each statement's wall and CPU time (all DuckDB threads) is
recorded, and prints the statements that took longer than ``--min`` seconds.

    .venv/bin/python bench/ingest_profile.py --format parquet
    .venv/bin/python bench/ingest_profile.py --format csv --users 50000 --orders 1000000

A profile, not a benchmark: the wrapper adds a little time per statement, and the figures
are for reading the shares of the steps (``bench/ingest.py`` measures the whole load).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from ingest import add_data_args, bench_data, warm, write_project

HERE = Path(__file__).resolve().parent


class TimedConnection:
    """A DuckDB connection that records how long each ``execute`` takes."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.log: list[tuple[float, float, str]] = []

    def execute(self, sql: str, *args: Any) -> Any:
        w0, c0 = time.perf_counter(), time.process_time()
        result = self._con.execute(sql, *args)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        self.log.append((wall, cpu, re.sub(r"\s+", " ", sql).strip()))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.add_argument("--min", type=float, default=0.1, help="show statements slower than this")
    add_data_args(p)
    args = p.parse_args(argv)

    import segmint.sources._ingest as ingestion
    from segmint.config import load_config
    from segmint.sources._readers import prefetch_checksums
    from segmint.store._base import Store

    files = bench_data(args, [args.format])[args.format]
    warm([files["users"], files["orders"]])
    work = Path(args.out) / f"profile-{args.format}"
    write_project(args.format, files["users"], files["orders"], work)
    config = load_config(work / "segmint.yaml")
    store = Store(work / "bench.duckdb")
    store.ensure_schema()
    timed = TimedConnection(store._con)
    store._con = timed  # type: ignore[assignment]  # the store and the loader share it

    w0, c0 = time.perf_counter(), time.process_time()
    prefetch_checksums(config, ["users", "orders"])
    for name in ("users", "orders"):
        s0 = time.perf_counter()
        r = ingestion.ingest_source(store, config, name)
        print(
            f"{name}: {time.perf_counter() - s0:.2f} s; read {r.rows_read:,} = accepted "
            f"{r.rows_accepted:,} + rejected {r.rows_rejected:,}"
        )
        shown = [(w, c, sql) for w, c, sql in timed.log if w >= args.min]
        for w, c, sql in shown:
            print(f"  {w:6.2f} s  CPU {c:6.2f} s  {sql[:100]}")
        rest = sum(w for w, _, _ in timed.log) - sum(w for w, _, _ in shown)
        print(f"  {rest:6.2f} s  in {len(timed.log) - len(shown)} faster statements")
        timed.log.clear()
    store.close()
    print(f"total {time.perf_counter() - w0:.2f} s, CPU {time.process_time() - c0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
