"""Content-based recommendations: items described by category, price band and words."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from segmint.recommend._base import CATEGORY, Recommender
from segmint.recommend._interactions import Interactions

__all__ = ["ContentRecommender", "content_similarity", "item_content_matrix"]


def _attribute_text(values: np.ndarray) -> np.ndarray:
    """``{"brand": "Acme", "color": "red"}`` -> ``"brand_acme color_red"`` (per item)."""

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        try:
            obj = json.loads(v) if isinstance(v, str) else v
        except ValueError:
            return str(v)
        if not isinstance(obj, dict):
            return str(obj)
        return " ".join(
            f"{k}_{str(x).lower().replace(' ', '_')}"
            for k, x in obj.items()
            if isinstance(x, str | int | float | bool)
        )

    # one call per catalogue item (catalogue-sized, not per user or interaction)
    return np.asarray([one(v) for v in values], dtype=object)


def _onehot(codes: np.ndarray, n: int) -> Any:
    ok = codes >= 0
    rows = np.flatnonzero(ok)
    return sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, codes[ok])), shape=(codes.size, max(n, 1))
    )


def _l2(m: Any) -> Any:
    from sklearn.preprocessing import normalize

    return normalize(sp.csr_matrix(m, dtype=np.float32), norm="l2", axis=1)


def item_content_matrix(
    items: pd.DataFrame,
    *,
    category_weight: float = 1.0,
    price_weight: float = 0.5,
    text_weight: float = 1.0,
    n_price_bands: int = 5,
) -> Any:
    """One L2-normalised sparse row per item: category, price band and TF-IDF words.

    Parameters
    ----------
    items : pandas.DataFrame
        Catalogue with ``category``, ``price``, ``title`` and ``attributes`` columns.
    category_weight, price_weight, text_weight : float
        Weight of each block (each block is L2-normalised first).
    n_price_bands : int, default 5
        Price bands are quantiles of the catalogue's prices (within the item's category
        when there are categories, so a "cheap TV" and a "cheap pen" share a band).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``n_items x n_features`` float32.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(items)
    blocks = []
    cats = items["category"].astype(object).to_numpy()
    has = pd.notna(cats)
    names = sorted(set(cats[has]))
    codes = np.full(n, -1, dtype=np.int64)
    codes[has] = pd.Index(names).get_indexer(cats[has])
    if names and category_weight > 0:
        blocks.append(category_weight * _l2(_onehot(codes, len(names))))
    price = pd.to_numeric(items["price"], errors="coerce").astype("float64")
    if price.notna().any() and price_weight > 0 and n_price_bands > 1:
        group = pd.Series(np.where(codes >= 0, codes, -1))
        pct = price.groupby(group).rank(pct=True)
        band = np.where(
            pct.notna(),
            np.minimum((pct.fillna(0) * n_price_bands).astype(int), n_price_bands - 1),
            -1,
        )
        band = np.where(band >= 0, band + n_price_bands * np.maximum(codes, 0), -1)
        n_band = n_price_bands * max(len(names), 1)
        blocks.append(price_weight * _l2(_onehot(band.astype(np.int64), n_band)))
    if text_weight > 0:
        title = items["title"].astype(object).where(pd.notna(items["title"]), "")
        attrs = _attribute_text(items["attributes"].to_numpy(dtype=object))
        docs = (title.astype(str).to_numpy(dtype=object) + " " + attrs).astype(str)
        try:
            tfidf = TfidfVectorizer(
                min_df=2, max_features=50_000, sublinear_tf=True, dtype=np.float32
            ).fit_transform(docs)
            blocks.append(text_weight * _l2(tfidf))
        except ValueError:  # empty vocabulary: no words in any title
            pass
    if not blocks:
        return sp.csr_matrix((n, 1), dtype=np.float32)
    return _l2(sp.hstack(blocks, format="csr"))


def content_similarity(items: pd.DataFrame, item: int) -> np.ndarray:
    """Cosine similarity of every catalogue item to ``item`` (content vectors)."""
    m = item_content_matrix(items)
    return np.asarray(m.dot(m[item].T).toarray()).ravel()


class ContentRecommender(Recommender):
    """Recommend items whose content resembles what the user interacted with.

    Items are sparse vectors (category, price band, TF-IDF of title and attribute
    words, see :func:`item_content_matrix`); a user's profile is the interaction-weighted
    mean of their items' vectors; the score is the cosine of item and profile. Items
    nobody interacted with can be recommended (new items).

    Parameters
    ----------
    category_weight, price_weight, text_weight : float
        Weights of the three blocks of the item vectors.
    n_price_bands : int, default 5
        Price quantile bands (within category).
    popularity_weight : float, default 1.0
        Adds ``popularity_weight * log1p(users) / max(log1p(users))`` to the cosine, so
        that among items that fit the profile the ones people actually buy come first
        (without it, content-only lists are full of items nobody buys).
    """

    name = "content"
    similar_needs_history = False

    def __init__(
        self,
        *,
        category_weight: float = 1.0,
        price_weight: float = 0.5,
        text_weight: float = 1.0,
        n_price_bands: int = 5,
        popularity_weight: float = 1.0,
    ) -> None:
        self.category_weight = category_weight
        self.price_weight = price_weight
        self.text_weight = text_weight
        self.n_price_bands = n_price_bands
        self.popularity_weight = popularity_weight

    def _fit(self, interactions: Interactions) -> None:
        self.item_vectors_ = item_content_matrix(
            interactions.items,
            category_weight=self.category_weight,
            price_weight=self.price_weight,
            text_weight=self.text_weight,
            n_price_bands=self.n_price_bands,
        )
        self._item_t = self.item_vectors_.T.tocsr()
        pop = np.log1p(self.popularity_)
        self._prior = (
            self.popularity_weight * pop / max(float(pop.max(initial=0.0)), 1e-12)
        ).astype(np.float32)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        x = self.interactions_.matrix[rows]
        profile = _l2(x.dot(self.item_vectors_))
        s = np.asarray(profile.dot(self._item_t).toarray(), dtype=np.float32)
        s[s <= 0] = -np.inf  # nothing in common with the profile: no evidence
        s += self._prior[None, :]
        return s

    def _explain(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(items.shape, CATEGORY, dtype=np.int8), items.astype(np.int64)

    def _similar(self, item: int) -> np.ndarray | None:
        v = self.item_vectors_
        return np.asarray(v.dot(v[item].T).toarray()).ravel()
