"""The canonical data model: tables, columns, keys, written once and used everywhere.

DDL is generated from these definitions in DuckDB's dialect and transpiled with sqlglot
for PostgreSQL, so there is exactly one definition per table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 10


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type: VARCHAR, TIMESTAMPTZ, DATE, DOUBLE, INTEGER, BOOLEAN, JSON
    required: bool = False
    pii: bool = False  # personal data: never offered to features or segment rules
    # sealed at rest (segmint.store._vault): stored as VARCHAR text ``enc1:...`` whatever
    # ``type`` the loader checks and parses it as
    sealed: bool = False
    # computed by the loader from another column (never mapped from a source): a blind
    # index or a coarse value kept in clear
    derived: bool = False
    default: str | None = None  # SQL literal used when the source does not map the column


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # referential checks made at load time: column -> (table, column)
    references: dict[str, tuple[str, str]] = field(default_factory=dict)
    # columns generated when the source does not provide them
    generated: tuple[str, ...] = ()
    # a TIMESTAMPTZ column the store sets when it first stores a row (the load time) and
    # never changes; no source maps it (it is not in ``columns``)
    recorded: str | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def source_columns(self) -> list[str]:
        """The columns a source may map (all but the derived ones)."""
        return [c.name for c in self.columns if not c.derived]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


C = Column

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "users",
            (
                C("user_id", "VARCHAR", required=True),
                C("created_at", "TIMESTAMPTZ"),
                C("email", "VARCHAR", pii=True, sealed=True),
                C("phone", "VARCHAR", pii=True, sealed=True),
                C("birthday", "DATE", pii=True, sealed=True),
                C("gender", "VARCHAR"),
                C("age", "INTEGER"),
                C("country", "VARCHAR"),
                C("city", "VARCHAR"),
                C("income_band", "VARCHAR"),
                C("acquisition_channel", "VARCHAR"),
                C("traits", "JSON", pii=True),  # free-form: may hold names, contacts
                # schema 9: blind indexes (HMAC, segmint.store._vault) of the e-mail and the
                # phone, for look-up, de-duplication and suppression; the birthday's month
                # and day (month * 100 + day) for birthday campaigns
                C("email_index", "VARCHAR", pii=True, derived=True),
                C("phone_index", "VARCHAR", pii=True, derived=True),
                C("birthday_md", "INTEGER", pii=True, derived=True),
            ),
            key=("user_id",),
        ),
        Table(
            "items",
            (
                C("item_id", "VARCHAR", required=True),
                C("title", "VARCHAR"),
                C("category", "VARCHAR"),
                C("price", "DOUBLE"),
                C("attributes", "JSON"),
                C("in_stock", "BOOLEAN", default="TRUE"),
            ),
            key=("item_id",),
        ),
        Table(
            "orders",
            (
                C("order_id", "VARCHAR", required=True),
                C("user_id", "VARCHAR", required=True),
                C("ts", "TIMESTAMPTZ", required=True),
                C("amount", "DOUBLE", required=True),
                C("currency", "VARCHAR"),
                C("channel", "VARCHAR", default="'online'"),
                C("discount", "DOUBLE", default="0"),
                C("status", "VARCHAR", default="'completed'"),
            ),
            key=("order_id",),
            references={"user_id": ("users", "user_id")},
        ),
        Table(
            "order_items",
            (
                C("order_id", "VARCHAR", required=True),
                C("line", "INTEGER", required=True),
                C("item_id", "VARCHAR", required=True),
                C("quantity", "INTEGER", required=True),
                C("unit_price", "DOUBLE"),
            ),
            key=("order_id", "line"),
            references={"order_id": ("orders", "order_id")},
            generated=("line",),
        ),
        Table(
            "events",
            (
                C("event_id", "VARCHAR", required=True),
                C("user_id", "VARCHAR"),
                C("anonymous_id", "VARCHAR"),
                C("event", "VARCHAR", required=True),
                C("ts", "TIMESTAMPTZ", required=True),
                C("channel", "VARCHAR"),
                C("item_id", "VARCHAR"),
                C("properties", "JSON", pii=True),  # free-form tracking payload
            ),
            key=("event_id",),
            references={"user_id": ("users", "user_id")},
            generated=("event_id",),
        ),
        Table(
            "consents",
            (
                C("user_id", "VARCHAR", required=True),
                C("channel", "VARCHAR", required=True),
                C("purpose", "VARCHAR", required=True, default="'marketing'"),
                C("ts", "TIMESTAMPTZ", required=True),
                C("granted", "BOOLEAN", required=True),
                C("source", "VARCHAR"),
            ),
            # a grant and a revoke at the same instant are two facts: both are kept (and
            # the revoke wins, see segmint.store.latest_consent_sql)
            key=("user_id", "channel", "purpose", "ts", "granted"),
            references={"user_id": ("users", "user_id")},
            recorded="recorded_at",
        ),
    )
}

# Allowed values, normalized to lower case at load time; anything else is quarantined.
ALLOWED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("orders", "status"): ("completed", "refunded", "cancelled"),
    ("orders", "channel"): ("online", "offline"),
}

# Load order that satisfies references.
LOAD_ORDER = ("users", "items", "orders", "order_items", "events", "consents")

# kind: 'rejected' (the row was not loaded) or 'field_issue' (the row was loaded with
# ``field`` set to NULL; ``raw_value`` is what the source held); field is '' for a row
QUARANTINE_DDL = (
    "CREATE TABLE IF NOT EXISTS quarantine (",
    "    load_id VARCHAR NOT NULL,",
    '    "row" BIGINT NOT NULL,',
    "    source VARCHAR NOT NULL,",
    "    target_table VARCHAR NOT NULL,",
    "    rule VARCHAR NOT NULL,",
    "    reason VARCHAR NOT NULL,",
    "    raw JSON,",
    "    kind VARCHAR NOT NULL DEFAULT 'rejected',",
    "    field VARCHAR NOT NULL DEFAULT '',",
    "    raw_value VARCHAR,",
    '    PRIMARY KEY (load_id, "row", rule, field)',
    ");",
)

# one row per file an export wrote: when, who, what, why, how many
EXPORTS_DDL = """
CREATE TABLE IF NOT EXISTS exports (
    export_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR,
    command VARCHAR,
    kind VARCHAR NOT NULL,
    segmentation VARCHAR,
    run_id VARCHAR,
    segment VARCHAR,
    campaign VARCHAR,
    purpose VARCHAR,
    contact BOOLEAN NOT NULL,
    n_rows BIGINT NOT NULL,
    n_excluded BIGINT NOT NULL,
    path VARCHAR NOT NULL,
    format VARCHAR NOT NULL
);
"""

# the final outcomes of an imported experiment, one row per user (NULL: not imported, the
# store's data is used); see segmint.experiments._outcomes
CAMPAIGN_OUTCOMES_DDL = """
CREATE TABLE IF NOT EXISTS campaign_outcomes (
    campaign VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    converted BOOLEAN,
    revenue DOUBLE,
    visited BOOLEAN,
    PRIMARY KEY (campaign, user_id)
);
"""

# -- the tables the layers keep their runs in (schema version 6; created by each layer on
# first use before it). Frozen: a later change is a new migration.

# segmint.segments: versioned segmentation runs and their assignments
SEGMENT_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS segment_runs (
    run_id VARCHAR PRIMARY KEY,
    segmentation VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    feature_run_id VARCHAR,
    as_of TIMESTAMPTZ,
    n_users BIGINT NOT NULL,
    params JSON,
    metrics JSON,
    details JSON
);
CREATE TABLE IF NOT EXISTS segment_assignments (
    run_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    segment VARCHAR NOT NULL,
    probability DOUBLE,
    detail VARCHAR
);
"""

# segmint.features: one row per feature run, and its rows
FEATURE_RUNS_DDL = """CREATE TABLE IF NOT EXISTS feature_runs (
    run_id VARCHAR NOT NULL PRIMARY KEY,
    as_of TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    n_users BIGINT NOT NULL,
    features JSON NOT NULL,
    params JSON
);
"""

#: the feature catalog's columns (segmint.features.CATALOG, in its order) when schema
#: version 6 was released: ``features`` is created with them; a feature added to the
#: catalog later, or a custom feature, is added by :meth:`Store.add_columns` when a run
#: first stores it
FEATURES_V6_COLUMNS: tuple[tuple[str, str], ...] = (
    ("recency_days", "BIGINT"),
    ("frequency", "BIGINT"),
    ("monetary", "DOUBLE"),
    ("avg_order_value", "DOUBLE"),
    ("tenure_days", "BIGINT"),
    ("mean_days_between_orders", "DOUBLE"),
    ("orders_30d", "BIGINT"),
    ("orders_90d", "BIGINT"),
    ("orders_365d", "BIGINT"),
    ("spend_30d", "DOUBLE"),
    ("spend_90d", "DOUBLE"),
    ("spend_365d", "DOUBLE"),
    ("refund_rate", "DOUBLE"),
    ("discount_share", "DOUBLE"),
    ("last_active_days", "BIGINT"),
    ("events_7d", "BIGINT"),
    ("events_30d", "BIGINT"),
    ("sessions_30d", "BIGINT"),
    ("offline_share", "DOUBLE"),
    ("app_share", "DOUBLE"),
    ("favourite_category", "VARCHAR"),
    ("favourite_category_share", "DOUBLE"),
    ("shares_likes_90d", "BIGINT"),
    ("age", "INTEGER"),
    ("gender", "VARCHAR"),
    ("country", "VARCHAR"),
    ("city", "VARCHAR"),
)


def features_ddl(*, primary_key: bool) -> str:
    """CREATE TABLE for ``features``. PostgreSQL gets a primary key (the index that loads
    one run); DuckDB does not, as an ART index would slow down writing millions of rows."""
    cols = ",\n    ".join(f'"{n}" {t}' for n, t in FEATURES_V6_COLUMNS)
    key = ",\n    PRIMARY KEY (run_id, user_id)" if primary_key else ""
    return (
        "CREATE TABLE IF NOT EXISTS features (\n    run_id VARCHAR NOT NULL,\n    "
        f"user_id VARCHAR NOT NULL,\n    {cols}{key}\n);\n"
    )


# segmint.recommend: batch and evaluation runs, and the batch's rows
RECOMMENDATION_DDL = """
CREATE TABLE IF NOT EXISTS recommendation_runs (
    run_id VARCHAR NOT NULL PRIMARY KEY,
    kind VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    as_of TIMESTAMPTZ,
    model VARCHAR NOT NULL,
    n INTEGER,
    n_users BIGINT,
    params JSON,
    metrics JSON
);
CREATE TABLE IF NOT EXISTS recommendations (
    run_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    "rank" INTEGER NOT NULL,
    item_id VARCHAR NOT NULL,
    score DOUBLE,
    model VARCHAR,
    reason VARCHAR
);
"""

# segmint.campaigns: runs (one per plan), audiences (one row per eligible user and plan),
# first arms (a user's first arm in a campaign; never changes), the delivery log (one row
# per message ever attempted), suppressions. Delivery ``status``: ``pending`` (not tried
# yet), ``sending`` (claimed and committed before the channel was called), ``sent``,
# ``failed`` (retried on the next send until ``playbook.max_attempts``), ``rejected``
# (permanent: the address or payload was refused), ``skipped`` (consent withdrawn,
# unsubscribed or suppressed between plan and send). The unsubscribe signing keys are never
# in the store (see segmint.campaigns._keys).
CAMPAIGN_DDL = """
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

# segmint.experiments: one stored evaluation of a campaign (its tables as JSON)
EVALUATIONS_DDL = """
CREATE TABLE IF NOT EXISTS campaign_evaluations (
    evaluation_id VARCHAR PRIMARY KEY,
    campaign VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    window_days INTEGER NOT NULL,
    complete BOOLEAN NOT NULL,
    result JSON NOT NULL
);
"""

# lookup indexes a store with secondary indexes gets (PostgreSQL): one run's audience and
# deliveries, one user's deliveries, one user's recommendations. DuckDB relies on zone
# maps (rows are written sorted) instead of indexes that slow bulk writes.
LOOKUP_INDEXES_DDL = """
CREATE INDEX IF NOT EXISTS campaign_audiences_run ON campaign_audiences (run_id, idempotency_key);
CREATE INDEX IF NOT EXISTS deliveries_run_status ON deliveries (run_id, status, idempotency_key);
CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (user_id);
CREATE INDEX IF NOT EXISTS recommendations_run_user ON recommendations (run_id, user_id, "rank");
"""


# segmint.serve (schema version 7): API keys (only a SHA-256 of the secret is stored; the
# ``key_id`` is the key's public prefix), the message ids already stored per tracking source
# (de-duplication across restarts), how far each spool file has been loaded, anonymous ids
# stitched to user ids, personalization decisions served (exposures, measured like a
# campaign) and the scheduler's job history (one row per job and scheduled slot, so a slot
# never runs twice).
SERVICE_DDL = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    key_hash VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    rate_per_second DOUBLE
);
CREATE TABLE IF NOT EXISTS tracked_messages (
    source VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    load_id VARCHAR,
    PRIMARY KEY (source, message_id)
);
CREATE TABLE IF NOT EXISTS tracking_spool (
    spool_file VARCHAR PRIMARY KEY,
    loaded_bytes BIGINT NOT NULL,
    loaded_messages BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    closed BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    anonymous_id VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    source VARCHAR,
    linked_at TIMESTAMPTZ NOT NULL,
    message_id VARCHAR
);
CREATE TABLE IF NOT EXISTS exposures (
    exposure_id VARCHAR PRIMARY KEY,
    served_at TIMESTAMPTZ NOT NULL,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    campaign VARCHAR,
    arm VARCHAR,
    segmentation VARCHAR,
    segment VARCHAR,
    ui_variant VARCHAR,
    offer_code VARCHAR,
    snapshot_id VARCHAR
);
CREATE TABLE IF NOT EXISTS job_runs (
    job VARCHAR NOT NULL,
    slot TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,
    trigger VARCHAR NOT NULL,
    error VARCHAR,
    host VARCHAR,
    pid INTEGER,
    detail JSON,
    PRIMARY KEY (job, slot)
);
"""


WORKSPACE_DDL = """
CREATE TABLE IF NOT EXISTS workspace_users (
    name VARCHAR PRIMARY KEY,
    password_hash VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS workspace_sessions (
    session_hash VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    csrf VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id VARCHAR PRIMARY KEY,
    ts TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    target VARCHAR,
    detail JSON
);
"""
# schema 9 adds to audit_log: seq BIGINT UNIQUE, why VARCHAR, prev_hash VARCHAR, hash VARCHAR
# (see segmint.store._audit); fresh stores get them from PRIVACY_DDL's ALTERs too
"""The marketer's workspace (``segmint serve`` at ``/``): its people (a hashed password and a
role each), their sessions (the cookie's hash, its CSRF token) and the audit log of what
they changed (configuration edits, sends, exports with a purpose, job runs)."""


# schema 9 (issue 21): the wrapped keys (segmint.store._vault), erasure records (one per
# person forgotten: the HMAC of the user id and the blind indexes of the contacts they had,
# so they are never contacted again and a re-import does not bring them back), the
# retention purge log, the suppressions' blind index, the audit chain.
PRIVACY_DDL = """
CREATE TABLE IF NOT EXISTS privacy_keys (
    key_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    wrapped VARCHAR NOT NULL,
    wrapper VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS erasures (
    subject VARCHAR PRIMARY KEY,
    email_index VARCHAR,
    phone_index VARCHAR,
    erased_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    why VARCHAR,
    request_id VARCHAR NOT NULL,
    detail JSON
);
CREATE TABLE IF NOT EXISTS retention_purges (
    purge_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    table_name VARCHAR NOT NULL,
    period VARCHAR NOT NULL,
    cutoff TIMESTAMPTZ NOT NULL,
    n_rows BIGINT NOT NULL,
    actor VARCHAR NOT NULL,
    PRIMARY KEY (purge_id, table_name)
);
"""
PRIVACY_ALTER_DDL = (
    "ALTER TABLE audit_log ADD COLUMN seq BIGINT",
    "ALTER TABLE audit_log ADD COLUMN why VARCHAR",
    "ALTER TABLE audit_log ADD COLUMN prev_hash VARCHAR",
    "ALTER TABLE audit_log ADD COLUMN hash VARCHAR",
    "ALTER TABLE suppressions ADD COLUMN address_index VARCHAR",
    # one entry per sequence number, whatever races (see segmint.store._audit)
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_log_seq ON audit_log (seq)",
)


# schema 10 (issue 22): segmint.predict's versioned runs (``clv``: BG/NBD or MBG/NBD with
# Gamma-Gamma; ``churn``: a gradient boosting propensity) and their per-user predictions.
# One predictions table for both kinds: a CLV run fills the value columns, a churn run
# ``churn_risk``.
PREDICT_DDL = """
CREATE TABLE IF NOT EXISTS predict_runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    as_of TIMESTAMPTZ NOT NULL,
    n_users BIGINT NOT NULL,
    params JSON,
    metrics JSON,
    details JSON
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    p_alive DOUBLE,
    expected_purchases DOUBLE,
    expected_order_value DOUBLE,
    clv DOUBLE,
    clv_low DOUBLE,
    clv_high DOUBLE,
    churn_risk DOUBLE
);
"""


def run_tables_ddl(*, secondary_indexes: bool) -> str:
    """The DDL of every run table (schema version 6), idempotent (IF NOT EXISTS)."""
    return (
        SEGMENT_RUNS_DDL
        + FEATURE_RUNS_DDL
        + features_ddl(primary_key=secondary_indexes)
        + RECOMMENDATION_DDL
        + CAMPAIGN_DDL
        + EVALUATIONS_DDL
        + (LOOKUP_INDEXES_DDL if secondary_indexes else "")
    )


SYSTEM_DDL = (
    """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS loads (
    load_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    location VARCHAR,
    checksum VARCHAR,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    rows_read BIGINT NOT NULL,
    rows_accepted BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    rows_inserted BIGINT NOT NULL,
    rows_updated BIGINT NOT NULL,
    rows_unchanged BIGINT NOT NULL,
    cleaning JSON,
    field_issues BIGINT DEFAULT 0,
    raw_types JSON,
    retry_of VARCHAR
);
"""
    + EXPORTS_DDL
    + CAMPAIGN_OUTCOMES_DDL
    + "\n".join(QUARANTINE_DDL)
    + "\n"
)


def table_ddl(table: Table) -> str:
    """CREATE TABLE for a canonical table in DuckDB's dialect.

    Keys are enforced by the loader (set-based anti-joins), not by an index: an ART index
    on 20M keys would make bulk loads several times slower in DuckDB. PostgreSQL gets a
    real primary key (see the PostgreSQL store).
    """
    cols = []
    for c in table.columns:
        null = " NOT NULL" if c.required else ""
        cols.append(f"    {c.name} {'VARCHAR' if c.sealed else c.type}{null}")
    if table.recorded:
        cols.append(f"    {table.recorded} TIMESTAMPTZ DEFAULT current_timestamp")
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(cols) + "\n)"
