"""Implicit feedback: a user x item matrix built from order lines and item events.

The aggregation runs in the store (one query, DuckDB dialect, transpiled for PostgreSQL);
Python only turns the aggregated triples into a CSR matrix with vectorised numpy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from segmint._time import to_utc
from segmint.errors import ConfigError
from segmint.features import default_as_of
from segmint.segments import load_run
from segmint.store import Store, completed
from segmint.store import lit as _lit

__all__ = ["DEFAULT_WEIGHTS", "Interactions", "build_interactions", "purchases_between"]

log = logging.getLogger(__name__)

#: Default interaction weights: ``purchase`` is a completed order line (times its
#: quantity scaling), every other key is an event name with an ``item_id``.
DEFAULT_WEIGHTS: dict[str, float] = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}

QuantityScaling = Literal["linear", "log", "none"]


def _ts(value: datetime) -> str:
    return f"CAST('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}+00' AS TIMESTAMPTZ)"


def _as_utc(value: datetime | date | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:  # ISO 8601 only: pandas would read "June" as June 1 of this year
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{value!r} is not a date or timestamp; use YYYY-MM-DD or an ISO timestamp"
            ) from None
    return to_utc(value)


@dataclass(frozen=True, eq=False)
class Interactions:
    """Implicit feedback of users on items, as sparse matrices with their id axes.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix
        ``n_users x n_items`` float32 interaction strengths (weighted purchases and events,
        optionally decayed by recency). Rows follow ``user_ids``, columns ``item_ids``.
    purchases : scipy.sparse.csr_matrix
        Same shape: units bought in completed orders (the business filters use it).
    user_ids : numpy.ndarray
        Sorted user ids (str) of the users with at least one interaction.
    item_ids : numpy.ndarray
        Sorted item ids (str): every catalogue item and every item interacted with.
    items : pandas.DataFrame
        The catalogue aligned with ``item_ids``: ``item_id``, ``title``, ``category``,
        ``price``, ``in_stock``, ``attributes`` (missing values for unknown items).
    segments : pandas.Series
        Segment name per user id (any user of the segmentation run, also users without
        interactions); empty when no segmentation was given.
    segmentation : str or None
        The segmentation run the segments come from.
    before : datetime or None
        Only interactions strictly before this instant were used.
    as_of : datetime
        Reference instant of the recency decay.
    params : dict
        Weights and scaling used, for the record.
    """

    matrix: Any
    purchases: Any
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame = field(repr=False)
    segments: pd.Series = field(repr=False)
    segmentation: str | None = None
    before: datetime | None = None
    as_of: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items (columns)."""
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        """Number of stored (user, item) pairs."""
        return int(self.matrix.nnz)

    def user_index(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each user id, ``-1`` for users without interactions."""
        return _lookup(self.user_ids, user_ids)

    def item_index(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Column of each item id, ``-1`` for unknown items."""
        return _lookup(self.item_ids, item_ids)

    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        *,
        user_ids: Sequence[str] | np.ndarray | None = None,
        item_ids: Sequence[str] | np.ndarray | None = None,
        purchases: Any = None,
        items: pd.DataFrame | None = None,
        segments: pd.Series | None = None,
    ) -> Interactions:
        """Wrap an existing user x item matrix (tests, benchmarks, data from elsewhere).

        Parameters
        ----------
        matrix : scipy sparse matrix
            ``n_users x n_items`` interaction strengths.
        user_ids, item_ids : sequence of str, optional
            Sorted ids of the axes; ``u0000001``-style ids by default.
        purchases : scipy sparse matrix, optional
            Units bought; ``matrix`` itself by default (everything counts as bought).
        items : pandas.DataFrame, optional
            Catalogue aligned with ``item_ids`` (see the class attributes); missing columns
            are filled as unknown (``item_id`` from ``item_ids``, in stock, no price).
        segments : pandas.Series, optional
            Segment per user id.

        Returns
        -------
        Interactions
        """
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        n_u, n_i = m.shape
        uids = _default_ids("u", n_u) if user_ids is None else np.asarray(user_ids, dtype=object)
        iids = _default_ids("i", n_i) if item_ids is None else np.asarray(item_ids, dtype=object)
        if uids.size != n_u or iids.size != n_i:
            raise ConfigError(
                f"ids do not match the matrix: {uids.size} user ids and {iids.size} item ids "
                f"for a {n_u} x {n_i} matrix"
            )
        if not (_is_sorted(uids) and _is_sorted(iids)):
            raise ConfigError("user_ids and item_ids must be sorted and unique")
        p = m if purchases is None else sp.csr_matrix(purchases, dtype=np.float32)
        p.sort_indices()
        cat = _empty_catalogue(iids)
        if items is not None:  # columns it lacks get the "unknown" default (in stock, no price)
            given = items.reset_index(drop=True)
            cat = given.assign(**{c: cat[c] for c in cat.columns if c not in given.columns})
        return cls(
            matrix=m,
            purchases=p,
            user_ids=uids,
            item_ids=iids,
            items=cat,
            segments=pd.Series(dtype=object) if segments is None else segments,
        )


def _default_ids(prefix: str, n: int) -> np.ndarray:
    width = max(7, len(str(n)))
    return np.asarray([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))


def _lookup(sorted_ids: np.ndarray, wanted: Sequence[str] | np.ndarray) -> np.ndarray:
    w = np.asarray(wanted, dtype=object)
    if sorted_ids.size == 0:
        return np.full(w.size, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, w)
    pos = np.clip(pos, 0, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == w, pos, -1).astype(np.int64)


def _empty_catalogue(item_ids: np.ndarray) -> pd.DataFrame:
    n = item_ids.size
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "title": pd.Series([None] * n, dtype=object),
            "category": pd.Series([None] * n, dtype=object),
            "price": np.full(n, np.nan),
            "in_stock": np.ones(n, dtype=bool),
            "attributes": pd.Series([None] * n, dtype=object),
        }
    )


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, w in weights.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"interaction weight keys must be event names, got {name!r}")
        value = float(w)
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"interaction weight {name!r} must be >= 0, got {w!r}")
        if value > 0:
            out[name] = value
    if not out:
        raise ConfigError(
            "every interaction weight is 0; give 'purchase' or an event a positive weight"
        )
    return out


def _time_filter(col: str, since: datetime | None, before: datetime | None) -> str:
    parts = []
    if since is not None:
        parts.append(f"{col} >= {_ts(since)}")
    if before is not None:
        parts.append(f"{col} < {_ts(before)}")
    return (" AND " + " AND ".join(parts)) if parts else ""


def interactions_sql(
    *,
    weights: Mapping[str, float],
    quantity: QuantityScaling,
    half_life_days: float | None,
    as_of: datetime,
    since: datetime | None,
    before: datetime | None,
) -> str:
    """The aggregation query: one row per (user_id, item_id) with ``weight`` and ``bought``."""

    def decay(col: str) -> str:
        if half_life_days is None:
            return ""
        seconds = 86_400.0 * half_life_days
        return f" * power(0.5, (epoch({_ts(as_of)}) - epoch({col})) / {seconds!r})"

    purchase_w = weights.get("purchase", 0.0)
    qty = {"linear": "oi.quantity", "log": "ln(1 + oi.quantity)", "none": "1.0"}[quantity]
    parts = [
        f"""SELECT o.user_id AS user_id, oi.item_id AS item_id,
               CAST({purchase_w!r} AS DOUBLE) * {qty}{decay("o.ts")} AS weight,
               CAST(oi.quantity AS DOUBLE) AS bought
        FROM order_items oi JOIN orders o ON o.order_id = oi.order_id
        WHERE {completed("o")} AND oi.quantity > 0
              {_time_filter("o.ts", since, before)}"""
    ]
    events = {k: v for k, v in weights.items() if k != "purchase"}
    if events:
        case = " ".join(f"WHEN {_lit(k)} THEN {v!r}" for k, v in events.items())
        names = ", ".join(_lit(k) for k in events)
        parts.append(
            f"""SELECT user_id, item_id, (CASE event {case} END){decay("ts")} AS weight,
                   CAST(0 AS DOUBLE) AS bought
            FROM events
            WHERE user_id IS NOT NULL AND item_id IS NOT NULL AND event IN ({names})
                  {_time_filter("ts", since, before)}"""
        )
    union = "\nUNION ALL\n".join(parts)
    return (
        "SELECT user_id, item_id, sum(weight) AS weight, sum(bought) AS bought\n"
        f"FROM ({union}) AS t\nGROUP BY user_id, item_id"
    )


def _fetch(store: Store, sql: str) -> pa.Table:
    """A query's result as an Arrow table (zero-copy from DuckDB)."""
    return store.arrow(sql)


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column: (codes into sorted uniques, sorted uniques)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    enc = pc.dictionary_encode(pc.cast(arr, pa.string()))
    dictionary = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    order = np.argsort(dictionary, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    return codes, dictionary[order]


def load_catalogue(store: Store) -> pd.DataFrame:
    """The ``items`` table: item_id, title, category, price, in_stock, attributes."""
    frame = store.query(
        "SELECT item_id, title, category, price, in_stock, CAST(attributes AS VARCHAR) "
        "AS attributes FROM items ORDER BY item_id"
    )
    return pd.DataFrame(
        {
            "item_id": frame["item_id"].astype(str).to_numpy(dtype=object),
            "title": frame["title"].astype(object).to_numpy(),
            "category": frame["category"].astype(object).to_numpy(),
            "price": pd.to_numeric(frame["price"]).astype("float64").to_numpy(),
            "in_stock": frame["in_stock"].astype("boolean").fillna(True).to_numpy(dtype=bool),
            "attributes": frame["attributes"].astype(object).to_numpy(),
        }
    )


def load_segments(store: Store, segmentation: str) -> pd.Series:
    """Segment per user id from the latest run of ``segmentation`` (or a run id)."""
    frame = load_run(store, segmentation).assignments
    s = pd.Series(
        frame["segment"].astype(str).to_numpy(dtype=object),
        index=frame["user_id"].astype(str).to_numpy(dtype=object),
        name="segment",
    )
    return s.sort_index()


# long on purpose: a 52-line docstring; the ~50-line body checks the options, runs one
# query and assembles the matrices from it in named steps (_item_axis, _matrices, _items_of).
def build_interactions(
    store: Store,
    *,
    as_of: datetime | date | str | None = None,
    before: datetime | date | str | None = None,
    since: datetime | date | str | None = None,
    weights: Mapping[str, float] | None = None,
    quantity: QuantityScaling = "linear",
    half_life_days: float | None = None,
    segmentation: str | None = None,
    binary: bool = False,
) -> Interactions:
    """Aggregate order lines and item events into a user x item interaction matrix.

    A completed order line counts ``weights['purchase']`` times its quantity (scaled by
    ``quantity``); an event with an ``item_id`` counts the weight of its event name; a
    (user, item) pair sums them all. Everything else (cancelled or refunded orders,
    events without an item, events whose name has no weight) is ignored. With
    ``half_life_days`` each interaction is decayed by ``0.5 ** (age_days /
    half_life_days)`` relative to ``as_of``. With ``binary`` every pair that has any
    weighted interaction counts 1, whatever its quantities, repetitions or event kinds.

    Parameters
    ----------
    store : segmint.store.Store
        The store holding ``orders``, ``order_items``, ``events`` and ``items``.
    as_of : datetime, date or str, optional
        Reference instant of the recency decay; ``before`` if given, else the day after
        the newest order or event.
    before : datetime, date or str, optional
        Only interactions strictly before this instant (the training side of a time split).
    since : datetime, date or str, optional
        Only interactions at or after this instant.
    weights : mapping of str to float, optional
        Event name -> weight, ``purchase`` for order lines; :data:`DEFAULT_WEIGHTS`
        (product_view 1 < add_to_cart 3 < purchase 5) by default. Zero drops a kind.
    quantity : {'linear', 'log', 'none'}, default 'linear'
        How the quantity of a line scales its weight: ``quantity``, ``ln(1 + quantity)``
        (wholesale data with huge quantities), or not at all.
    half_life_days : float, optional
        Half-life of the recency decay in days; no decay by default.
    segmentation : str, optional
        Segmentation name (its latest run) or run id whose segments are attached, for
        segment popularity, price bands and cold-start fallbacks.
    binary : bool, default False
        Count each (user, item) pair with a positive weight as 1 (an order line of 12
        units bought three times weighs what one view weighs; give the events a weight of
        0 to count purchases only). ``purchases`` (units bought) is unchanged.

    Returns
    -------
    Interactions
        The matrices, sorted id axes, catalogue and segments.

    Raises
    ------
    segmint.errors.ConfigError
        For a negative weight, a non-positive half-life, an unknown quantity scaling, or
        a half-life with ``binary`` (a decay cannot change a weight of 1).
    segmint.errors.NotFoundError
        When ``segmentation`` has no stored run.
    """
    started = time.perf_counter()
    w = _check_weights(DEFAULT_WEIGHTS if weights is None else weights)
    _check_scaling(quantity, half_life_days, binary)
    before_ts = _as_utc(before)
    since_ts = _as_utc(since)
    ref = _as_utc(as_of) or before_ts or default_as_of(store)
    sql = interactions_sql(
        weights=w,
        quantity=quantity,
        half_life_days=half_life_days,
        as_of=ref,
        since=since_ts,
        before=before_ts,
    )
    table = _fetch(store, sql)
    catalogue = load_catalogue(store)
    u_codes, user_ids = _codes(table.column("user_id"))
    item_ids = _item_axis(table, catalogue)
    i_codes = _lookup(item_ids, table.column("item_id").to_numpy())
    matrix, purchases = _matrices(
        table, u_codes, i_codes, (user_ids.size, item_ids.size), binary=binary
    )
    items = _items_of(item_ids, catalogue)
    segments = load_segments(store, segmentation) if segmentation else pd.Series(dtype=object)
    result = Interactions(
        matrix=matrix,
        purchases=purchases,
        user_ids=user_ids,
        item_ids=item_ids,
        items=items,
        segments=segments,
        segmentation=segmentation,
        before=before_ts,
        as_of=ref,
        params={
            "weights": w,
            "quantity": quantity,
            "half_life_days": half_life_days,
            "binary": binary,
            "since": since_ts.isoformat() if since_ts else None,
            "before": before_ts.isoformat() if before_ts else None,
            "as_of": ref.isoformat(),
            "segmentation": segmentation,
        },
    )
    log.debug(
        "interactions: %d users x %d items, %d pairs in %.2fs",
        result.n_users,
        result.n_items,
        result.nnz,
        time.perf_counter() - started,
    )
    return result


def _check_scaling(quantity: str, half_life_days: float | None, binary: bool) -> None:
    """Refuse an unknown quantity scaling, a non-positive half-life, or a half-life with
    binary interactions."""
    if quantity not in ("linear", "log", "none"):
        raise ConfigError(f"quantity must be 'linear', 'log' or 'none', got {quantity!r}")
    if half_life_days is not None and not half_life_days > 0:
        raise ConfigError(f"half_life_days must be positive, got {half_life_days!r}")
    if binary and half_life_days is not None:
        raise ConfigError(
            "binary interactions count 1 each, so a recency decay (half_life_days) cannot "
            "change them; drop half_life_days or binary"
        )


def _item_axis(table: pa.Table, catalogue: pd.DataFrame) -> np.ndarray:
    """The sorted item axis: the catalogue plus any item interacted with but missing
    from it."""
    interacted = pa.array(pc.unique(table.column("item_id").combine_chunks()), pa.string())
    all_items = pa.concat_arrays(
        [pa.array(catalogue["item_id"].to_numpy(dtype=object), pa.string()), interacted]
    )
    item_ids = np.asarray(pc.unique(all_items).to_numpy(zero_copy_only=False), dtype=object)
    return np.sort(item_ids)


def _matrices(
    table: pa.Table,
    u_codes: np.ndarray,
    i_codes: np.ndarray,
    shape: tuple[int, int],
    *,
    binary: bool,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The weight matrix (1 per weighted pair when ``binary``) and the units-bought
    matrix, as sorted CSR matrices without stored zeros."""
    weight = table.column("weight").to_numpy().astype(np.float32)
    bought = table.column("bought").to_numpy().astype(np.float32)
    if binary:
        weight = (weight > 0).astype(np.float32)
    matrix = sp.csr_matrix((weight, (u_codes, i_codes)), shape=shape, dtype=np.float32)
    if binary:
        matrix.eliminate_zeros()
    purchases = sp.csr_matrix((bought, (u_codes, i_codes)), shape=shape, dtype=np.float32)
    purchases.eliminate_zeros()
    matrix.sort_indices()
    purchases.sort_indices()
    return matrix, purchases


def _items_of(item_ids: np.ndarray, catalogue: pd.DataFrame) -> pd.DataFrame:
    """The catalogue on the item axis (items missing from it get empty values)."""
    items = _empty_catalogue(item_ids)
    pos = _lookup(item_ids, catalogue["item_id"].to_numpy(dtype=object))
    for col in ("title", "category", "price", "in_stock", "attributes"):
        values = items[col].to_numpy(copy=True)
        values[pos] = catalogue[col].to_numpy()
        items[col] = values
    return items


def purchases_between(
    store: Store,
    *,
    since: datetime | date | str,
    before: datetime | date | str | None = None,
) -> pd.DataFrame:
    """Distinct (user_id, item_id) bought in completed orders within ``[since, before)``.

    Parameters
    ----------
    store : segmint.store.Store
        The store to read.
    since : datetime, date or str
        Start of the window (inclusive).
    before : datetime, date or str, optional
        End of the window (exclusive); open-ended by default.

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``item_id``, ``quantity`` (units bought in the window).
    """
    since_ts = _as_utc(since)
    before_ts = _as_utc(before)
    frame = store.query(
        "SELECT o.user_id AS user_id, oi.item_id AS item_id, sum(oi.quantity) AS quantity "
        "FROM order_items oi JOIN orders o ON o.order_id = oi.order_id "
        f"WHERE {completed('o')} AND oi.quantity > 0"
        f"{_time_filter('o.ts', since_ts, before_ts)} GROUP BY o.user_id, oi.item_id"
    )
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str).to_numpy(dtype=object),
            "item_id": frame["item_id"].astype(str).to_numpy(dtype=object),
            "quantity": pd.to_numeric(frame["quantity"]).astype("float64").to_numpy(),
        }
    )
