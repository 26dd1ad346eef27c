"""Feature runs: compute the features in the store and keep each run as a snapshot.

Tables (part of the store's schema, see ``segmint.store._schema``)::

    feature_runs(run_id, as_of, created_at, n_users, features JSON, params JSON)
    features(run_id, user_id, <one column per feature>)

A custom feature seen for the first time gets its column (``Store.add_columns``). The rows
of a run and its ``feature_runs`` record are written in one transaction.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from segmint.engines import SparkEngine
from segmint.errors import ConfigError, NotFoundError, SegmintError
from segmint.features._catalog import (
    CATALOG,
    SESSION_GAP_SECONDS,
    category_shares_sql,
    check_custom,
    custom_probe_sql,
    feature_columns,
    feature_sql,
    to_utc,
)
from segmint.features._custom import CustomFeature
from segmint.store import Store, latest_run_sql
from segmint.store import ident as _q
from segmint.store import lit as _lit
from segmint.store import ts_lit as _ts_lit

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
CATALOG_TYPES = {name: spec.type for name, spec in CATALOG.items()}


@dataclass(frozen=True)
class FeatureRun:
    """One stored snapshot of features.

    Parameters
    ----------
    run_id : str
        Identifier of the run (sortable by creation time, e.g. ``f-20261126T120000-ab12cd``).
    as_of : datetime
        The as-of instant (UTC): only data strictly before it was used.
    n_users : int
        Number of users (rows) in the run.
    features : tuple of str
        Feature names, in column order.
    data : pandas.DataFrame
        One row per user: ``user_id`` then one column per feature, sorted by ``user_id``.
    """

    run_id: str
    as_of: datetime
    n_users: int
    features: tuple[str, ...]
    data: pd.DataFrame = field(repr=False, compare=False)

    def frame(self) -> pd.DataFrame:
        """A copy of the features: one row per user, ``user_id`` then the features."""
        return self.data.copy()


def _as_utc_datetime(value: Any) -> datetime | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def default_as_of(store: Store) -> datetime:
    """The as-of instant to use when none is given: the day after the newest activity.

    Midnight UTC after the UTC date of the latest order or event (or, in a store with
    neither, the latest sign-up). Deterministic for a given data set.

    Parameters
    ----------
    store : segmint.store.Store
        The store to look at.

    Returns
    -------
    datetime
        An aware UTC datetime at midnight.

    Raises
    ------
    segmint.errors.NotFoundError
        When the store has no orders, events or users with a timestamp.
    """
    latest = _as_utc_datetime(
        store.scalar(
            "SELECT max(ts) FROM (SELECT max(ts) AS ts FROM orders "
            "UNION ALL SELECT max(ts) AS ts FROM events) AS t"
        )
    )
    if latest is None:
        latest = _as_utc_datetime(store.scalar("SELECT max(created_at) FROM users"))
    if latest is None:
        raise NotFoundError(
            f"store {store.location} has no orders, events or users with a date, so there is "
            "no default as-of date; load data first or pass as_of"
        )
    midnight = datetime(latest.year, latest.month, latest.day, tzinfo=UTC)
    return midnight + timedelta(days=1)


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by creation time: ``f-YYYYmmddTHHMMSS-xxxxxx``."""
    now = now or datetime.now(UTC)
    return f"f-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _has_runs(store: Store) -> bool:
    return bool(store.scalar("SELECT count(*) FROM feature_runs"))


def _normalize(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Same dtypes whichever store the rows came from."""
    out: dict[str, Any] = {"user_id": frame["user_id"].astype("str")}
    for name, sql_type in types.items():
        col = frame[name]
        if sql_type in ("BIGINT", "INTEGER"):
            out[name] = col.astype("Int64")
        elif sql_type == "DOUBLE":
            out[name] = pd.to_numeric(col).astype("float64")
        elif sql_type == "BOOLEAN":
            out[name] = col.astype("boolean")
        elif sql_type == "TIMESTAMPTZ":
            out[name] = pd.to_datetime(col, utc=True)
        elif sql_type in ("DATE", "TIMESTAMP"):
            out[name] = pd.to_datetime(col)
        else:
            out[name] = col.astype("str")
    return pd.DataFrame(out).sort_values("user_id", kind="stable").reset_index(drop=True)


def _first_line(exc: BaseException) -> str:
    """The engine's message, first line, cut: it may quote a value of the data."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:200] + "..."


def _name_failing_feature(
    store: Store, custom: Sequence[CustomFeature], at: datetime, failure: Exception
) -> None:
    """The feature query failed in the engine: if a custom feature fails alone, raise a
    ConfigError naming it and its expression; otherwise return (the caller re-raises).

    A custom feature compiles before anything runs (its type is known), but a CAST of a
    value that is not a number, an overflow or a division by zero fails only when rows are
    computed. Each is computed alone, outside the rolled-back transaction.
    """
    if isinstance(failure, SegmintError):
        return
    for feature in custom:
        try:
            store.query(custom_probe_sql(feature, at))
        except Exception as exc:  # the engine's error, whichever store
            if isinstance(exc, SegmintError):
                raise
            expr = feature.checked().sql(dialect="duckdb")
            raise ConfigError(
                f"{feature.context} failed when computed: {_first_line(exc)}; its expression "
                f"is {expr[:200]!r}. Fix it (e.g. TRY_CAST(... AS ...) gives NULL where CAST "
                "fails) or remove it from features.custom in segmint.yaml"
            ) from None


def compute_features(
    store: Store,
    *,
    as_of: datetime | date | None = None,
    custom: Sequence[CustomFeature] = (),
    run_id: str | None = None,
    engine: SparkEngine | None = None,
) -> FeatureRun:
    """Compute every feature for every user in the store and save the run.

    The feature SQL (see :func:`feature_sql`) runs inside the store — DuckDB, or
    PostgreSQL after transpiling — and the rows and the run record are written in one
    transaction: either the whole run is stored or nothing is.

    Parameters
    ----------
    store : segmint.store.Store
        Where the canonical tables live and where the run is stored.
    as_of : datetime or date, optional
        Only data strictly before this instant is used. Defaults to
        :func:`default_as_of` (the day after the newest order or event).
    custom : sequence of CustomFeature, optional
        User-defined features computed along with the built-ins.
    run_id : str, optional
        Identifier for the run; a new sortable id by default.
    engine : SparkEngine, optional
        Compute on Spark (``engine: spark``): the same SQL transpiled to Spark SQL over the
        store's tables; the rows are written to the store as with DuckDB. None: the store
        computes.

    Returns
    -------
    FeatureRun
        The stored run, with its features as a DataFrame.

    Raises
    ------
    segmint.errors.ConfigError
        For a custom feature that is not allowed or fails when computed (e.g. a CAST of a
        value that is not a number), or a run id that is taken or malformed.
    """
    started = time.perf_counter()
    at = default_as_of(store) if as_of is None else to_utc(as_of)
    custom = check_custom(custom)
    types = feature_columns(custom)
    created = datetime.now(UTC)
    run_id = run_id or new_run_id(created)
    _check_run_id(run_id)
    sql = feature_sql(at, custom)
    rows = None if engine is None else _spark_feature_rows(engine, store, sql, custom, at)
    try:
        with store.transaction():
            store.add_columns("features", types)  # a new custom or catalog feature
            if store.scalar("SELECT count(*) FROM feature_runs WHERE run_id = ?", [run_id]):
                raise ConfigError(f"feature run {run_id!r} already exists; choose another run_id")
            data = _write_feature_rows(store, sql, run_id, types, computed=rows)
            n_users = len(data)
            store.execute(
                "INSERT INTO feature_runs (run_id, as_of, created_at, n_users, features, params) "
                f"VALUES ({_lit(run_id)}, {_ts_lit(at)}, {_ts_lit(created)}, {n_users}, "
                f"{_lit(json.dumps(list(types)))}, "
                f"{_lit(json.dumps(_run_params(custom, types), sort_keys=True))})"
            )
    except Exception as exc:
        _name_failing_feature(store, custom, at, exc)
        raise
    took = time.perf_counter() - started
    log.info(
        "feature run %s: %d features for %d users as of %s in %.2fs",
        run_id, len(types), n_users, at.isoformat(), took,
    )  # fmt: skip
    return FeatureRun(
        run_id=run_id,
        as_of=at,
        n_users=n_users,
        features=tuple(types),
        data=_normalize(data, types),
    )


def _spark_feature_rows(
    engine: SparkEngine, store: Store, sql: str, custom: Sequence[CustomFeature], at: datetime
) -> pa.Table:
    """The feature rows computed on Spark from the store's tables (one definition: the
    DuckDB-dialect ``sql``, transpiled), collected as Arrow. When Spark cannot run the
    query, a custom feature it cannot run alone is named."""
    started = time.perf_counter()
    try:
        copied = engine.load_tables(store)
        loaded = time.perf_counter()
        try:
            query = engine.sql(sql, context="the feature query")
        except ConfigError:
            for feature in custom:  # each alone: the one Spark refuses is named
                engine.sql(custom_probe_sql(feature, at), context=feature.context)
            raise
        rows = engine.to_arrow(query)
    finally:
        engine.close()
    log.info(
        "features on Spark (%s): tables %.2fs (%s rows copied), query %.2fs",
        engine.settings.master,
        loaded - started,
        f"{sum(copied.values()):,}",
        time.perf_counter() - loaded,
    )
    return rows


def _check_run_id(run_id: Any) -> None:
    """Refuse a run id that is not a short word of letters, digits and ``_.:-``."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"run id {run_id!r} is not allowed: use letters, digits and '_.:-' (at most 64)"
        )


def _run_params(custom: Sequence[CustomFeature], types: dict[str, str]) -> dict[str, Any]:
    """What a feature run records of how it was computed."""
    return {
        "session_gap_seconds": SESSION_GAP_SECONDS,
        "types": types,
        "custom": [
            {"name": f.name, "table": f.table, "expr": f.checked().sql(dialect="duckdb")}
            for f in custom
        ],
    }


def _write_feature_rows(
    store: Store,
    sql: str,
    run_id: str,
    types: dict[str, str],
    *,
    computed: pa.Table | None = None,
) -> pd.DataFrame:
    """Insert the rows of feature query ``sql`` as run ``run_id`` (in the caller's
    transaction) and return them (``user_id`` then the features, as the store gives them).

    Rows ``computed`` elsewhere (Spark) are appended as they are. Where the engine is the
    store (DuckDB) the rows are computed once into a staged table, inserted from it and read
    back from it; otherwise the store computes and inserts them in one statement and they
    are read back from ``features``.
    """
    if computed is not None:
        run = pa.array([run_id] * computed.num_rows, pa.string())
        store.insert("features", computed.append_column("run_id", run))
        return computed.to_pandas()
    names = ", ".join(_q(n) for n in types)
    if store.capabilities.engine_is_store:
        with store.staging() as stage:
            rows = stage.table("features_run", sql)
            stage.execute(
                f"INSERT INTO features (run_id, user_id, {names}) "
                f"SELECT {_lit(run_id)}, user_id, {names} FROM {rows}"
            )
            return stage.query(f"SELECT user_id, {names} FROM {rows}")
    store.execute(
        f"INSERT INTO features (run_id, user_id, {names}) "
        f"SELECT {_lit(run_id)}, user_id, {names} FROM ({sql}) AS f"
    )
    return store.query(f"SELECT user_id, {names} FROM features WHERE run_id = {_lit(run_id)}")


def features_as_of(
    store: Store, as_of: datetime | date, custom: Sequence[CustomFeature] = ()
) -> pd.DataFrame:
    """Every feature of every user as of an instant, computed but not stored.

    For analyses that need the users as they were at a past moment without adding a run
    that later commands would take for the latest one (e.g. the pre-treatment covariates
    of a campaign evaluation).
    """
    custom = check_custom(custom)
    types = feature_columns(custom)
    at = to_utc(as_of)
    try:
        frame = store.query(feature_sql(at, custom))
    except Exception as exc:
        _name_failing_feature(store, custom, at, exc)
        raise
    return _normalize(frame, types)


def load_features(store: Store, run_id: str | None = None) -> pd.DataFrame:
    """The features of a stored run: one row per user, sorted by ``user_id``.

    Parameters
    ----------
    store : segmint.store.Store
        The store holding the runs.
    run_id : str, optional
        The run to load; the most recently created run by default.

    Returns
    -------
    pandas.DataFrame
        ``user_id`` then the run's features, in the run's column order.

    Raises
    ------
    segmint.errors.NotFoundError
        When the store has no feature run (or none with ``run_id``).
    """
    if not _has_runs(store):
        raise NotFoundError(
            f"store {store.location} has no feature runs; compute features first "
            "(segmint.features.compute_features)"
        )
    where: dict[str, Any] = {} if run_id is None else {"run_id": run_id}
    run = store.query(latest_run_sql("feature", columns="run_id, features, params", **where))
    if run.empty:
        if run_id is None:
            raise NotFoundError(f"store {store.location} has no feature runs; compute first")
        known = store.query("SELECT run_id FROM feature_runs ORDER BY created_at DESC LIMIT 5")
        raise NotFoundError(
            f"feature run {run_id!r} not found in {store.location}; latest runs: "
            + ", ".join(known["run_id"].astype(str))
        )
    found = str(run.iat[0, 0])
    names_in_order: list[str] = json.loads(str(run.iat[0, 1]))
    stored_types: dict[str, str] = json.loads(str(run.iat[0, 2]))["types"]
    types = {name: stored_types[name] for name in names_in_order}
    names = ", ".join(_q(n) for n in types)
    data = store.query(f"SELECT user_id, {names} FROM features WHERE run_id = {_lit(found)}")
    return _normalize(data, types)


def category_shares(store: Store, *, as_of: datetime | date | None = None) -> pd.DataFrame:
    """Completed item spend per user and category, with each category's share.

    Parameters
    ----------
    store : segmint.store.Store
        The store to compute in.
    as_of : datetime or date, optional
        Only orders strictly before this instant count; :func:`default_as_of` by default.

    Returns
    -------
    pandas.DataFrame
        Long form: ``user_id``, ``category`` (``'unknown'`` for items without one),
        ``spend`` (sum of quantity * unit_price, falling back to the item's price) and
        ``share`` (spend / the user's total), sorted by user, then spend descending.
    """
    at = default_as_of(store) if as_of is None else to_utc(as_of)
    frame = store.query(category_shares_sql(at))
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype("str"),
            "category": frame["category"].astype("str"),
            "spend": pd.to_numeric(frame["spend"]).astype("float64"),
            "share": pd.to_numeric(frame["share"]).astype("float64"),
        }
    )
