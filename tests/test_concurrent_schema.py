"""Processes using a fresh PostgreSQL store for the first time at once: every table (the
run, feature, recommendation, campaign and evaluation tables included) is created when the
store is opened, under its schema lock, and a custom feature's column is added under the
same lock, so none fails on PostgreSQL's catalog (concurrent CREATE TABLE IF NOT EXISTS
raises a UniqueViolation on pg_type)."""

from __future__ import annotations

import threading

import pytest

from segmint.store import open_store

pytestmark = pytest.mark.postgres

N_WORKERS = 4
ROUNDS = 3


def _first_use(url: str, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        barrier.wait(timeout=30)  # every worker opens (creates every table) at once
        store = open_store(url)
        try:
            barrier.wait(timeout=30)  # every worker adds the same feature column at once
            with store.transaction():
                store.add_columns("features", {"custom_x": "DOUBLE"})
        finally:
            store.close()
    except BaseException as exc:  # collected for the assertion below
        errors.append(exc)
        barrier.abort()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_first_uses_at_once_create_every_table_once(pg_url: str, round_: int) -> None:
    barrier = threading.Barrier(N_WORKERS)
    errors: list[BaseException] = []
    workers = [
        threading.Thread(target=_first_use, args=(pg_url, barrier, errors))
        for _ in range(N_WORKERS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
    store = open_store(pg_url)
    try:
        tables = set(
            store.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )["table_name"]
        )
    finally:
        store.close()
    assert {
        "segment_runs",
        "features",
        "recommendations",
        "deliveries",
        "campaign_evaluations",
    } <= tables
    store = open_store(pg_url)
    try:
        assert "custom_x" in store.query("SELECT * FROM features LIMIT 0").columns
    finally:
        store.close()
