"""Top-n selection over a dense batch of scores, vectorised over rows.

``-inf`` marks an item that must not be recommended (filtered out, or no evidence).
A full ``argpartition`` over 20,000 items costs ~0.4 ms per row; instead the rows are cut
into blocks, only the n blocks with the largest maxima are searched (see
:func:`_candidates`), and the few scores found there are sorted.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PairLookup", "top_n", "top_n_capped"]


def _candidates(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of the finite scores that may be among a row's top m.

    Rows are cut into blocks of ``width`` items. The m blocks with the largest maxima
    hold every score above the m-th largest block maximum, and at least m scores reach
    that bound; so only those blocks (and the short tail after the last whole block)
    are looked at: about ``2 * sqrt(m * n_items)`` scores per row instead of all. Rows
    whose m-th score ties with the bound are looked at in full (see below).
    """
    b, n_items = scores.shape
    width = int(np.sqrt(n_items / max(m, 1)))
    n_blocks = n_items // max(width, 1)
    if n_items <= 8 * m or width < 4 or n_blocks <= m:
        rows, cols = np.nonzero(scores > -np.inf)
        return rows, cols, scores[rows, cols]
    main = n_blocks * width
    # interleaved blocks: block k holds items k, k + n_blocks, k + 2 n_blocks, ...; their
    # maxima are element-wise maxima of contiguous rows (SIMD), 5x faster than per block
    blocks = scores[:, :main].reshape(b, width, n_blocks)  # a view, no copy
    block_max = blocks.max(axis=1)
    top = np.argpartition(block_max, n_blocks - m, axis=1)[:, n_blocks - m :]
    bound = np.take_along_axis(block_max, top, axis=1).min(axis=1)
    vals = np.take_along_axis(blocks, top[:, None, :], axis=2).reshape(b, width * m)
    if main < n_items:
        vals = np.concatenate([vals, scores[:, main:]], axis=1)
    keep = (vals >= bound[:, None]) & (vals > -np.inf)
    # Scores above the bound all sit in the chosen blocks, but scores equal to it may sit
    # in a block left out whose maximum equals the bound. The tie rule (lower column
    # first) needs all of them: such rows are scanned in full, so the choice never depends
    # on which of the tied blocks argpartition picked.
    tied = np.flatnonzero((block_max >= bound[:, None]).sum(axis=1) > m)
    keep[tied] = False
    rows, at = np.nonzero(keep)
    vals = vals[rows, at]
    # columns of the kept scores only: position at = j * m + t is row j of chosen block t,
    # item top[t] + j * n_blocks; positions past width * m are the tail, in item order
    j, t = np.divmod(at, m)
    cols = np.where(at < width * m, top[rows, t] + n_blocks * j, main + at - width * m)
    if tied.size:
        full = scores[tied]
        t_rows, t_cols = np.nonzero((full >= bound[tied, None]) & (full > -np.inf))
        rows = np.concatenate([rows, tied[t_rows]])
        cols = np.concatenate([cols, t_cols])
        vals = np.concatenate([vals, full[t_rows, t_cols]])
    return rows, cols, vals


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal, already grouped keys."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    lengths = np.diff(np.r_[starts, group.size])
    return np.arange(group.size) - np.repeat(starts, lengths)


def _sorted_candidates(
    scores: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates sorted by row, then score descending (ties: lower column first)."""
    rows, cols, vals = _candidates(scores, m)
    order = np.lexsort((cols, -vals.astype(np.float64), rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    return rows, cols, vals, _rank_in_group(rows)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best finite scores of every row, best first.

    Parameters
    ----------
    scores : numpy.ndarray
        ``b x n_items`` scores; ``-inf`` excludes an item.
    n : int
        List length.

    Returns
    -------
    items : numpy.ndarray
        ``b x n`` int64 column indices, ``-1`` where a row has fewer than n finite scores.
    values : numpy.ndarray
        ``b x n`` the scores (``-inf`` in empty slots).
    """
    b = scores.shape[0]
    items = np.full((b, n), -1, dtype=np.int64)
    values = np.full((b, n), -np.inf, dtype=scores.dtype)
    if b == 0 or n == 0:
        return items, values
    rows, cols, vals, rank = _sorted_candidates(scores, n)
    take = rank < n
    items[rows[take], rank[take]] = cols[take]
    values[rows[take], rank[take]] = vals[take]
    return items, values


def top_n_capped(
    scores: np.ndarray, n: int, categories: np.ndarray, cap: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`top_n`, with at most ``cap`` items of one category per row.

    Parameters
    ----------
    scores : numpy.ndarray
        ``b x n_items`` scores; ``-inf`` excludes an item.
    n : int
        List length.
    categories : numpy.ndarray
        Category code per item; negative codes (no category) are not capped.
    cap : int or None
        Most items of one category in a row; None for no cap.

    Returns
    -------
    items, values : numpy.ndarray
        As for :func:`top_n`.
    """
    if cap is None:
        return top_n(scores, n)
    b, n_items = scores.shape
    items = np.full((b, n), -1, dtype=np.int64)
    values = np.full((b, n), -np.inf, dtype=scores.dtype)
    todo = np.arange(b)
    m = min(n_items, max(2 * n, n + 4 * cap))
    n_cat = int(categories.max()) + 2 if categories.size else 1
    while todo.size:
        sub = scores[todo]
        rows, cols, vals, _ = _sorted_candidates(sub, m)
        cat = categories[cols].astype(np.int64)
        # rank within (row, category), keeping score order: stable sort by the group key
        key = rows * n_cat + (cat + 1)
        order = np.argsort(key, kind="stable")
        within = np.empty_like(order)
        within[order] = _rank_in_group(key[order])
        keep = (within < cap) | (cat < 0)
        rows_k, cols_k, vals_k = rows[keep], cols[keep], vals[keep]
        pos = _rank_in_group(rows_k)
        take = pos < n
        items[todo[rows_k[take]], pos[take]] = cols_k[take]
        values[todo[rows_k[take]], pos[take]] = vals_k[take]
        # rows still short although they had more candidates than were looked at: widen
        n_cand = np.bincount(rows, minlength=todo.size)
        n_kept = np.bincount(rows_k, minlength=todo.size)
        short = (n_kept < n) & (n_cand >= m) & (m < n_items)
        todo = todo[short]
        m = min(n_items, m * 4)
    return items, values


class PairLookup:
    """Vectorised ``matrix[rows, cols]`` lookups in a CSR matrix (0 where absent).

    The (row, column) pairs are encoded once as sorted int64 keys; each lookup is a
    binary search, so a batch of lookups costs ``O(q log nnz)`` whatever the matrix size.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix
        The matrix to look up in (its indices are sorted first).
    """

    def __init__(self, matrix: object) -> None:
        m = matrix.tocsr()  # type: ignore[attr-defined]
        m.sort_indices()
        indptr = m.indptr.astype(np.int64)
        self.n_cols = int(m.shape[1])
        row_of = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
        self.keys = row_of * self.n_cols + m.indices.astype(np.int64)
        self.data = np.asarray(m.data, dtype=np.float64)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at ``(rows, cols)`` (same shape); negative indices give 0."""
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        if self.keys.size == 0:
            return np.zeros(r.shape, dtype=np.float64)
        ok = (r >= 0) & (c >= 0)
        want = np.where(ok, r * self.n_cols + c, -1)
        pos = np.minimum(np.searchsorted(self.keys, want), self.keys.size - 1)
        hit = ok & (self.keys[pos] == want)
        return np.where(hit, self.data[pos], 0.0)
