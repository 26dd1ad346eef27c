"""Where heavy work runs: DuckDB (the store's own engine, the default) or Apache Spark.

``engine: duckdb`` needs nothing here: the store computes. ``engine: spark`` (issue 23)
gives a :class:`SparkEngine`, which runs the same SQL (transpiled) and MLlib's K-Means and
ALS on Spark, over the same store; see docs/scale.md.
"""

from __future__ import annotations

from segmint.engines._select import engine_for
from segmint.engines._spark import (
    CANONICAL,
    JAVA_VERSIONS,
    SparkEngine,
    check_java,
    check_master,
    stop_session,
    to_spark_sql,
)

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
