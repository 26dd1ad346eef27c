"""What opening a project's DuckDB file costs (issue 19: the service opens it on demand).

Usage: ``python bench/store_open.py [PROJECT]`` (default: builds a 50,000-user demo in a
temporary folder). Prints milliseconds, median of 20 opens each:

- open_store: read-write, schema checked (what a CLI command does),
- Store(): read-write, no schema check (what the service does after its first open),
- read-only: what a read command does beside a running service,
- + query: the bare open plus one small query (a key lookup).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


def _ms(fn: object, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    import segmint
    from segmint.store import Store, open_store

    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        from segmint.demo import generate_demo

        root = Path(tempfile.mkdtemp()) / "shop"
        t = time.perf_counter()
        generate_demo(root, n_users=50_000, seed=1)
        with segmint.open_project(root) as p:
            p.ingest()
        print(f"built the 50,000-user demo in {time.perf_counter() - t:.0f} s")
    with segmint.open_project(root) as p:
        url = p.config.store_url
        n_users = p.store.count("users")
    size = Path(url).stat().st_size / 1e6

    def query(store: Store) -> None:
        store.scalar("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
        store.close()

    rows = {
        "open_store (read-write, schema checked)": lambda: open_store(url).close(),
        "Store() (read-write, no schema check)": lambda: Store(url).close(),
        "read-only open": lambda: Store(url, read_only=True).close(),
        "Store() + one query": lambda: query(Store(url)),
    }
    print(f"{url}: {n_users:,} users, {size:.0f} MB")
    for name, fn in rows.items():
        print(f"{name:42s} {_ms(fn):7.1f} ms")


if __name__ == "__main__":
    main()
