-- A store as segmint wrote it at schema version 1 (before consents had recorded_at and
-- granted joined their key): frozen, for the migration tests. Do not edit.
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
    cleaning JSON
);
CREATE TABLE IF NOT EXISTS quarantine (
    load_id VARCHAR NOT NULL,
    "row" BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    raw JSON,
    PRIMARY KEY (load_id, "row", rule)
);
CREATE TABLE IF NOT EXISTS users (
    user_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ,
    email VARCHAR,
    phone VARCHAR,
    birthday DATE,
    gender VARCHAR,
    age INTEGER,
    country VARCHAR,
    city VARCHAR,
    income_band VARCHAR,
    acquisition_channel VARCHAR,
    traits JSON
);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR NOT NULL,
    title VARCHAR,
    category VARCHAR,
    price DOUBLE,
    attributes JSON,
    in_stock BOOLEAN
);
CREATE TABLE IF NOT EXISTS orders (
    order_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    amount DOUBLE NOT NULL,
    currency VARCHAR,
    channel VARCHAR,
    discount DOUBLE,
    status VARCHAR
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id VARCHAR NOT NULL,
    line INTEGER NOT NULL,
    item_id VARCHAR NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price DOUBLE
);
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    event VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    channel VARCHAR,
    item_id VARCHAR,
    properties JSON
);
CREATE TABLE IF NOT EXISTS consents (
    user_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    granted BOOLEAN NOT NULL,
    source VARCHAR
);
