"""The campaign tables in the store (part of its schema, see ``segmint.store._schema``).

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
