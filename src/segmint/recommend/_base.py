"""The one recommender interface, business filters, cold-start fallbacks and reasons.

Every model implements three hooks on top of :class:`Recommender`:

* ``_fit(interactions)`` learns its state;
* ``_scores(rows)`` returns a dense ``len(rows) x n_items`` float32 batch of scores for
  known users (``-inf`` where the model has no evidence);
* ``_explain(rows, items)`` says, per recommended item, why (a reason kind and the
  history item or category it refers to).

The base class does the rest, vectorised over a batch of users: business filters set
scores to ``-inf``; top-n selection (with the per-category cap); users the model cannot
score, or cannot fill n slots for, fall back to popularity in their segment and then to
global popularity; reasons become strings in Arrow.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import ThreadpoolController

from segmint.errors import ConfigError, NotFittedError, NotFoundError
from segmint.recommend._interactions import Interactions
from segmint.recommend._select import PairLookup, top_n_capped

__all__ = ["Filters", "NotFittedError", "Recommender", "REASON_TEMPLATES"]

log = logging.getLogger(__name__)

# reason kinds
BOUGHT, VIEWED, SEGMENT, POPULAR, CATEGORY, PROFILE = range(6)
#: Reason templates by kind: prefix, then the referenced text, then suffix.
REASON_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("because you bought ", ""),
    ("because you viewed ", ""),
    ("popular in your segment ", ""),
    ("popular now", ""),
    ("similar to items in ", " you like"),
    ("similar to items you like", ""),
)
# where a slot's item came from
PRIMARY, FROM_SEGMENT, FROM_GLOBAL = 0, 1, 2
HISTORY_FOR_REASONS = 10


_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread() -> Any:
    """A context holding BLAS at one thread (finding the libraries once per process)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class Filters:
    """Business rules applied to every list, vectorised over a batch of users.

    Parameters
    ----------
    exclude_purchased : bool, default True
        Drop items the user already bought (completed orders in the training data)...
    repeat_purchase_categories : tuple of str, default ()
        ...unless the item's category is one of these (consumables bought again).
    in_stock_only : bool, default True
        Only items with ``items.in_stock`` true (items without the flag count as in stock).
    price_bands : mapping of str to (float or None, float or None), default {}
        Segment name -> (min price, max price) for users of that segment; ``None`` is
        open. Items without a price pass. Users of other segments are not limited.
    category_cap : int, optional
        At most this many items of one category in a user's list (diversity).
    """

    exclude_purchased: bool = True
    repeat_purchase_categories: tuple[str, ...] = ()
    in_stock_only: bool = True
    price_bands: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    category_cap: int | None = None

    def __post_init__(self) -> None:
        if self.category_cap is not None and self.category_cap < 1:
            raise ConfigError(f"category_cap must be at least 1, got {self.category_cap}")
        for seg, (lo, hi) in self.price_bands.items():
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(f"price band of segment {seg!r}: min {lo} is above max {hi}")

    def as_dict(self) -> dict[str, Any]:
        """The filters as plain JSON-able values."""
        return {
            "exclude_purchased": self.exclude_purchased,
            "repeat_purchase_categories": list(self.repeat_purchase_categories),
            "in_stock_only": self.in_stock_only,
            "price_bands": {k: list(v) for k, v in self.price_bands.items()},
            "category_cap": self.category_cap,
        }


@dataclass
class _Batch:
    """Top-n of one batch of users as arrays (``b x n``)."""

    users: np.ndarray  # positions into the requested ids
    items: np.ndarray  # item index, -1 for an empty slot
    scores: np.ndarray
    source: np.ndarray  # PRIMARY / FROM_SEGMENT / FROM_GLOBAL
    kind: np.ndarray  # reason kind
    ref: np.ndarray  # item index (BOUGHT/VIEWED/CATEGORY) or segment code (SEGMENT)


def n_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def history_top(matrix: Any, rows: np.ndarray, h: int) -> np.ndarray:
    """The ``h`` strongest items of each row of a CSR matrix: ``len(rows) x h``, -1 padded."""
    sub = matrix[rows]
    counts = np.diff(sub.indptr)
    r = np.repeat(np.arange(rows.size), counts)
    order = np.lexsort((sub.indices, -sub.data, r))
    r, c = r[order], sub.indices[order].astype(np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.arange(r.size) - np.repeat(starts, counts)
    out = np.full((rows.size, h), -1, dtype=np.int64)
    take = pos < h
    out[r[take], pos[take]] = c[take]
    return out


class Recommender(ABC):
    """Base class of every recommender: fit, recommend, similar_items.

    Subclasses store their parameters in ``__init__`` untouched; :meth:`fit` validates,
    learns and returns ``self``; fitted state ends in ``_``.
    """

    name: ClassVar[str] = "base"
    #: False for models whose scores are the fallback itself (the popularity models).
    personalized: ClassVar[bool] = True
    #: True when item similarity needs the item to have interactions.
    similar_needs_history: ClassVar[bool] = True

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, interactions: Interactions) -> Self:
        """Learn from a user x item interaction matrix.

        Parameters
        ----------
        interactions : Interactions
            From :func:`build_interactions` or :meth:`Interactions.from_matrix`.

        Returns
        -------
        self
        """
        if not isinstance(interactions, Interactions):
            raise TypeError(
                f"fit expects segmint.recommend.Interactions, got {type(interactions).__name__}"
            )
        if interactions.n_items == 0:
            raise ConfigError("cannot fit a recommender without items; load items or orders")
        started = time.perf_counter()
        self.interactions_ = interactions
        m = interactions.matrix
        binary = (m > 0).astype(np.float32)
        self.popularity_ = np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)
        seg = interactions.segments
        names = np.asarray(sorted(set(seg.to_numpy(dtype=object))), dtype=object)
        self.segment_names_ = names
        self._seg_index = pd.Index(seg.index)
        self._seg_codes = pd.Index(names).get_indexer(seg.to_numpy(dtype=object))
        if names.size and interactions.n_users:
            row_seg = self.segment_codes(interactions.user_ids)
            known = row_seg >= 0
            onehot = np.zeros((names.size, interactions.n_users), dtype=np.float32)
            onehot[row_seg[known], np.flatnonzero(known)] = 1.0
            self.segment_popularity_ = np.asarray(binary.T.dot(onehot.T).T, dtype=np.float64)
        else:
            self.segment_popularity_ = np.zeros((0, interactions.n_items))
        cats = interactions.items["category"].to_numpy(dtype=object)
        has = pd.notna(cats)
        self.category_names_ = np.asarray(sorted(set(cats[has])), dtype=object)
        codes = np.full(cats.size, -1, dtype=np.int64)
        codes[has] = pd.Index(self.category_names_).get_indexer(cats[has])
        self.item_categories_ = codes
        self._purchased = PairLookup(interactions.purchases)
        items = interactions.items
        self._out_of_stock = np.flatnonzero(~items["in_stock"].to_numpy(dtype=bool))
        self._price = items["price"].to_numpy(dtype=np.float64)
        self._category_obj = items["category"].to_numpy(dtype=object)
        self._text_arr = self._texts()
        self._item_ids_arr = pa.array(interactions.item_ids, pa.string())
        with one_blas_thread():
            self._fit(interactions)
        self.fit_seconds_ = time.perf_counter() - started
        log.debug("%s fitted in %.2fs", self.name, self.fit_seconds_)
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions) -> None:
        """Learn the model from ``interactions`` (every model implements it)."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "interactions_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(interactions) first"
            )

    # -- hooks --------------------------------------------------------------------------------
    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores (users x items) for personalised models; the popularity models
        rank without it, so it is an optional hook rather than an abstract method."""
        raise TypeError(f"{type(self).__name__} has no per-user score matrix")

    def _explain(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reason kind and reference per slot (default: "popular now")."""
        return np.full(items.shape, POPULAR, dtype=np.int8), np.full(items.shape, -1)

    def _similar(self, item: int) -> np.ndarray | None:
        """Similarity of every item to ``item`` (-inf: no evidence), or None if unknown."""
        return None

    # -- helpers for subclasses ---------------------------------------------------------------
    def segment_codes(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Segment code per user id (index into ``segment_names_``), -1 without a segment."""
        self._check_fitted()
        ids = np.asarray(user_ids, dtype=object)
        if self._seg_codes.size == 0:
            return np.full(ids.size, -1, dtype=np.int64)
        pos = self._seg_index.get_indexer(ids)
        return np.where(pos >= 0, self._seg_codes[np.maximum(pos, 0)], -1)

    def _explain_by_similarity(
        self, rows: np.ndarray, items: np.ndarray, similarity: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reasons "because you bought/viewed X", X the history item most like each item.

        ``similarity(hist, items)`` gets ``b x h`` and ``b x n`` item indices and returns
        ``b x h x n`` similarities.
        """
        hist = history_top(self.interactions_.matrix, rows, HISTORY_FOR_REASONS)
        sims = np.asarray(similarity(hist, items), dtype=np.float64)
        # padding, and the recommended item itself, explain nothing
        useless = (hist < 0)[:, :, None] | (hist[:, :, None] == items[:, None, :])
        sims[useless] = -np.inf
        best = np.argmax(sims, axis=1)  # b x n
        ref = np.take_along_axis(hist, best, axis=1)
        ref[~np.isfinite(np.take_along_axis(sims, best[:, None, :], axis=1)[:, 0, :])] = -1
        bought = self._purchased(np.repeat(rows[:, None], items.shape[1], axis=1), ref) > 0
        kind = np.where(bought, BOUGHT, VIEWED).astype(np.int8)
        kind[ref < 0] = POPULAR
        return kind, ref

    # -- filters ------------------------------------------------------------------------------
    def _apply_filters(
        self, scores: np.ndarray, rows: np.ndarray, seg: np.ndarray, filters: Filters
    ) -> None:
        """Set filtered-out items to -inf in place (``rows`` -1 for unknown users)."""
        it = self.interactions_
        if filters.in_stock_only and self._out_of_stock.size:
            scores[:, self._out_of_stock] = -np.inf
        if filters.price_bands and self.segment_names_.size:
            n_seg = self.segment_names_.size
            lo = np.full(n_seg + 1, -np.inf)
            hi = np.full(n_seg + 1, np.inf)
            code = pd.Index(self.segment_names_)
            for name, (a, b) in filters.price_bands.items():  # loops over configured bands
                k = code.get_indexer([name])[0]
                if k >= 0:
                    lo[k] = -np.inf if a is None else a
                    hi[k] = np.inf if b is None else b
            s = np.where(seg >= 0, seg, n_seg)
            price = self._price
            blocked = (price[None, :] < lo[s][:, None]) | (price[None, :] > hi[s][:, None])
            scores[blocked] = -np.inf
        if filters.exclude_purchased:
            warm = np.flatnonzero(rows >= 0)
            if warm.size:
                sub = it.purchases[rows[warm]]
                r = np.repeat(warm, np.diff(sub.indptr))
                c = sub.indices
                if filters.repeat_purchase_categories:
                    repeat = np.isin(
                        self._category_obj,
                        np.asarray(filters.repeat_purchase_categories, dtype=object),
                    )
                    keep = ~repeat[c]
                    r, c = r[keep], c[keep]
                scores[r, c] = -np.inf

    # -- fallbacks ----------------------------------------------------------------------------
    def _fallback_scores(self, seg: np.ndarray) -> np.ndarray:
        """Segment popularity in (1, 2], then global popularity in [0, 1), per user row."""
        glob = self.popularity_ / max(float(self.popularity_.max(initial=0.0)), 1.0)
        out = np.repeat((0.999 * glob)[None, :], seg.size, axis=0)
        has = seg >= 0
        if has.any() and self.segment_popularity_.shape[0]:
            sp_rows = self.segment_popularity_[seg[has]]
            top = np.maximum(sp_rows.max(axis=1, keepdims=True), 1.0)
            sub = out[has]
            sub[sp_rows > 0] = 1.0 + (sp_rows / top)[sp_rows > 0]
            out[has] = sub
        out[:, self.popularity_ <= 0] = -np.inf  # never recommend what nobody touched
        return out

    # -- recommending -------------------------------------------------------------------------
    def _batch(
        self,
        ids: np.ndarray,
        n: int,
        filters: Filters,
        explain: bool,
        impersonal: np.ndarray | None = None,
    ) -> _Batch:
        it = self.interactions_
        b = ids.size
        rows = it.user_index(ids)
        seg = self.segment_codes(ids)
        if impersonal is not None and impersonal.any():  # no personalization: as unknown
            rows = np.where(impersonal, -1, rows)
            seg = np.where(impersonal, -1, seg)
        cats = self.item_categories_
        cap = filters.category_cap
        items = np.full((b, n), -1, dtype=np.int64)
        scores = np.zeros((b, n), dtype=np.float64)
        source = np.full((b, n), PRIMARY, dtype=np.int8)
        warm = np.flatnonzero(rows >= 0) if self.personalized else np.zeros(0, dtype=np.int64)
        primary = None
        if warm.size:
            primary = self._scores(rows[warm])
            self._apply_filters(primary, rows[warm], seg[warm], filters)
            idx, val = top_n_capped(primary, n, cats, cap)
            items[warm] = idx
            scores[warm] = val
            short = (idx < 0).any(axis=1)
            need = np.sort(np.r_[np.flatnonzero(rows < 0), warm[short]])
        else:
            need = np.arange(b)
        if need.size:
            comb = self._fallback_scores(seg[need])
            self._apply_filters(comb, rows[need], seg[need], filters)
            if primary is not None:
                w_pos = np.searchsorted(warm, need)
                is_w = (w_pos < warm.size) & (warm[np.minimum(w_pos, warm.size - 1)] == need)
                if is_w.any():
                    p = primary[w_pos[is_w]].astype(np.float64)
                    fin = np.isfinite(p)
                    lo = np.where(fin, p, np.inf).min(axis=1, keepdims=True)
                    hi = np.where(fin, p, -np.inf).max(axis=1, keepdims=True)
                    norm = (p - lo) / np.maximum(hi - lo, 1e-12)
                    sub = comb[is_w]
                    sub[fin] = 3.0 + norm[fin]
                    comb[is_w] = sub
            idx, val = top_n_capped(comb, n, cats, cap)
            src = np.where(val >= 3.0, PRIMARY, np.where(val > 1.0, FROM_SEGMENT, FROM_GLOBAL))
            raw = np.where(val > 1.0, val - 1.0, val / 0.999)
            if primary is not None and (src == PRIMARY).any():
                w_pos = np.searchsorted(warm, need)
                r_idx = np.repeat(np.minimum(w_pos, warm.size - 1)[:, None], n, axis=1)
                prim_val = primary[r_idx, np.maximum(idx, 0)]
                raw = np.where(src == PRIMARY, prim_val, raw)
            items[need] = idx
            scores[need] = np.where(idx >= 0, raw, 0.0)
            source[need] = src.astype(np.int8)
        kind = np.full((b, n), POPULAR, dtype=np.int8)
        ref = np.full((b, n), -1, dtype=np.int64)
        if explain:
            from_seg = source == FROM_SEGMENT
            kind[from_seg] = SEGMENT
            ref[from_seg] = np.broadcast_to(seg[:, None], (b, n))[from_seg]
            prim_rows = np.flatnonzero(((source == PRIMARY) & (items >= 0)).any(axis=1))
            if self.personalized and prim_rows.size:
                k2, r2 = self._explain(rows[prim_rows], np.maximum(items[prim_rows], 0))
                mask = source[prim_rows] == PRIMARY
                kk, rr = kind[prim_rows], ref[prim_rows]
                kk[mask] = k2[mask]
                rr[mask] = r2[mask]
                kind[prim_rows], ref[prim_rows] = kk, rr
        scores[items < 0] = 0.0
        return _Batch(np.arange(b), items, scores, source, kind, ref)

    def _texts(self) -> pa.Array:
        """Reference texts: item titles, then segment names, then item categories."""
        it = self.interactions_
        titles = it.items["title"].astype(object)
        titles = titles.where(pd.notna(titles), pd.Series(it.item_ids, dtype=object))
        cats = it.items["category"].astype(object)
        cats = cats.where(pd.notna(cats), "")
        arr = pa.concat_arrays(
            [
                pa.array(titles.to_numpy(dtype=object), pa.string()),
                pa.array(self.segment_names_, pa.string()),
                pa.array(cats.to_numpy(dtype=object), pa.string()),
                pa.array([""], pa.string()),
            ]
        )
        return arr

    def _to_arrow(self, ids: np.ndarray, batch: _Batch, texts: pa.Array) -> pa.Table:
        n_items, n_seg = self.interactions_.n_items, self.segment_names_.size
        ok = batch.items >= 0
        r, c = np.nonzero(ok)
        item = batch.items[r, c]
        kind = batch.kind[r, c].astype(np.int64)
        ref = batch.ref[r, c]
        empty = 2 * n_items + n_seg
        text_idx = np.full(r.size, empty, dtype=np.int64)
        by_item = (kind == BOUGHT) | (kind == VIEWED)
        text_idx[by_item] = ref[by_item]
        is_seg = kind == SEGMENT
        text_idx[is_seg] = n_items + ref[is_seg]
        is_cat = kind == CATEGORY
        text_idx[is_cat] = n_items + n_seg + item[is_cat]
        # no category to name: say "similar to items you like"
        no_cat = is_cat & (self.item_categories_[item] < 0)
        kind[no_cat] = PROFILE
        text_idx[no_cat] = empty
        prefix = pa.array([t[0] for t in REASON_TEMPLATES], pa.string())
        suffix = pa.array([t[1] for t in REASON_TEMPLATES], pa.string())
        kind_arr = pa.array(kind)
        reason = pc.binary_join_element_wise(
            pc.take(prefix, kind_arr),
            pc.take(texts, pa.array(text_idx)),
            pc.take(suffix, kind_arr),
            "",
        )
        names = pa.array([self.name, "segment_popularity", "popularity"], pa.string())
        model = pc.take(names, pa.array(batch.source[r, c].astype(np.int32)))
        item_ids = self._item_ids_arr
        user_ids = pa.array(ids, pa.string())
        return pa.table(
            {
                "user_id": pc.take(user_ids, pa.array(batch.users[r])),
                "item_id": pc.take(item_ids, pa.array(item)),
                "score": pa.array(batch.scores[r, c], pa.float64()),
                "rank": pa.array((c + 1).astype(np.int32)),
                "model": model,
                "reason": reason,
            }
        )

    def _default_batch_size(self) -> int:
        """Users per batch: about 4M scores, in whole sgemm row tiles of 16 users."""
        size = max(16, min(4096, (1 << 22) // max(self.interactions_.n_items, 1)))
        return size - size % 16

    def recommend_batches(
        self,
        user_ids: Sequence[str] | np.ndarray,
        n: int = 10,
        *,
        filters: Filters | None = None,
        batch_size: int | None = None,
        n_jobs: int = 1,
        popular_only: Sequence[str] | np.ndarray | None = None,
    ) -> Iterator[pa.Table]:
        """Top-n lists as Arrow tables, one per batch of users, in the order of ``user_ids``.

        Parameters
        ----------
        user_ids : sequence of str
            Users to recommend for; unknown users get the cold-start fallbacks.
        n : int, default 10
            List length.
        filters : Filters, optional
            Business rules; ``Filters()`` (exclude already bought items, only in-stock
            items) by default.
        batch_size : int, optional
            Users per batch; by default about 4M scores per batch.
        n_jobs : int, default 1
            Worker threads (BLAS is held at one thread per worker).
        popular_only : sequence of str, optional
            Users who get global popularity only, as an unknown user does: neither their
            history nor their segment is used (no ``personalization`` consent).

        Yields
        ------
        pyarrow.Table
            ``user_id, item_id, score, rank, model, reason`` as in :meth:`recommend`.
        """
        self._check_fitted()
        if not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        filters = Filters() if filters is None else filters
        ids = np.asarray(user_ids, dtype=object)
        size = batch_size or self._default_batch_size()
        texts = self._text_arr
        starts = range(0, ids.size, size)
        impersonal = None
        if popular_only is not None and len(popular_only):
            impersonal = np.isin(ids, np.asarray(popular_only, dtype=object))

        def work(at: int) -> pa.Table:
            chunk = ids[at : at + size]
            mask = None if impersonal is None else impersonal[at : at + size]
            return self._to_arrow(chunk, self._batch(chunk, int(n), filters, True, mask), texts)

        with one_blas_thread():
            if n_jobs <= 1 or len(starts) <= 1:
                for at in starts:
                    yield work(at)
            else:
                with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                    # bounded look-ahead so memory stays at a few batches
                    pending: list[Any] = []
                    for at in starts:
                        pending.append(pool.submit(work, at))
                        if len(pending) >= 2 * n_jobs:
                            yield pending.pop(0).result()
                    for f in pending:
                        yield f.result()

    def recommend(
        self,
        user_ids: Sequence[str] | np.ndarray | str,
        n: int = 10,
        *,
        filters: Filters | None = None,
        n_jobs: int = 1,
    ) -> pd.DataFrame:
        """Top-n items for each user, with a score, a rank, the model and a reason.

        Parameters
        ----------
        user_ids : str or sequence of str
            Users to recommend for. Users without training interactions (new users) get
            popularity in their segment, then global popularity.
        n : int, default 10
            List length.
        filters : Filters, optional
            Business rules; ``Filters()`` (exclude already bought items, only in-stock
            items) by default.
        n_jobs : int, default 1
            Worker threads.

        Returns
        -------
        pandas.DataFrame
            ``user_id, item_id, score, rank, model, reason``, by user (in the given order)
            then rank. ``model`` is the model that produced the row (a fallback's name
            where it filled the slot); ``score`` is that model's score. Equal scores are
            ranked by item: the smaller item id (the lower column of the interaction
            matrix) first, in every path (one user, a batch of any size, any model).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        ids = [user_ids] if isinstance(user_ids, str) else user_ids
        tables = list(self.recommend_batches(ids, n, filters=filters, n_jobs=n_jobs))
        if not tables:
            return _empty_frame()
        return pa.concat_tables(tables).to_pandas()

    def recommend_items(
        self,
        user_ids: Sequence[str] | np.ndarray,
        n: int = 10,
        *,
        filters: Filters | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Item indices only (``len(user_ids) x n``, -1 for empty slots), for evaluation.

        The lists are those of :meth:`recommend` (the same tie rule, whatever
        ``batch_size``, the number of users scored at once).
        """
        self._check_fitted()
        filters = Filters() if filters is None else filters
        ids = np.asarray(user_ids, dtype=object)
        size = batch_size or self._default_batch_size()
        out = np.full((ids.size, n), -1, dtype=np.int64)
        with one_blas_thread():
            for at in range(0, ids.size, size):
                out[at : at + size] = self._batch(ids[at : at + size], n, filters, False).items
        return out

    def similar_items(self, item_id: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` items most similar to ``item_id``.

        Items the model knows nothing about (no interactions in training) fall back to
        content similarity (category, price band, title and attribute words).

        Parameters
        ----------
        item_id : str
            The item.
        n : int, default 10
            How many.

        Returns
        -------
        pandas.DataFrame
            ``item_id, score, rank, model``, most similar first; the item itself excluded.

        Raises
        ------
        segmint.errors.NotFoundError
            When the item is in neither the catalogue nor the interactions.
        """
        self._check_fitted()
        idx = int(self.interactions_.item_index([item_id])[0])
        if idx < 0:
            raise NotFoundError(
                f"item {item_id!r} is in neither the catalogue nor the interactions"
            )
        known = self.popularity_[idx] > 0 or not self.similar_needs_history
        sims = self._similar(idx) if known else None
        model = self.name
        if sims is None:
            from segmint.recommend._content import content_similarity

            sims = content_similarity(self.interactions_.items, idx)
            model = "content"
        sims = np.asarray(sims, dtype=np.float64).copy()
        sims[idx] = -np.inf
        top, vals = top_n_capped(sims[None, :], n, self.item_categories_, None)
        ok = top[0] >= 0
        return pd.DataFrame(
            {
                "item_id": self.interactions_.item_ids[top[0][ok]],
                "score": vals[0][ok],
                "rank": np.arange(1, int(ok.sum()) + 1),
                "model": model,
            }
        )

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (for the run record)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "score": pd.Series(dtype="float64"),
            "rank": pd.Series(dtype="int32"),
            "model": pd.Series(dtype=str),
            "reason": pd.Series(dtype=str),
        }
    )
