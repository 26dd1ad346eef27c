"""The Spark engine: the same SQL and the same store, computed on Apache Spark.

segmint's heavy SQL (the feature catalog, custom features, rule segmentations) is written
once in DuckDB's dialect; here it is transpiled to Spark SQL with sqlglot and run over the
store's canonical tables, which Spark reads as they are:

* a DuckDB store: a Parquet copy of each table (without personal columns), written by
  DuckDB into a scratch folder that is deleted when the engine closes;
* a PostgreSQL store: JDBC (the PostgreSQL driver jar, see ``spark.jdbc_driver``);
* ``spark.tables``: a table Spark reads itself (Parquet, CSV, JSON Lines, JDBC).

Results (features, assignments, recommendations) go back into the store, where profiles,
campaigns and experiments read them. Before a session starts, the machine is checked:
Java 17 or 21 must be there and a ``spark://`` master must answer; each failure is a
:class:`~segmint.errors.EngineError` that names the fix.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, UnsupportedError

from segmint.config import SparkSettings, SparkTable
from segmint.errors import ConfigError, EngineError
from segmint.store import TABLES, Store

log = logging.getLogger(__name__)

JAVA_VERSIONS = (17, 21)
"""Java releases Spark 4 runs on."""
DEFAULT_JDBC_JAR = "/usr/share/java/postgresql.jar"
CANONICAL = ("users", "items", "orders", "order_items", "events")
"""The tables the feature catalog and the recommenders read."""

_LOCK = threading.Lock()
_LOG4J = Path(__file__).with_name("log4j2.properties")
_SPARK_TYPES = {
    "VARCHAR": "string",
    "JSON": "string",
    "TIMESTAMPTZ": "timestamp",
    "TIMESTAMP": "timestamp_ntz",
    "DATE": "date",
    "DOUBLE": "double",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
}
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def _java_binary(settings: SparkSettings) -> tuple[str | None, str]:
    """The java executable to use and where it was looked for (for the message)."""
    home = settings.java_home or os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return (str(candidate) if candidate.is_file() else None), f"{candidate} (JAVA_HOME)"
    found = shutil.which("java")
    return found, "java on PATH"


def check_java(settings: SparkSettings) -> int:
    """The major version of the Java Spark will use; an EngineError naming the fix when
    there is none or it is not 17 or 21."""
    binary, where = _java_binary(settings)
    fix = (
        "install Java 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) and set "
        "JAVA_HOME or spark.java_home in segmint.yaml to its folder"
    )
    if binary is None:
        raise EngineError(f"engine: spark needs Java 17 or 21, and there is none ({where}): {fix}")
    try:
        out = subprocess.run(
            [binary, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise EngineError(f"engine: spark cannot run {binary}: {exc.strerror}; {fix}") from None
    found = _VERSION.search(out.stderr + out.stdout)
    if found is None:
        raise EngineError(
            f"engine: spark could not read the version of {binary} "
            f"({(out.stderr or out.stdout).strip()[:120]!r}); {fix}"
        )
    major = int(found.group(1))
    if major == 1 and found.group(2):  # "1.8.0_392" is Java 8
        major = int(found.group(2))
    if major not in JAVA_VERSIONS:
        raise EngineError(f"engine: spark needs Java 17 or 21; {binary} is Java {major}: {fix}")
    return major


def check_master(master: str, timeout: float = 3.0) -> None:
    """A ``spark://host:port`` master must accept a connection (Spark itself would retry
    for minutes before failing); other masters are left to Spark."""
    if not master.startswith("spark://"):
        return
    for hostport in master.removeprefix("spark://").split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            last = f"{host}:{port} ({reason})"
    raise EngineError(
        f"engine: spark cannot reach the Spark master {master}: {last}. Start the master "
        "(sbin/start-master.sh) or fix spark.master in segmint.yaml; local[N] runs Spark "
        "on this machine with N cores"
    )


def _import_pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise EngineError(
            "engine: spark needs the pyspark package: pip install 'segmint[spark]'"
        ) from None
    return pyspark


def _epoch_seconds(ts: exp.Expression) -> exp.Expression:
    """Seconds since 1970 with the microseconds, as DuckDB's ``epoch`` gives them (Spark's
    ``UNIX_TIMESTAMP`` drops the fraction)."""
    micros = exp.Anonymous(this="UNIX_MICROS", expressions=[ts.copy()])
    return exp.Div(this=exp.cast(micros, "DOUBLE"), expression=exp.Literal.number(1_000_000))


_EXTRACT_FIELDS = {"ISODOW": "DAYOFWEEK_ISO", "ISOYEAR": "YEAROFWEEK"}
_TRUNC_UNITS = {"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND"}
_TRUNC_UNITS |= {"MILLISECOND", "MICROSECOND"}


def _exact_percentile(node: exp.Expression) -> exp.Expression | None:
    """DuckDB's ``quantile_cont(x, q)`` (and ``percentile_cont(q) WITHIN GROUP (ORDER BY
    x)``) as Spark's exact ``PERCENTILE(x, q)``: the same linear interpolation between the
    two nearest ranks. sqlglot writes ``PERCENTILE_CONT(x, q)``, which Spark refuses, and
    ``PERCENTILE_APPROX`` for the WITHIN GROUP form, which is approximate."""
    if isinstance(node, exp.PercentileCont) and node.args.get("expression") is not None:
        return exp.Anonymous(
            this="PERCENTILE", expressions=[node.this.copy(), node.expression.copy()]
        )
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        order = node.expression.expressions if node.expression else []
        if len(order) != 1 or order[0].args.get("desc"):
            raise UnsupportedError("percentile_cont ... WITHIN GROUP needs one ascending key")
        return exp.Anonymous(
            this="PERCENTILE", expressions=[order[0].this.copy(), node.this.this.copy()]
        )
    return None


def _same_meaning(node: exp.Expression) -> exp.Expression:
    """Where sqlglot's Spark SQL would compute something else than DuckDB: DuckDB's
    one-argument ``log`` is base 10 (Spark's is e), ``epoch`` keeps microseconds,
    ISO day-of-week / year have other names, and quantiles must stay exact."""
    percentile = _exact_percentile(node)
    if percentile is not None:
        return percentile
    if isinstance(node, exp.Log) and node.args.get("expression") is None:
        return exp.Anonymous(this="LOG10", expressions=[node.this.copy()])
    if isinstance(node, exp.TimestampTrunc | exp.DateTrunc):
        unit = node.args["unit"].name.upper() if node.args.get("unit") else ""
        if unit not in _TRUNC_UNITS:  # Spark's DATE_TRUNC gives NULL for these
            raise UnsupportedError(f"date_trunc('{unit.lower()}', ...) has no Spark SQL equivalent")
    if isinstance(node, exp.TimeToUnix):
        return _epoch_seconds(node.this)
    if isinstance(node, exp.Extract) and isinstance(node.this, exp.Var):
        field = node.this.name.upper()
        if field == "EPOCH":
            return _epoch_seconds(node.expression)
        if field in _EXTRACT_FIELDS:
            return exp.Extract(
                this=exp.var(_EXTRACT_FIELDS[field]), expression=node.expression.copy()
            )
    return node


def to_spark_sql(sql: str, *, context: str) -> str:
    """DuckDB-dialect SQL as Spark SQL (sqlglot, plus :func:`_same_meaning`); a ConfigError
    naming ``context`` when Spark SQL cannot express it."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb").transform(_same_meaning)
        out = tree.sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except (UnsupportedError, ParseError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ConfigError(
            f"{context} cannot run on engine: spark: Spark SQL cannot express it ({first}). "
            "Rewrite it with functions both engines know (docs/spark.md lists the differences) or use "
            "engine: duckdb"
        ) from None
    return out


class SparkEngine:
    """Spark behind segmint's relations.

    Parameters
    ----------
    settings : SparkSettings
        The ``spark:`` section of segmint.yaml.
    root : Path
        The project folder (scratch Parquet copies go under ``.segmint/spark``).

    Notes
    -----
    One SparkSession per process (Spark's own rule): a second engine with other settings
    reuses the running session, whose master and memory cannot change without a restart.
    """

    def __init__(self, settings: SparkSettings | None = None, *, root: Path | str = ".") -> None:
        self.settings = settings or SparkSettings()
        self.root = Path(root)
        self._scratch: Path | None = None
        self._views: set[str] = set()

    def __repr__(self) -> str:
        return f"SparkEngine(master={self.settings.master!r})"

    # -- the session ----------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The SparkSession (created on first use, after checking Java and the master)."""
        with _LOCK:
            pyspark = _import_pyspark()
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:
                running = active.sparkContext.master
                if running != self.settings.master:
                    log.warning(
                        "spark.master is %s but this process already runs a Spark session on "
                        "%s: that one is used (one session per process)",
                        self.settings.master,
                        running,
                    )
                return active
            # pyspark 4.3 warns that pandas 3 is not "fully supported"; segmint hands it
            # Arrow tables, and the parity tests check the results
            warnings.filterwarnings(
                "ignore",
                message="PySpark does not yet fully support pandas",
                category=FutureWarning,
            )
            java = check_java(self.settings)
            check_master(self.settings.master)
            if self.settings.java_home:
                os.environ["JAVA_HOME"] = self.settings.java_home
            # Python workers (MLlib's RDD K-Means) run this interpreter, with its packages,
            # not whatever python3 is first on PATH
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            if self.settings.master.startswith("local"):  # one machine: stay on loopback
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = (
                SparkSession.builder.master(self.settings.master)
                .appName(self.settings.app_name)
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.ansi.enabled", "false")
            )
            jar = self._jdbc_jar(required=False)
            if jar:
                builder = builder.config("spark.jars", jar)
            conf = {
                # MLlib's ALS builds a long lineage: deep (de)serialisation needs a larger
                # thread stack than the JVM's default (one crash seen in the tests without)
                "spark.driver.extraJavaOptions": f"-Xss16m -Dlog4j2.configurationFile=file:{_LOG4J}",
                "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
                # the features come back to the driver to be stored: 5M users' rows are
                # 1.04 GiB, over Spark's default cap of 1g (bench/spark.py found it)
                "spark.driver.maxResultSize": "0",
                **self.settings.conf,
            }
            for key, value in conf.items():
                builder = builder.config(key, value)
            started = time.perf_counter()
            try:
                spark = builder.getOrCreate()
            except Exception as exc:
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                raise EngineError(
                    f"engine: spark could not start a session on {self.settings.master} "
                    f"({first}); check spark.master and spark.conf in segmint.yaml"
                ) from None
            spark.sparkContext.setLogLevel("ERROR")
            if spark.sparkContext.getCheckpointDir() is None:  # ALS checkpoints every 10 sweeps
                spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="segmint-spark-"))
            log.info(
                "Spark %s session on %s (Java %d) in %.1fs",
                pyspark.__version__,
                self.settings.master,
                java,
                time.perf_counter() - started,
            )
            return spark

    def _jdbc_jar(self, *, required: bool) -> str | None:
        jar = self.settings.jdbc_driver or DEFAULT_JDBC_JAR
        if Path(jar).is_file():
            return jar
        if required:
            raise EngineError(
                f"engine: spark reads PostgreSQL with its JDBC driver, and {jar} is not there: "
                "apt-get install libpostgresql-jdbc-java, or set spark.jdbc_driver in "
                "segmint.yaml to the postgresql-*.jar"
            )
        return None

    # -- relations ------------------------------------------------------------------------
    def load_tables(self, store: Store, tables: Iterable[str] = CANONICAL) -> dict[str, int]:
        """Register the canonical ``tables`` as Spark views, read from the store (or from
        ``spark.tables``); returns rows per table copied to Parquet (0 for JDBC or Spark's
        own reads)."""
        copied: dict[str, int] = {}
        jdbc = store.jdbc_source()
        if jdbc is not None:
            self._jdbc_jar(required=True)
        for name in tables:
            table = self.settings.tables.get(name)  # type: ignore[call-overload]
            if table is not None:
                self._canonical(name, self._read_own(name, table)).createOrReplaceTempView(name)
                self._views.add(name)
                copied[name] = 0
                continue
            columns = ", ".join(f'"{c.name}"' for c in TABLES[name].columns if not c.pii)
            if jdbc is not None:  # personal columns never leave PostgreSQL
                query = f"(SELECT {columns} FROM {name}) AS {name}"
                reader = self.session.read.format("jdbc").options(dbtable=query, **jdbc)
                reader.load().createOrReplaceTempView(name)
                self._views.add(name)
                copied[name] = 0
                continue
            path = self.scratch / f"{name}.parquet"
            copied[name] = store.export_parquet(f"SELECT {columns} FROM {name}", path)
            self.session.read.parquet(str(path)).createOrReplaceTempView(name)
            self._views.add(name)
        return copied

    def _canonical(self, name: str, frame: Any) -> Any:
        """A table Spark read itself, in the store's columns and types (a CSV or JSON Lines
        file gives text where the store has timestamps); a missing column that the store
        requires is an error, other missing columns are NULL."""
        from pyspark.sql import functions as F

        have = set(frame.columns)
        out = []
        for column in TABLES[name].columns:
            if column.pii:
                continue
            kind = _SPARK_TYPES.get(column.type, "string")
            if column.name in have:
                out.append(F.col(column.name).cast(kind).alias(column.name))
            elif column.required:
                raise ConfigError(
                    f"spark.tables.{name}: the data has no column {column.name!r} (it has "
                    f"{', '.join(sorted(have))}); the store's columns are in docs/data-model.md"
                )
            else:
                out.append(F.lit(None).cast(kind).alias(column.name))
        return frame.select(*out)

    def _read_own(self, name: str, table: SparkTable) -> Any:
        reader = self.session.read.options(**table.options)
        if table.format == "jdbc":
            self._jdbc_jar(required=True)
            return reader.format("jdbc").options(url=table.url, dbtable=table.dbtable).load()
        if table.format == "jsonl":
            return reader.json(table.path)
        if table.format == "csv":
            return reader.option("header", "true").option("inferSchema", "true").csv(table.path)
        return reader.parquet(table.path)

    @property
    def scratch(self) -> Path:
        """A private scratch folder for Parquet copies (removed by :meth:`close`)."""
        if self._scratch is None:
            base = self.root / ".segmint" / "spark"
            base.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        return self._scratch

    def view(self, frame: pd.DataFrame | pa.Table, name: str) -> Any:
        """Register a pandas DataFrame or Arrow table as Spark view ``name``."""
        table = (
            frame
            if isinstance(frame, pa.Table)
            else pa.Table.from_pandas(frame, preserve_index=False)
        )
        df = self.session.createDataFrame(table)
        df.createOrReplaceTempView(name)
        self._views.add(name)
        return df

    def sql(self, sql: str, *, context: str) -> Any:
        """Run DuckDB-dialect SQL on Spark (transpiled); the Spark DataFrame."""
        spark_sql = to_spark_sql(sql, context=context)
        try:
            return self.session.sql(spark_sql)
        except Exception as exc:
            if type(exc).__name__ not in ("AnalysisException", "ParseException"):
                raise
            first = str(exc).strip().splitlines()[0][:300]
            raise ConfigError(
                f"{context} cannot run on engine: spark: Spark SQL refused it ({first}). "
                "Rewrite it with functions both engines know (docs/spark.md) or use "
                "engine: duckdb"
            ) from None

    def to_arrow(self, df: Any) -> pa.Table:
        """A Spark DataFrame collected as an Arrow table (on the driver)."""
        return df.toArrow()

    def to_pandas(self, df: Any) -> pd.DataFrame:
        return self.to_arrow(df).to_pandas()

    def close(self) -> None:
        """Drop this engine's views and scratch files (the session stays for reuse)."""
        if self._views:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:
                for name in self._views:
                    active.catalog.dropTempView(name)
            self._views.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def stop_session() -> None:
    """Stop this process's SparkSession, if any (its JVM stays until the process ends)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
