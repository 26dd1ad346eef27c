"""Features on Spark equal the DuckDB engine's, value for value; the engine's errors name
the fix (Java missing or too old, a master that does not answer, SQL Spark cannot run)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

import segmint
from segmint.config import SparkSettings
from segmint.engines import SparkEngine, check_java, check_master
from segmint.errors import ConfigError, EngineError
from segmint.features import CATALOG, CustomFeature, compute_features, load_features

CUSTOM = [
    CustomFeature(
        "orders_per_active_day",
        "count(*) / greatest(count(DISTINCT CAST(ts AS DATE)), 1)",
        "orders",
    ),
    CustomFeature("max_discount", "max(coalesce(discount, 0))", "orders"),
    CustomFeature(
        "weekend_events", "count(*) FILTER (WHERE extract(isodow FROM ts) IN (6, 7))", "events"
    ),
    CustomFeature("log_spend", "log(1 + sum(amount))", "orders"),
    CustomFeature("median_basket", "median(quantity * unit_price)", "order_items"),
]


def test_features_on_spark_equal_duckdbs(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    with segmint.open_project(root) as p:
        duck = compute_features(p.store, custom=CUSTOM)
        spark = compute_features(p.store, custom=CUSTOM, engine=spark_engine)
        stored = load_features(p.store, spark.run_id)
    assert spark.n_users == duck.n_users == 2000
    # the catalog's features equal bit for bit; custom ones too but where a float is made
    # by a function each engine implements itself (log10, median's interpolation: the JVM
    # and DuckDB differ in the last bit for some inputs)
    builtin = list(CATALOG)
    assert_frame_equal(
        spark.data[["user_id", *builtin]], duck.data[["user_id", *builtin]], check_exact=True
    )
    assert_frame_equal(stored, spark.data, check_exact=True)  # written where the rest reads
    for name in ("orders_per_active_day", "max_discount", "weekend_events"):
        assert spark.data[name].equals(duck.data[name]), name
    for name in ("log_spend", "median_basket"):
        a, b = spark.data[name], duck.data[name]
        assert a.isna().equals(b.isna()), name
        ulps = (np.abs(a - b) / np.spacing(np.abs(b))).max()
        assert ulps <= 2, (name, ulps)
    assert not any(spark_engine.root.rglob("*.parquet"))  # the scratch copy is gone


def test_the_parquet_copy_leaves_personal_columns_out(
    spark_shop: Path, spark_engine: SparkEngine
) -> None:
    with segmint.open_project(spark_shop, read_only=True) as p:
        spark_engine.load_tables(p.store, ["users"])
        (copy,) = spark_engine.scratch.glob("users.parquet")
        names = set(pq.read_schema(copy).names)
        spark_engine.close()
    assert {"user_id", "created_at", "country"} <= names
    assert not names & {"email", "phone", "birthday", "traits"}


def test_a_feature_spark_sql_cannot_run_names_the_feature(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    # Spark's DATE_TRUNC knows no decade: it would give NULL, not an error
    odd = CustomFeature("decades", "count(DISTINCT date_trunc('decade', ts))", "orders")
    with segmint.open_project(root) as p:
        before = p.store.count("features")
        with pytest.raises(ConfigError) as err:
            compute_features(p.store, custom=[odd], engine=spark_engine)
        assert p.store.count("features") == before
    text = str(err.value)
    assert "feature 'decades' cannot run on engine: spark" in text
    assert "date_trunc('decade', ...) has no Spark SQL equivalent" in text
    assert "engine: duckdb" in text


def _fake_java(root: Path, version: str) -> Path:
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return root


def test_java_missing_or_too_old_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(
        EngineError, match=r"needs Java 17 or 21, and there is none .*apt-get install openjdk-17"
    ):
        check_java(SparkSettings(java_home=str(tmp_path / "no-java")))
    old = _fake_java(tmp_path / "jdk11", "11.0.21")
    with pytest.raises(
        EngineError, match=r"needs Java 17 or 21; .*jdk11/bin/java is Java 11: install Java 17"
    ):
        check_java(SparkSettings(java_home=str(old)))
    eight = _fake_java(tmp_path / "jdk8", "1.8.0_392")
    with pytest.raises(EngineError, match="is Java 8"):
        check_java(SparkSettings(java_home=str(eight)))
    assert check_java(SparkSettings()) in (17, 21)  # this machine's


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_master_is_named_with_the_fix() -> None:
    port = _closed_port()
    with pytest.raises(EngineError) as err:
        check_master(f"spark://127.0.0.1:{port}", timeout=1)
    text = str(err.value)
    assert f"cannot reach the Spark master spark://127.0.0.1:{port}" in text
    assert "start-master.sh" in text and "local[N]" in text
    check_master("local[2]")  # nothing to reach


def _segment_cli(root: Path, extra: str) -> subprocess.CompletedProcess[str]:
    config = root / "segmint.yaml"
    config.write_text(config.read_text(encoding="utf-8") + extra, encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "segmint", "segment", "lifecycle", "-p", str(root)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_the_command_line_shows_each_engine_error_and_exits_2(
    spark_shop: Path, tmp_path: Path
) -> None:
    port = _closed_port()
    root = tmp_path / "master"
    shutil.copytree(spark_shop, root)
    res = _segment_cli(root, f"engine: spark\nspark:\n  master: spark://127.0.0.1:{port}\n")
    assert res.returncode == 2, res.stderr
    flat = " ".join(res.stderr.split())
    assert f"cannot reach the Spark master spark://127.0.0.1:{port}" in flat
    assert "Traceback" not in res.stderr

    root = tmp_path / "java"
    shutil.copytree(spark_shop, root)
    res = _segment_cli(root, f"engine: spark\nspark:\n  java_home: {tmp_path / 'none'}\n")
    assert res.returncode == 2, res.stderr
    flat = " ".join(res.stderr.split())
    assert "needs Java 17 or 21, and there is none" in flat and "JAVA_HOME" in flat
    assert "Traceback" not in res.stderr
