"""Where Spark reads the tables: a PostgreSQL store over JDBC, and ``spark.tables`` files
(Parquet, CSV, JSON Lines) it reads itself; features equal the DuckDB engine's each way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal

import segmint
from segmint.config import SparkSettings, SparkTable
from segmint.engines import SparkEngine
from segmint.errors import ConfigError
from segmint.features import compute_features
from segmint.store import TABLES, open_store

FEW = "user_id <= 'C000300'"
SUBSET = {
    "users": FEW,
    "items": "true",
    "orders": FEW,
    "order_items": f"order_id IN (SELECT order_id FROM orders WHERE {FEW})",
    "events": FEW,
}


@pytest.mark.postgres
def test_features_from_a_postgresql_store_over_jdbc(
    spark_shop: Path, spark_engine: SparkEngine, pg_url: str
) -> None:
    with segmint.open_project(spark_shop, read_only=True) as p, open_store(pg_url) as pg:
        for table, where in SUBSET.items():  # 300 of the shop's users: JDBC reads are slow
            pg.insert(table, p.store.arrow(f"SELECT * FROM {table} WHERE {where}"))
        duck = compute_features(pg)  # PostgreSQL computes (transpiled SQL)
        assert pg.jdbc_source() is not None
        spark = compute_features(pg, engine=spark_engine)
        spark_engine.load_tables(pg, ["users"])
        read = set(spark_engine.session.table("users").columns)
        spark_engine.close()
    assert {"user_id", "country"} <= read  # the personal columns stay in PostgreSQL
    assert not read & {"email", "phone", "birthday", "traits"}
    assert not any(spark_engine.root.rglob("*.parquet"))  # read over JDBC, no copy
    assert spark.n_users == 300
    assert_frame_equal(spark.data, duck.data, check_exact=False, rtol=0, atol=1e-9)


def test_tables_spark_reads_itself_from_parquet_csv_and_json_lines(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    lake = tmp_path / "lake"
    lake.mkdir()
    formats = {"orders": "csv", "events": "jsonl", "users": "parquet"}
    how = {"csv": "FORMAT csv, HEADER", "jsonl": "FORMAT json", "parquet": "FORMAT parquet"}
    with segmint.open_project(root) as p:
        for table, fmt in formats.items():
            cols = ", ".join(c.name for c in TABLES[table].columns if not c.pii)
            path = lake / f"{table}.{fmt}"
            p.store.execute(f"COPY (SELECT {cols} FROM {table}) TO '{path}' ({how[fmt]})")
        duck = compute_features(p.store)
        # the session is the suite's; what the engine reads is this engine's settings
        lake_tables = {
            t: SparkTable(format=fmt, path=str(lake / f"{t}.{fmt}"))
            for t, fmt in formats.items()  # type: ignore[arg-type]
        }
        engine = SparkEngine(SparkSettings(master="local[2]", tables=lake_tables), root=root)
        spark = compute_features(p.store, engine=engine)
        copied = engine.load_tables(p.store)
        engine.close()
    assert {t: copied[t] for t in formats} == dict.fromkeys(formats, 0)  # read, not copied
    assert copied["order_items"] > 0  # not in spark.tables: the store's copy
    # files read in other partitions add a user's amounts in another order: sums of
    # doubles may differ in the last bits (the Parquet copy keeps the order: bit for bit)
    assert_frame_equal(spark.data, duck.data, check_exact=False, rtol=1e-12, atol=0)


def test_a_lake_table_without_a_required_column_is_named(
    spark_engine: SparkEngine, tmp_path: Path
) -> None:
    (tmp_path / "orders.csv").write_text("id,amount\n1,2.5\n", encoding="utf-8")
    settings = SparkSettings(
        tables={"orders": SparkTable(format="csv", path=str(tmp_path / "orders.csv"))}
    )
    engine = SparkEngine(settings, root=tmp_path)
    with open_store(str(tmp_path / "s.duckdb")) as store, pytest.raises(ConfigError) as err:
        engine.load_tables(store, ["orders"])
    assert "spark.tables.orders: the data has no column 'order_id' (it has amount, id)" in str(
        err.value
    )
