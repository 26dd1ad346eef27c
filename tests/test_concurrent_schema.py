"""Two processes using a fresh PostgreSQL store for the first time at once: every table a
layer creates on first use (runs, features, recommendations, campaigns, evaluations) is
created under the store's schema lock, so neither fails on PostgreSQL's catalog
(concurrent CREATE TABLE IF NOT EXISTS raises a UniqueViolation on pg_type)."""

from __future__ import annotations

import threading

import pytest

from segmint.store import open_store

pytestmark = pytest.mark.postgres

N_WORKERS = 4
ROUNDS = 3


def _first_use(url: str, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    from segmint.campaigns._tables import ensure_campaign_tables
    from segmint.experiments._evaluate import EVALUATIONS_DDL
    from segmint.features._runs import ensure_feature_tables
    from segmint.recommend._runs import ensure_recommendation_tables
    from segmint.segments._runs import ensure_runs_schema

    try:
        barrier.wait(timeout=30)
        store = open_store(url)
        try:
            for ensure in (
                ensure_runs_schema,
                lambda s: ensure_feature_tables(s, {"custom_x": "DOUBLE"}),
                ensure_recommendation_tables,
                ensure_campaign_tables,
            ):
                barrier.wait(timeout=30)  # every worker creates the same table at once
                ensure(store)
            barrier.wait(timeout=30)
            with store.schema_change():
                store.execute(EVALUATIONS_DDL)
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
