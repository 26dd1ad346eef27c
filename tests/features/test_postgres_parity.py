"""The feature SQL is written once: PostgreSQL (transpiled) gives what DuckDB gives."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlglot

from segmint.features import (
    CustomFeature,
    category_shares,
    compute_features,
    default_as_of,
    feature_sql,
    load_features,
)
from segmint.store import Store

AS_OF = datetime(2024, 7, 1, tzinfo=UTC)

CUSTOM = (
    CustomFeature("offline_orders", "count(*) FILTER (WHERE channel = 'offline')"),
    CustomFeature("median_amount", "median(amount)"),
    CustomFeature("spend_sd", "round(stddev_samp(amount), 4)"),
    CustomFeature(
        "toy_spend",
        "sum(quantity * coalesce(unit_price, items.price)) FILTER (WHERE category = 'toys')",
        table="order_items",
    ),
    CustomFeature("units", "sum(quantity)", table="order_items"),
    CustomFeature("event_span_days", "date_diff('day', min(ts), max(ts))", table="events"),
    CustomFeature("app_events", "count_if(channel = 'app')", table="events"),
    CustomFeature("avg_log_amount", "avg(ln(amount + 1))"),
    CustomFeature("last_order_at", "max(ts)"),
    CustomFeature(
        "age_band", "max(CAST(CAST(floor(age / 10) * 10 AS BIGINT) AS VARCHAR))", table="users"
    ),
)


def _assert_same(duck: pd.DataFrame, pg: pd.DataFrame) -> None:
    duck = duck.sort_values("user_id").reset_index(drop=True)
    pg = pg.sort_values("user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(duck, pg, check_exact=False, rtol=0, atol=1e-9)


@pytest.mark.postgres
@pytest.mark.parametrize("as_of", [AS_OF, date(2024, 6, 26), date(2024, 6, 1)])
def test_postgres_features_equal_duckdb(
    tiny_store: Store, tiny_pg_store: Store, as_of: date
) -> None:
    duck = compute_features(tiny_store, as_of=as_of, custom=CUSTOM)
    pg = compute_features(tiny_pg_store, as_of=as_of, custom=CUSTOM)
    assert duck.n_users == pg.n_users == len(duck.data)
    assert duck.features == pg.features
    _assert_same(duck.data, pg.data)
    _assert_same(load_features(tiny_pg_store, pg.run_id), duck.data)


@pytest.mark.postgres
def test_postgres_runs_add_custom_columns(tiny_pg_store: Store) -> None:
    compute_features(tiny_pg_store, as_of=AS_OF, run_id="f-1")
    compute_features(tiny_pg_store, as_of=AS_OF, run_id="f-2", custom=CUSTOM[:1])
    assert list(load_features(tiny_pg_store).columns)[-1] == "offline_orders"
    assert "offline_orders" not in load_features(tiny_pg_store, "f-1").columns


@pytest.mark.postgres
def test_postgres_category_shares_and_default_as_of(
    tiny_store: Store, tiny_pg_store: Store
) -> None:
    assert default_as_of(tiny_pg_store) == default_as_of(tiny_store)
    _assert_same(
        category_shares(tiny_store, as_of=AS_OF), category_shares(tiny_pg_store, as_of=AS_OF)
    )


@pytest.mark.parametrize("dialect", ["postgres", "spark"])
def test_feature_sql_transpiles_and_parses(dialect: str) -> None:
    sql = feature_sql(AS_OF, CUSTOM, dialect=dialect)
    assert sqlglot.parse_one(sql, read=dialect) is not None


def test_feature_sql_parses_as_spark_sql() -> None:
    (spark,) = sqlglot.transpile(feature_sql(AS_OF, CUSTOM), read="duckdb", write="spark")
    tree = sqlglot.parse_one(spark, read="spark")
    assert "offline_orders" in tree.named_selects
    assert "favourite_category" in tree.named_selects


@pytest.mark.postgres
def test_every_allowed_date_unit_computes_the_same_on_postgres(
    tiny_store: Store, tiny_pg_store: Store
) -> None:
    # the units the checker accepts are the ones sqlglot transpiles faithfully
    from segmint._expressions import DATE_UNITS

    custom = [
        *(
            CustomFeature(
                f"diff_{u}", f"max(date_diff('{u}', CAST('2024-01-01' AS TIMESTAMP), ts))"
            )
            for u in DATE_UNITS["date_diff"]
        ),
        *(
            CustomFeature(f"trunc_{u}", f"CAST(max(date_trunc('{u}', ts)) AS TIMESTAMP)")
            for u in DATE_UNITS["date_trunc"]
        ),
        *(
            CustomFeature(f"part_{u}", f"max(CAST(extract({u} FROM ts) AS DOUBLE))")
            for u in DATE_UNITS["extract"]
        ),
    ]
    duck = compute_features(tiny_store, as_of=AS_OF, custom=custom)
    pg = compute_features(tiny_pg_store, as_of=AS_OF, custom=custom)
    names = ["user_id", *(f.name for f in custom)]
    _assert_same(duck.data[names], pg.data[names])


@pytest.mark.postgres
def test_a_feature_failing_on_a_value_is_named_on_postgres(tiny_pg_store: Store) -> None:
    from segmint.errors import ConfigError

    broken = CustomFeature("broken", "max(CAST(status AS INT))")
    with pytest.raises(ConfigError, match=r"feature 'broken' failed when computed: .*integer"):
        compute_features(tiny_pg_store, as_of=AS_OF, custom=[CUSTOM[0], broken])
    # the store is usable afterwards (the failed transaction was rolled back)
    assert compute_features(tiny_pg_store, as_of=AS_OF, custom=CUSTOM[:1]).n_users == 4
