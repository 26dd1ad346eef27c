-- A store as segmint wrote it at schema version 1 (before consents had recorded_at and
-- granted joined their key): frozen, for the migration tests. Do not edit.
CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL, applied_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS loads (load_id TEXT PRIMARY KEY, source TEXT NOT NULL, target_table TEXT NOT NULL, location TEXT, checksum TEXT, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, rows_read BIGINT NOT NULL, rows_accepted BIGINT NOT NULL, rows_rejected BIGINT NOT NULL, rows_inserted BIGINT NOT NULL, rows_updated BIGINT NOT NULL, rows_unchanged BIGINT NOT NULL, cleaning JSONB);
CREATE TABLE IF NOT EXISTS quarantine (load_id TEXT NOT NULL, "row" BIGINT NOT NULL, source TEXT NOT NULL, target_table TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, raw JSONB, PRIMARY KEY (load_id, "row", rule));
CREATE TABLE IF NOT EXISTS users (user_id TEXT NOT NULL, created_at TIMESTAMPTZ, email TEXT, phone TEXT, birthday DATE, gender TEXT, age INT, country TEXT, city TEXT, income_band TEXT, acquisition_channel TEXT, traits JSONB, PRIMARY KEY (user_id));
CREATE TABLE IF NOT EXISTS items (item_id TEXT NOT NULL, title TEXT, category TEXT, price DOUBLE PRECISION, attributes JSONB, in_stock BOOLEAN, PRIMARY KEY (item_id));
CREATE TABLE IF NOT EXISTS orders (order_id TEXT NOT NULL, user_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, amount DOUBLE PRECISION NOT NULL, currency TEXT, channel TEXT, discount DOUBLE PRECISION, status TEXT, PRIMARY KEY (order_id));
CREATE TABLE IF NOT EXISTS order_items (order_id TEXT NOT NULL, line INT NOT NULL, item_id TEXT NOT NULL, quantity INT NOT NULL, unit_price DOUBLE PRECISION, PRIMARY KEY (order_id, line));
CREATE TABLE IF NOT EXISTS events (event_id TEXT NOT NULL, user_id TEXT, anonymous_id TEXT, event TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, channel TEXT, item_id TEXT, properties JSONB, PRIMARY KEY (event_id));
CREATE TABLE IF NOT EXISTS consents (user_id TEXT NOT NULL, channel TEXT NOT NULL, purpose TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, granted BOOLEAN NOT NULL, source TEXT, PRIMARY KEY (user_id, channel, purpose, ts));
