"""The campaign tables in the store (DDL in DuckDB's dialect, transpiled by the store).

::

    campaign_runs(run_id, campaign, created_at, as_of, segmentation, segment_run_id,
                  previous_run_id, status, n_eligible, n_treatment, n_control, params JSON,
                  funnel JSON)
    campaign_audiences(run_id, campaign, user_id, segment, channel, step, arm,
                       idempotency_key)                 one row per eligible user and plan
    campaign_assignments(campaign, user_id, arm, bucket, assigned_at, run_id)
                                                        first arm of a user; never changes
    deliveries(idempotency_key, campaign, run_id, user_id, step, channel, status, attempts,
               ambiguous, message_id, error, created_at, claimed_at, sent_at, updated_at)
                                                        one row per message ever attempted
    suppressions(user_id, address, channel, reason, created_at)

The unsubscribe signing keys are never in the store (see ``_keys.py``); a
``campaign_secrets`` table left by earlier versions is emptied on first use of the key
ring, its key moved to the project's key file.

Delivery ``status``: ``pending`` (not tried yet), ``sending`` (claimed and committed before
the channel was called), ``sent``, ``failed`` (retried on the next send until
``playbook.max_attempts``), ``rejected`` (permanent: the address or payload was refused),
``skipped`` (consent withdrawn, unsubscribed or suppressed between plan and send).
"""

from __future__ import annotations

from datetime import date, datetime

from segmint.store import Store

DDL = """
CREATE TABLE IF NOT EXISTS campaign_runs (
    run_id VARCHAR PRIMARY KEY,
    campaign VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    as_of DATE NOT NULL,
    segmentation VARCHAR NOT NULL,
    segment_run_id VARCHAR NOT NULL,
    previous_run_id VARCHAR,
    status VARCHAR NOT NULL,
    n_eligible BIGINT NOT NULL,
    n_treatment BIGINT NOT NULL,
    n_control BIGINT NOT NULL,
    params JSON,
    funnel JSON
);
CREATE TABLE IF NOT EXISTS campaign_audiences (
    run_id VARCHAR NOT NULL,
    campaign VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    segment VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    step VARCHAR NOT NULL,
    arm VARCHAR NOT NULL,
    idempotency_key VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_assignments (
    campaign VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    arm VARCHAR NOT NULL,
    bucket DOUBLE NOT NULL,
    assigned_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (campaign, user_id)
);
CREATE TABLE IF NOT EXISTS deliveries (
    idempotency_key VARCHAR PRIMARY KEY,
    campaign VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    step VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    ambiguous BOOLEAN NOT NULL,
    message_id VARCHAR,
    error VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    claimed_at TIMESTAMPTZ,
    sent_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS suppressions (
    user_id VARCHAR,
    address VARCHAR,
    channel VARCHAR,
    reason VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
"""

INDEXES_PG = """
CREATE INDEX IF NOT EXISTS campaign_audiences_run ON campaign_audiences (run_id, idempotency_key);
CREATE INDEX IF NOT EXISTS deliveries_run_status ON deliveries (run_id, status, idempotency_key);
CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (user_id);
"""


def ensure_campaign_tables(store: Store) -> None:
    """Create the campaign tables if missing (idempotent)."""
    with store.schema_change():
        store.execute(DDL)
        if store.dialect == "postgres":
            store.execute(INDEXES_PG)


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def ts_lit(value: datetime) -> str:
    """A TIMESTAMPTZ literal of an aware (or UTC naive) datetime."""
    if value.tzinfo is not None:
        from datetime import UTC

        value = value.astimezone(UTC)
    return f"CAST('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}+00' AS TIMESTAMPTZ)"


def date_lit(value: date) -> str:
    """A DATE literal."""
    return f"CAST('{value.isoformat()}' AS DATE)"


def table_exists(store: Store, table: str) -> bool:
    """Whether ``table`` exists in the store's current schema."""
    n = store.scalar(
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = current_schema() AND table_name = {lit(table)}"
    )
    return bool(n)


def column_exists(store: Store, table: str, column: str) -> bool:
    """Whether ``table`` has ``column``."""
    n = store.scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        f"AND table_name = {lit(table)} AND column_name = {lit(column)}"
    )
    return bool(n)
