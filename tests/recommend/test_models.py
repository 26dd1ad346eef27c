"""Every model behind the one interface, on the tiny shop and on planted structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from segmint.errors import ConfigError, NotFoundError
from segmint.recommend import (
    ALSRecommender,
    BPRRecommender,
    ContentRecommender,
    HybridRecommender,
    Interactions,
    ItemKNNRecommender,
    NotFittedError,
    PopularityRecommender,
    Recommender,
    SegmentPopularityRecommender,
    build_interactions,
)
from segmint.store import Store

MODELS: dict[str, Callable[[], Recommender]] = {
    "popularity": PopularityRecommender,
    "segment_popularity": SegmentPopularityRecommender,
    "item_knn": lambda: ItemKNNRecommender(neighbours=20),
    "als": lambda: ALSRecommender(factors=4, iterations=10),
    "bpr": lambda: BPRRecommender(factors=4, iterations=20),
    "content": ContentRecommender,
    "hybrid": lambda: HybridRecommender(
        components={"item_knn": ItemKNNRecommender(), "als": ALSRecommender(factors=4)}
    ),
}
PURCHASED = {"u1": {"A1", "A2", "C1"}, "u2": {"A1", "A2", "C1"}, "u3": {"A1"}, "u4": {"B1", "B2"}}


@pytest.fixture()
def tiny(tiny_store: Store) -> Interactions:
    return build_interactions(tiny_store, segmentation="tiers")


# -- the contract every model keeps ---------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_lists_are_complete_ranked_and_skip_what_was_bought(name: str, tiny: Interactions) -> None:
    model = MODELS[name]().fit(tiny)
    users = ["u1", "u2", "u3", "u4", "u7", "u8"]
    recs = model.recommend(users, 3)
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank", "model", "reason"]
    assert list(recs["user_id"].unique()) == users
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    for user, items in PURCHASED.items():
        assert not set(recs.loc[recs["user_id"] == user, "item_id"]) & items
    assert recs["reason"].str.len().gt(0).all()


@pytest.mark.parametrize("name", MODELS)
def test_batch_equals_single(name: str, tiny: Interactions) -> None:
    model = MODELS[name]().fit(tiny)
    users = ["u1", "u3", "u4", "u5", "u7", "u8"]
    batch = model.recommend(users, 4)
    single = pd.concat([model.recommend(u, 4) for u in users], ignore_index=True)
    pd.testing.assert_frame_equal(batch, single)


@pytest.mark.parametrize("name", MODELS)
def test_cold_users_fall_back_to_their_segment_then_to_everyone(
    name: str, tiny: Interactions
) -> None:
    model = MODELS[name]().fit(tiny)
    recs = model.recommend(["u7", "u8"], 2).set_index("user_id")
    if name == "popularity":  # the global baseline has no segment stage
        assert set(recs.loc["u7", "reason"]) == {"popular now"}
    else:
        # u7 (segment S2, no activity): S2's favourites B1 and B2 (two buyers each)
        assert list(recs.loc["u7", "item_id"]) == ["B1", "B2"]
        assert set(recs.loc["u7", "model"]) == {"segment_popularity"}
        assert set(recs.loc["u7", "reason"]) == {"popular in your segment S2"}
    # u8 (no segment, no activity): the most popular items overall (A1, A2: three users)
    assert list(recs.loc["u8", "item_id"]) == ["A1", "A2"]
    assert set(recs.loc["u8", "model"]) == {"popularity"}
    assert set(recs.loc["u8", "reason"]) == {"popular now"}


@pytest.mark.parametrize("name", MODELS)
def test_not_fitted(name: str) -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        MODELS[name]().recommend(["u1"], 3)


def test_fit_refuses_other_inputs() -> None:
    with pytest.raises(TypeError, match="Interactions"):
        PopularityRecommender().fit(np.eye(3))  # type: ignore[arg-type]


# -- models on the tiny shop ----------------------------------------------------------------


def test_popularity_order_and_reason(tiny: Interactions) -> None:
    recs = PopularityRecommender().fit(tiny).recommend("u4", 4)
    # users per item: A1 3, A2 3, C1 3, B1 2, B2 2 (bought by u4), A3 1, D1 1; ties by id
    assert list(recs["item_id"]) == ["A1", "A2", "C1", "A3"]
    assert list(recs["score"]) == pytest.approx([1.0, 1.0, 1.0, 1 / 3])
    assert set(recs["reason"]) == {"popular now"}


def test_segment_popularity_needs_segments(tiny_store: Store) -> None:
    with pytest.raises(ConfigError, match="segmentation=<name>"):
        SegmentPopularityRecommender().fit(build_interactions(tiny_store))


def test_item_knn_explains_with_the_item_that_contributed(tiny: Interactions) -> None:
    recs = ItemKNNRecommender().fit(tiny).recommend("u3", 2)
    # u3 bought A1, and everyone who bought A1 also bought A2
    assert recs.iloc[0]["item_id"] == "A2"
    assert recs.iloc[0]["reason"] == "because you bought Red Novel"
    # u4 bought B2 (Toy Train) like u6, who also bought C1 (Coffee Beans)
    u4 = ItemKNNRecommender().fit(tiny).recommend("u4", 3).set_index("item_id")
    assert u4.loc["C1", "reason"] == "because you bought Toy Train"


def test_content_reaches_new_items_and_names_the_category(tiny: Interactions) -> None:
    recs = ContentRecommender().fit(tiny).recommend("u3", 3)
    assert "A4" in set(recs["item_id"])  # nobody ever touched the Red Atlas
    assert set(recs["reason"]) == {"similar to items in books you like"}


def test_similar_items_of_a_new_item_come_from_content(tiny: Interactions) -> None:
    als = ALSRecommender(factors=4).fit(tiny)
    sim = als.similar_items("A4", 3)
    assert set(sim["model"]) == {"content"}
    assert sim.iloc[0]["item_id"] in {"A1", "A2", "A3"}  # books
    assert "A4" not in set(sim["item_id"])
    known = als.similar_items("A1", 2)
    assert set(known["model"]) == {"als"}
    with pytest.raises(NotFoundError, match="neither the catalogue"):
        als.similar_items("ZZ", 2)


def test_hybrid_reasons_come_from_its_components(tiny: Interactions) -> None:
    recs = HybridRecommender().fit(tiny).recommend(["u3", "u4"], 3)
    assert set(recs["model"]) == {"hybrid"}
    allowed = ("because you", "similar to items in", "popular in your segment", "popular now")
    assert recs["reason"].map(lambda r: r.startswith(allowed)).all()


def test_hybrid_checks_its_components() -> None:
    it = Interactions.from_matrix(np.eye(3))
    with pytest.raises(ConfigError, match="personalised"):
        HybridRecommender(components={"p": PopularityRecommender()}).fit(it)
    with pytest.raises(ConfigError, match="unknown hybrid components"):
        HybridRecommender(components={"als": ALSRecommender(factors=2)}, weights={"knn": 1.0}).fit(
            it
        )


# -- planted structure ----------------------------------------------------------------------


def _two_worlds(seed: int = 0, n_users: int = 400, n_items: int = 60) -> Interactions:
    """Users of world 0 only touch items 0..29, users of world 1 only items 30..59."""
    rng = np.random.default_rng(seed)
    world = np.arange(n_users) % 2
    half = n_items // 2
    pop = rng.lognormal(0, 1, half)
    rows, cols = [], []
    for w in (0, 1):  # two worlds
        users = np.flatnonzero(world == w)
        picks = rng.choice(half, size=(users.size, 6), p=pop / pop.sum())
        rows.append(np.repeat(users, 6))
        cols.append(picks.ravel() + w * half)
    m = sp.csr_matrix(
        (np.ones(sum(r.size for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_users, n_items),
    )
    m.data[:] = 1.0
    return Interactions.from_matrix(m)


WORLD_MODELS: dict[str, Callable[[], Recommender]] = {
    "item_knn": ItemKNNRecommender,
    "als": lambda: ALSRecommender(factors=8, alpha=1.0, weighting="none"),
    "hybrid": lambda: HybridRecommender(
        components={
            "item_knn": ItemKNNRecommender(),
            "als": ALSRecommender(factors=8, alpha=1.0, weighting="none"),
        }
    ),
}


@pytest.mark.parametrize("name", WORLD_MODELS)
def test_personalised_models_stay_in_the_users_world(name: str) -> None:
    it = _two_worlds()
    items = WORLD_MODELS[name]().fit(it).recommend_items(it.user_ids, 5)
    world = np.arange(it.n_users) % 2
    assert np.all((items // 30) == world[:, None])


def test_als_lists_equal_implicits_own() -> None:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    it = _two_worlds(seed=3)
    ours = ALSRecommender(factors=8, iterations=5).fit(it)
    with threadpool_limits(1, "blas"):
        ref = AlternatingLeastSquares(factors=8)
    ref.user_factors = ours.user_factors_
    ref.item_factors = ours.item_factors_
    users = np.arange(it.n_users)
    ids, _ = ref.recommend(users, it.matrix[users], N=10, filter_already_liked_items=True)
    np.testing.assert_array_equal(ours.recommend_items(it.user_ids, 10), ids)


def test_threads_give_the_same_lists() -> None:
    it = _two_worlds(seed=4)
    model = ALSRecommender(factors=8, iterations=5).fit(it)
    one = model.recommend(it.user_ids, 5)
    two = pd.concat(
        list(
            t.to_pandas() for t in model.recommend_batches(it.user_ids, 5, batch_size=37, n_jobs=2)
        ),
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(one, two)
