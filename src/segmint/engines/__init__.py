"""Where heavy work runs: DuckDB (the store's own engine, the default) or Apache Spark.

``engine: duckdb`` needs nothing here: the store computes. ``engine: spark`` (issue 23)
gives a :class:`SparkEngine`, which runs the same SQL (transpiled) and MLlib's K-Means and
ALS on Spark, over the same store; see docs/scale.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from segmint.engines._spark import (
    CANONICAL,
    JAVA_VERSIONS,
    SparkEngine,
    check_java,
    check_master,
    stop_session,
    to_spark_sql,
)

if TYPE_CHECKING:
    from segmint.config import Config

__all__ = [
    "CANONICAL",
    "JAVA_VERSIONS",
    "SparkEngine",
    "check_java",
    "check_master",
    "engine_for",
    "stop_session",
    "to_spark_sql",
]


def engine_for(config: Config, root: Path | None = None) -> SparkEngine | None:
    """The engine a project's configuration asks for: None for ``engine: duckdb`` (the
    store computes), a :class:`SparkEngine` for ``engine: spark``."""
    if config.engine != "spark":
        return None
    return SparkEngine(config.spark, root=root or config.root)
