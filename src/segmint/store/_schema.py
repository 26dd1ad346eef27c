"""The canonical data model: tables, columns, keys, written once and used everywhere.

DDL is generated from these definitions in DuckDB's dialect and transpiled with sqlglot
for PostgreSQL, so there is exactly one definition per table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 5


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type: VARCHAR, TIMESTAMPTZ, DATE, DOUBLE, INTEGER, BOOLEAN, JSON
    required: bool = False
    pii: bool = False  # personal data: never offered to features or segment rules
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
                C("email", "VARCHAR", pii=True),
                C("phone", "VARCHAR", pii=True),
                C("birthday", "DATE", pii=True),
                C("gender", "VARCHAR"),
                C("age", "INTEGER"),
                C("country", "VARCHAR"),
                C("city", "VARCHAR"),
                C("income_band", "VARCHAR"),
                C("acquisition_channel", "VARCHAR"),
                C("traits", "JSON", pii=True),  # free-form: may hold names, contacts
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
        cols.append(f"    {c.name} {c.type}{null}")
    if table.recorded:
        cols.append(f"    {table.recorded} TIMESTAMPTZ DEFAULT current_timestamp")
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(cols) + "\n)"
