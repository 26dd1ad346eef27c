"""Ordered schema migrations: how a store written by an older segmint reaches this one's schema.

Each step moves a store from ``version - 1`` to ``version``. :meth:`Store.ensure_schema`
applies the steps a store lacks, in order, inside the transaction that opens the store
(so a failed step leaves the store at its old version), and records each version in
``schema_version``. A fresh store is created at :data:`SCHEMA_VERSION` directly and runs
no step. Steps are written in DuckDB's dialect (transpiled for PostgreSQL by the store)
and are frozen once released: a later change to a table is a new step, never an edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from segmint.store._base import Store


@dataclass(frozen=True)
class Migration:
    """One step: the version it brings a store to, what it does, and how."""

    version: int
    description: str
    apply: Callable[[Store], None]


def _v2_consents(store: Store) -> None:
    """consents: ``recorded_at``; channel and purpose trimmed and lower-cased; ``granted``
    joins the key (a grant and a revoke at the same instant are both kept)."""
    store.set_primary_key("consents", None)
    # rows stored before this version were recorded at the latest now: their effective
    # time least(ts, recorded_at) is their ts, or now for a row dated in the future
    store.execute(
        "ALTER TABLE consents ADD COLUMN recorded_at TIMESTAMPTZ DEFAULT current_timestamp"
    )
    to_normalise = store.scalar(
        "SELECT count(*) FROM consents "
        "WHERE channel <> lower(trim(channel)) OR purpose <> lower(trim(purpose))"
    )
    if to_normalise:
        # rows that become one under the new key ('Email' and 'email', same instant and
        # answer) are one fact recorded twice: one row is kept (the first source by name)
        cols = "user_id, channel, purpose, ts, granted, source, recorded_at"
        store.execute(
            "CREATE TEMP TABLE _consents_v2 AS "
            "SELECT user_id, lower(trim(channel)) AS channel, lower(trim(purpose)) AS purpose, "
            "ts, granted, min(source) AS source, min(recorded_at) AS recorded_at "
            "FROM consents GROUP BY user_id, lower(trim(channel)), lower(trim(purpose)), ts, granted"
        )
        store.execute("DELETE FROM consents")
        store.execute(f"INSERT INTO consents ({cols}) SELECT {cols} FROM _consents_v2")
        store.execute("DROP TABLE _consents_v2")
    store.set_primary_key("consents", ("user_id", "channel", "purpose", "ts", "granted"))


def _v3_quarantine(store: Store) -> None:
    """quarantine: ``kind`` ('rejected' or 'field_issue'), ``field`` and ``raw_value``, and
    ``field`` joins the key (a row may have several field issues); loads: ``field_issues``
    (their count), ``raw_types`` (the source's columns as read, for retrying held rows) and
    ``retry_of`` (the table whose change a retry followed)."""
    from segmint.store._schema import QUARANTINE_DDL

    for ddl in (
        "ALTER TABLE loads ADD COLUMN field_issues BIGINT DEFAULT 0",
        "ALTER TABLE loads ADD COLUMN raw_types JSON",
        "ALTER TABLE loads ADD COLUMN retry_of VARCHAR",
    ):
        store.execute(ddl)
    # a primary key cannot be changed in place in DuckDB: the table is rebuilt (PostgreSQL
    # drops the old key first, whose name the new table's key takes)
    old = 'load_id, "row", source, target_table, rule, reason, raw'
    store.set_primary_key("quarantine", None)
    store.execute("ALTER TABLE quarantine RENAME TO quarantine_v2")
    store.execute("\n".join(QUARANTINE_DDL))
    store.execute(f"INSERT INTO quarantine ({old}) SELECT {old} FROM quarantine_v2")
    store.execute("DROP TABLE quarantine_v2")


def _v4_exports(store: Store) -> None:
    """exports: one row per file written by an export (when, who, what, why, how many)."""
    from segmint.store._schema import EXPORTS_DDL

    store.execute(EXPORTS_DDL)


def _v5_campaign_outcomes(store: Store) -> None:
    """campaign_outcomes: the final outcomes of an imported experiment, per user."""
    from segmint.store._schema import CAMPAIGN_OUTCOMES_DDL

    store.execute(CAMPAIGN_OUTCOMES_DDL)


def _v6_run_tables(store: Store) -> None:
    """The layers' run tables (segment, feature, recommendation and campaign runs, the
    delivery log, suppressions, evaluations), which earlier versions created on first
    use outside the schema version: created where missing, a store that has them (with
    the same columns) keeps them as they are."""
    from segmint.store._schema import run_tables_ddl

    store.execute(run_tables_ddl(secondary_indexes=store.secondary_indexes))


def _v7_service(store: Store) -> None:
    """The service's tables (``segmint serve``): API keys, tracked message ids, spool
    offsets, identities, exposures and the job history."""
    from segmint.store._schema import SERVICE_DDL

    store.execute(SERVICE_DDL)


def _v8_workspace(store: Store) -> None:
    """The workspace's tables: its people, their sessions and the audit log."""
    from segmint.store._schema import WORKSPACE_DDL

    store.execute(WORKSPACE_DDL)


def _v9_privacy(store: Store) -> None:
    """Privacy (issue 21): wrapped keys, erasure records, the retention purge log; users'
    blind indexes and birthday month-day (birthday stored as text: sealed); suppressions'
    address index; the audit log chained (entries already there are chained in time order).
    Values stored in clear stay so until ``segmint privacy rotate-key`` seals them (no key
    is at hand here)."""
    from segmint.store._audit import GENESIS, audit_hash, canonical_json
    from segmint.store._schema import PRIVACY_ALTER_DDL, PRIVACY_DDL

    store.execute(PRIVACY_DDL)
    for ddl in PRIVACY_ALTER_DDL:
        store.execute(ddl)
    for ddl in (
        "ALTER TABLE users ADD COLUMN email_index VARCHAR",
        "ALTER TABLE users ADD COLUMN phone_index VARCHAR",
        "ALTER TABLE users ADD COLUMN birthday_md INTEGER",
    ):
        store.execute(ddl)
    store.execute(
        "UPDATE users SET birthday_md = CAST(EXTRACT(MONTH FROM birthday) * 100 "
        "+ EXTRACT(DAY FROM birthday) AS INTEGER) WHERE birthday IS NOT NULL"
    )
    store.alter_column_type("users", "birthday", "VARCHAR")
    rows = store.query(
        "SELECT id, ts, actor, action, target, CAST(detail AS VARCHAR) AS detail "
        "FROM audit_log ORDER BY ts, id"
    )
    prev = GENESIS
    entries: list[dict[str, Any]] = rows.to_dict("records")  # type: ignore[assignment]
    for seq, r in enumerate(entries, start=1):
        ts = r["ts"].to_pydatetime() if hasattr(r["ts"], "to_pydatetime") else r["ts"]
        detail = None if pd.isna(r["detail"]) else canonical_json(r["detail"])
        target = None if pd.isna(r["target"]) else r["target"]
        digest = audit_hash(prev, seq, ts, r["actor"], r["action"], target, None, detail)
        store.execute(
            "UPDATE audit_log SET seq = ?, prev_hash = ?, hash = ? WHERE id = ?",
            [seq, prev, digest, r["id"]],
        )
        prev = digest


def _v10_predictions(store: Store) -> None:
    """segmint.predict's runs and predictions (issue 22)."""
    from segmint.store._schema import PREDICT_DDL

    store.execute(PREDICT_DDL)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "consents: recorded_at; channel and purpose normalised; granted joins the key",
        _v2_consents,
    ),
    Migration(
        3,
        "quarantine: kind, field and raw_value (field issues); loads: field_issues, raw_types, "
        "retry_of",
        _v3_quarantine,
    ),
    Migration(4, "exports: the record of every export (who, what, why, how many)", _v4_exports),
    Migration(
        5,
        "campaign_outcomes: final outcomes of an imported experiment",
        _v5_campaign_outcomes,
    ),
    Migration(
        6,
        "run tables: segment, feature, recommendation and campaign runs, deliveries, "
        "suppressions and evaluations join the schema",
        _v6_run_tables,
    ),
    Migration(
        7,
        "service tables: api keys, tracked messages, spool offsets, identities, exposures, "
        "job runs",
        _v7_service,
    ),
    Migration(8, "workspace: people, sessions and the audit log", _v8_workspace),
    Migration(
        9,
        "privacy: wrapped keys, erasures, retention purges; users' blind indexes; the audit "
        "log chained",
        _v9_privacy,
    ),
    Migration(10, "predictions: CLV and churn runs and their per-user scores", _v10_predictions),
)
"""Every step, in version order (version 1 is the first released schema)."""
