"""Collaborative models: popularity, segment popularity, item-kNN, ALS, BPR, and the hybrid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

# imported eagerly: implicit loads scipy's OpenBLAS and OpenMP, and threadpoolctl only
# limits libraries already loaded when a limit is entered
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import all_pairs_knn, bm25_weight

from segmint.errors import ConfigError
from segmint.recommend._base import POPULAR, SEGMENT, Recommender, n_cpus
from segmint.recommend._content import ContentRecommender
from segmint.recommend._interactions import Interactions
from segmint.recommend._select import PairLookup

__all__ = [
    "ALSRecommender",
    "BPRRecommender",
    "HybridRecommender",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "SegmentPopularityRecommender",
]

Weighting = Literal["none", "log", "bm25"]


def weighted(matrix: Any, weighting: Weighting) -> Any:
    """The interaction strengths rescaled: as they are, ``log1p``, or BM25 per item."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if weighting == "none":
        return m
    if weighting == "log":
        m.data = np.log1p(m.data)
        return m
    if weighting == "bm25":
        out = bm25_weight(m, K1=100, B=0.8).tocsr().astype(np.float32)
        out.sort_indices()
        return out
    raise ConfigError(f"weighting must be 'none', 'log' or 'bm25', got {weighting!r}")


def block_product(users: np.ndarray, item_t: np.ndarray) -> np.ndarray:
    """``users @ item_t`` as float32 scores that do not depend on the batch a user is in.

    BLAS sums a row in an order that depends on the matrix shape and on the row's position
    in the kernel's tiles (OpenBLAS 0.3.31 changed it again; numpy sends a single row to
    gemv, yet another order), so float32 products ranked near-ties differently for one user,
    a block of 7 or all users at once. Here the products are taken in float64, where a
    float32 × float32 product is exact and a sum of ``k`` of them is off by at most ``k``
    float64 ulps whatever the order, then rounded to float32: the scores come out the same
    bits unless a float64 sum falls within those few ulps of a float32 rounding boundary
    (about one score in 10^7). ``item_t`` should already be float64 (converted once at fit).
    """
    scores = users.astype(np.float64) @ np.asarray(item_t, dtype=np.float64)
    return scores.astype(np.float32)


class PopularityRecommender(Recommender):
    """The most popular items overall (number of users who interacted), the same for all.

    The baseline every personalised model has to beat. Reason: "popular now".
    """

    name = "popularity"
    personalized = False

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        pass

    def _fallback_scores(self, seg: np.ndarray) -> np.ndarray:
        glob = self.popularity_ / max(float(self.popularity_.max(initial=0.0)), 1.0)
        out = np.repeat((0.999 * glob)[None, :], seg.size, axis=0)
        out[:, self.popularity_ <= 0] = -np.inf
        return out


class SegmentPopularityRecommender(Recommender):
    """The most popular items among the users of the same segment.

    Segments come from the segmentation attached to the interactions
    (``build_interactions(..., segmentation=...)``); users without a segment get global
    popularity. Reason: "popular in your segment <name>".
    """

    name = "segment_popularity"
    personalized = False

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        if interactions.segments.empty:
            raise ConfigError(
                "segment popularity needs segments: build the interactions with "
                "segmentation=<name> (e.g. 'rfm') after running that segmentation"
            )


class ItemKNNRecommender(Recommender):
    """Item-item neighbourhood model on cosine similarity (sparse).

    Each item keeps its ``neighbours`` most similar items (cosine of the items' user
    vectors, computed by ``implicit``); a user's score for an item is the sum over their
    items of interaction strength times similarity. Reason: "because you bought X", X the
    user's item contributing most.

    Parameters
    ----------
    neighbours : int, default 100
        Neighbours kept per item.
    weighting : {'none', 'log', 'bm25'}, default 'bm25'
        Rescaling of the interaction strengths before computing similarities (BM25
        damps very popular items and very active users).
    n_threads : int, default 0
        Threads for the similarity computation (0: all CPUs).
    """

    name = "item_knn"

    def __init__(
        self, *, neighbours: int = 100, weighting: Weighting = "bm25", n_threads: int = 0
    ) -> None:
        self.neighbours = neighbours
        self.weighting = weighting
        self.n_threads = n_threads

    def _fit(self, interactions: Interactions) -> None:
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be at least 1, got {self.neighbours}")
        x = weighted(interactions.matrix, self.weighting)
        # cosine = dot products of the items' unit-length user vectors
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        unit = sp.csr_matrix(x, dtype=np.float64, copy=True)
        unit.data = unit.data / np.maximum(norms, 1e-12)[unit.indices]
        sim = all_pairs_knn(
            unit,
            self.neighbours + 1,
            show_progress=False,
            num_threads=self.n_threads or n_cpus(),
        )
        sim = sp.csr_matrix(sim, dtype=np.float32)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        sim.sort_indices()
        self.similarity_ = sim
        self._x = x
        self._x_lookup = PairLookup(x)
        self._sim_lookup = PairLookup(sim)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        s = np.asarray(self._x[rows].dot(self.similarity_).toarray(), dtype=np.float32)
        s[s <= 0] = -np.inf
        return s

    def _explain(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def contribution(hist: np.ndarray, recs: np.ndarray) -> np.ndarray:
            h3 = np.repeat(hist[:, :, None], recs.shape[1], axis=2)
            r3 = np.repeat(recs[:, None, :], hist.shape[1], axis=1)
            weight = self._x_lookup(np.repeat(rows[:, None], hist.shape[1], axis=1), hist)
            return self._sim_lookup(h3, r3) * weight[:, :, None]

        return self._explain_by_similarity(rows, items, contribution)

    def _similar(self, item: int) -> np.ndarray | None:
        row = self.similarity_[item]
        out = np.full(self.similarity_.shape[1], -np.inf)
        out[row.indices] = row.data
        return out


class _FactorModel(Recommender):
    """Shared scoring and explanations of matrix factorisation models."""

    def _set_factors(self, users: np.ndarray, items: np.ndarray) -> None:
        self.user_factors_ = np.ascontiguousarray(users, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(items, dtype=np.float32)
        norms = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
        unit = self.item_factors_ / np.maximum(norms, 1e-12)
        # one spare zero row: index -1 (padding) looks up zeros
        self._unit = np.vstack([unit, np.zeros((1, unit.shape[1]), dtype=np.float32)])
        self._item_t = np.ascontiguousarray(self.item_factors_.T, dtype=np.float64)
        self._untouched = np.flatnonzero(self.popularity_ <= 0)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        s = block_product(self.user_factors_[rows], self._item_t)
        if self._untouched.size:
            # an item nobody interacted with has a zero factor: its score 0 says nothing,
            # but would beat every negative score; leave new items to content models
            s[:, self._untouched] = -np.inf
        return s

    def _explain(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def cosine(hist: np.ndarray, recs: np.ndarray) -> np.ndarray:
            return np.matmul(self._unit[hist], self._unit[recs].transpose(0, 2, 1))

        return self._explain_by_similarity(rows, items, cosine)

    def _similar(self, item: int) -> np.ndarray | None:
        return self._unit[:-1] @ self._unit[item]


class ALSRecommender(_FactorModel):
    """Matrix factorisation for implicit feedback (alternating least squares, ``implicit``).

    Fitting uses ``implicit.cpu.als.AlternatingLeastSquares`` with BLAS held at one
    thread. Recommending is segmint's own: ``user_factors[batch] @ item_factors.T``,
    filtered items set to ``-inf`` from the CSR indices, and a block-bound top-n, so no
    Python work per user. Reason: "because you bought X", X the user's item whose factor
    vector is closest (cosine) to the recommended item's.

    Parameters
    ----------
    factors : int, default 32
        Latent factors.
    iterations : int, default 15
        ALS sweeps.
    regularization : float, default 0.1
        L2 penalty.
    alpha : float, default 1.0
        Confidence scale: implicit's confidence of an observed pair is
        ``alpha * strength`` (unobserved pairs have confidence 1).
    weighting : {'none', 'log', 'bm25'}, default 'log'
        Rescaling of interaction strengths before the confidence.
    random_state : int, default 0
        Seed of the factor initialisation.
    n_threads : int, default 0
        Threads for fitting (0: all CPUs).
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 32,
        iterations: int = 15,
        regularization: float = 0.1,
        alpha: float = 1.0,
        weighting: Weighting = "log",
        random_state: int = 0,
        n_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.weighting = weighting
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, interactions: Interactions) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ConfigError("factors and iterations must be at least 1")
        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.n_threads or n_cpus(),
        )
        model.fit(weighted(interactions.matrix, self.weighting), show_progress=False)
        self._set_factors(model.user_factors, model.item_factors)


class BPRRecommender(_FactorModel):
    """Bayesian personalised ranking (``implicit.cpu.bpr``): factors trained on pairs.

    Parameters
    ----------
    factors : int, default 64
        Latent factors (one more is used for the item bias).
    iterations : int, default 100
        Epochs of stochastic gradient descent.
    learning_rate : float, default 0.05
        SGD step.
    regularization : float, default 0.01
        L2 penalty.
    random_state : int, default 0
        Seed.
    n_threads : int, default 0
        Threads (0: all CPUs).
    """

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        iterations: int = 100,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        random_state: int = 0,
        n_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, interactions: Interactions) -> None:
        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.n_threads or n_cpus(),
        )
        model.fit(sp.csr_matrix(interactions.matrix > 0, dtype=np.float32), show_progress=False)
        self._set_factors(model.user_factors, model.item_factors)


class HybridRecommender(Recommender):
    """A weighted blend of normalised scores of several models, plus popularity.

    Each component's scores are rescaled per user to [0, 1] over the items it can score
    (items it cannot score count 0) and blended with ``weights``; ``popularity_weight``
    adds popularity in the user's segment (global popularity without a segment). New
    items are reachable through the content component. Reason per item: the reason of
    the component that contributed most.

    Parameters
    ----------
    components : mapping of str to Recommender, optional
        Unfitted models by name; item-kNN, ALS and content by default.
    weights : mapping of str to float, optional
        Weight per component name (1.0 for a component not named); by default
        ``{"content": 0.3}`` when the default components are used.
    popularity_weight : float, default 0.1
        Weight of (segment) popularity in the blend.
    """

    name = "hybrid"

    def __init__(
        self,
        *,
        components: Mapping[str, Recommender] | None = None,
        weights: Mapping[str, float] | None = None,
        popularity_weight: float = 0.1,
    ) -> None:
        self.components = components
        self.weights = weights
        self.popularity_weight = popularity_weight

    def _fit(self, interactions: Interactions) -> None:
        comps = (
            dict(self.components)
            if self.components is not None
            else {
                "item_knn": ItemKNNRecommender(),
                "als": ALSRecommender(),
                "content": ContentRecommender(),
            }
        )
        if not comps:
            raise ConfigError("a hybrid needs at least one component")
        for name, model in comps.items():
            if not isinstance(model, Recommender) or not model.personalized:
                raise ConfigError(
                    f"hybrid component {name!r} must be a personalised Recommender "
                    "(popularity enters through popularity_weight)"
                )
        default = {"content": 0.3} if self.components is None else {}
        weights = dict(default if self.weights is None else self.weights)
        unknown = set(weights) - set(comps)
        if unknown:
            raise ConfigError(f"weights for unknown hybrid components: {sorted(unknown)}")
        self.components_ = {k: m.fit(interactions) for k, m in comps.items()}
        self.weights_ = {k: float(weights.get(k, 1.0)) for k in comps}

    def _parts(self, rows: np.ndarray) -> list[np.ndarray]:
        parts = []
        for name, model in self.components_.items():
            s = model._scores(rows).astype(np.float32, copy=False)
            fin = np.isfinite(s)
            lo = np.where(fin, s, np.inf).min(axis=1, keepdims=True)
            hi = np.where(fin, s, -np.inf).max(axis=1, keepdims=True)
            lo = np.where(np.isfinite(lo), lo, 0.0)
            span = np.maximum(hi - lo, 1e-12)
            norm = np.where(fin, (s - lo) / span, 0.0).astype(np.float32)
            parts.append(self.weights_[name] * norm)
        if self.popularity_weight > 0:
            seg = self.segment_codes(self.interactions_.user_ids[rows])
            pop = self._fallback_scores(seg)
            pop = np.where(np.isfinite(pop), pop / 2.0, 0.0).astype(np.float32)
            parts.append(self.popularity_weight * pop)
        return parts

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        total = np.sum(self._parts(rows), axis=0)
        total[total <= 0] = -np.inf
        return total

    def _explain(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = self._parts(rows)
        at = np.stack([np.take_along_axis(p, items, axis=1) for p in parts])  # c x b x n
        best = np.argmax(at, axis=0)
        kind = np.full(items.shape, POPULAR, dtype=np.int8)
        ref = np.full(items.shape, -1, dtype=np.int64)
        # popularity dominated: "popular in your segment <name>" (or "popular now")
        seg = self.segment_codes(self.interactions_.user_ids[rows])
        pop = (best == len(self.components_)) & (seg >= 0)[:, None]
        kind[pop] = SEGMENT
        ref[pop] = np.broadcast_to(seg[:, None], items.shape)[pop]
        for c, model in enumerate(self.components_.values()):  # loops over components
            mask = best == c
            if mask.any():
                k, r = model._explain(rows, items)
                kind[mask], ref[mask] = k[mask], r[mask]
        return kind, ref

    def _similar(self, item: int) -> np.ndarray | None:
        sims = [m._similar(item) for m in self.components_.values()]
        ok = [np.where(np.isfinite(s), s, 0.0) for s in sims if s is not None]
        return np.sum(ok, axis=0) if ok else None
