"""Two loads at once on one PostgreSQL store, from two real processes.

A fresh store: both processes create the schema at the same moment (one waits for the
other's schema transaction). An existing store: both load the same 60,000 users at the
same moment (one waits for the other's load, then finds the rows stored). Either way no
traceback, and the ``loads`` table never records more inserts than rows read:
read = accepted + rejected and inserted + updated + unchanged = accepted on every row.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest
import yaml

import segmint
from segmint.errors import StoreError

N_USERS = 60_000


def _project(root: Path, url: str) -> Path:
    lines = ["id,mail,country"] + [f"u{i},u{i}@example.com,DE" for i in range(N_USERS)]
    (root / "users.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "store": url,
        "sources": {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {"user_id": "id", "email": "mail", "country": "country"},
            }
        },
    }
    (root / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def _load(root: str, barrier: Any, open_together: bool, force: bool, out: Any) -> None:
    """One process: open the project's store and load every source, in step with the other."""
    try:
        with segmint.open_project(root) as p:
            if open_together:
                barrier.wait(60)
            _ = p.store  # creates (or checks) the schema
            if not open_together:
                barrier.wait(60)
            out.put(("ok", [r.to_dict() for r in p.ingest(force=force)]))
    except BaseException as exc:  # reported to the test, whatever it is
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _two_at_once(root: Path, *, open_together: bool, force: bool) -> list[Any]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_load, args=(str(root), barrier, open_together, force, out))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(60)
    return results


def _loads(url: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT rows_read, rows_accepted, rows_rejected, rows_inserted, rows_updated, "
            "rows_unchanged FROM loads ORDER BY started_at"
        ).fetchall()


def _consistent(loads: list[dict[str, Any]]) -> None:
    for ld in loads:
        assert ld["rows_read"] == ld["rows_accepted"] + ld["rows_rejected"], ld
        assert (
            ld["rows_inserted"] + ld["rows_updated"] + ld["rows_unchanged"] == ld["rows_accepted"]
        ), ld


@pytest.mark.postgres
@pytest.mark.slow
def test_two_first_loads_on_a_fresh_store(tmp_path: Path, pg_url: str) -> None:
    results = _two_at_once(_project(tmp_path, pg_url), open_together=True, force=False)
    assert [status for status, _ in results] == ["ok", "ok"], results
    loads = _loads(pg_url)
    _consistent(loads)
    # one load stored the users; the other waited, then found the same file already loaded
    assert sum(ld["rows_inserted"] for ld in loads) == N_USERS
    skipped = [r for _, rs in results for r in rs if r["skipped"]]
    assert len(loads) + len(skipped) == 2


@pytest.mark.postgres
@pytest.mark.slow
def test_two_loads_on_an_existing_store(tmp_path: Path, pg_url: str) -> None:
    segmint.open_project(_project(tmp_path, pg_url)).close()  # the store exists, empty
    results = _two_at_once(tmp_path, open_together=False, force=True)
    assert [status for status, _ in results] == ["ok", "ok"], results
    loads = _loads(pg_url)
    assert len(loads) == 2
    _consistent(loads)
    assert [(ld["rows_inserted"], ld["rows_unchanged"]) for ld in loads] == [
        (N_USERS, 0),
        (0, N_USERS),
    ]


@pytest.mark.postgres
def test_a_load_waits_a_bounded_time_then_says_another_load_is_running(
    tmp_path: Path, pg_url: str
) -> None:
    from segmint.store import open_store

    root = _project(tmp_path, pg_url)
    with open_store(pg_url) as holder, segmint.open_project(root) as p:
        p.store.lock_timeout = 0.3
        with (
            holder.ingest_lock(),  # another process's load, as far as this store can tell
            pytest.raises(StoreError, match=r"another load is running on this store"),
        ):
            p.ingest()
        assert p.store.scalar("SELECT count(*) FROM loads") == 0
        (people,) = p.ingest()  # once it has finished, the load goes ahead
        assert people.rows_inserted == N_USERS
