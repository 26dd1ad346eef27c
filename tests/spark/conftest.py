"""The Spark engine's tests share one SparkSession (local[2], small shuffles) and one
2,000-user demo shop, ingested once into DuckDB."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import segmint
from segmint.config import SparkSettings
from segmint.engines import SparkEngine, stop_session

SETTINGS = SparkSettings(
    master="local[2]",
    conf={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"},
)


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEngine]:
    """The one Spark engine of the suite (its session starts on first use)."""
    if shutil.which("java") is None:
        pytest.fail("the Spark tests need Java 17: apt-get install openjdk-17-jre-headless")
    engine = SparkEngine(SETTINGS, root=tmp_path_factory.mktemp("spark-engine"))
    yield engine
    engine.close()
    stop_session()


@pytest.fixture(scope="session")
def spark_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2,000-user demo shop, ingested (copy it before writing to it)."""
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("spark-shop") / "shop"
    generate_demo(root, n_users=2000, seed=23)
    with segmint.open_project(root) as p:
        p.ingest()
    return root
