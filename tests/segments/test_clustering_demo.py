"""Clustering segmentations end to end on the demo store, against the planted truth."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import segmint
import segmint.errors
from segmint.config import ClusterSegmentation
from segmint.demo import generate_demo
from segmint.features import FeatureRun
from segmint.segments import run_segmentation
from segmint.segments._clustering import assign_segments

DEMO_FEATURES = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "discount_share",
    "events_30d",
    "app_share",
    "offline_share",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[segmint.Project, FeatureRun]]:
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, n_users=5_000, seed=42)
    p = segmint.open_project(out)
    p.ingest()
    yield p, p.compute_features()
    p.close()


def test_auto_k_clustering_recovers_the_planted_personas(
    demo: tuple[segmint.Project, FeatureRun],
) -> None:
    p, run = demo
    r = p.segment("clusters", feature_run=run)
    truth = pd.read_parquet(p.root / "truth" / "personas.parquet")
    m = r.assignments.merge(truth, left_on="user_id", right_on="customer_id")
    assert len(m) == 5_000
    ari = adjusted_rand_score(m["persona"], m["segment"])
    assert ari >= 0.5, ari
    assert 2 <= r.details["n_clusters"] <= 10
    assert {row["k"] for row in r.details["k_scores"]} == set(range(2, 11))
    assert "Rule:" in r.details["decision"]
    assert 0 < r.metrics["silhouette"] <= 1 and r.metrics["stability"] > 0.5
    assert r.details["fidelity"] > 80 and set(r.rules) <= set(r.sizes.index)
    assert abs(sum(r.details["feature_importances"].values()) - 1) < 1e-3


def test_clustering_is_deterministic(demo: tuple[segmint.Project, FeatureRun]) -> None:
    p, run = demo
    a = p.segment("clusters", feature_run=run)
    b = p.segment("clusters", feature_run=run)
    assert a.assignments.equals(b.assignments)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "ward"},
        {"type": "gmm", "k_max": 6},
        {"type": "hdbscan"},
        {"type": "kmeans", "reduce": "pca", "n_components": 3},
        {"type": "kmeans", "reduce": "factor", "n_components": 3, "k": 5},
    ],
    ids=["ward", "gmm", "hdbscan", "kmeans-pca", "kmeans-factor"],
)
def test_every_method_runs_and_is_explained(
    demo: tuple[segmint.Project, FeatureRun], spec: dict
) -> None:
    p, run = demo
    cfg = ClusterSegmentation.model_validate({"features": DEMO_FEATURES, **spec})
    r = run_segmentation(p.store, "t", cfg, run.data, feature_run_id=run.run_id, save=True)
    assert r.assignments["user_id"].is_unique and len(r.assignments) == 5_000
    assert r.metrics["n_users"] == 5_000
    assert abs(sum(r.metrics["revenue_share"].values()) - 1) < 1e-6
    if spec["type"] == "gmm":
        prob = r.assignments["probability"]
        assert prob.between(0, 1).all()
    if spec.get("reduce"):
        assert len(next(iter(r.details["loadings"].values()))) == 3
    if spec["type"] == "hdbscan":
        assert "n_noise" in r.metrics
        if r.metrics["n_noise"]:
            assert r.sizes["noise"] == r.metrics["n_noise"]
    stored = p.segment_run(r.run_id)
    assert stored.metrics["sizes"] == r.metrics["sizes"]


def test_assigner_places_users_without_refitting(demo: tuple[segmint.Project, FeatureRun]) -> None:
    p, run = demo
    r = p.segment("clusters", feature_run=run)
    got = assign_segments(run.data, r.assignments, run.data, DEMO_FEATURES)
    agree = got.set_index("user_id")["segment"] == r.assignments.set_index("user_id")["segment"]
    assert agree.mean() > 0.9


def test_project_assign_uses_the_stored_run(demo: tuple[segmint.Project, FeatureRun]) -> None:
    p, run = demo
    r = p.segment("clusters", feature_run=run)
    got = p.assign(r.run_id, feature_run=run)
    assert set(got["segment"]) <= set(r.sizes.index)
    assert got["probability"].between(0, 1).all()
    with pytest.raises(segmint.errors.ConfigError, match="not a clustering run"):
        p.assign(p.segment("rfm", feature_run=run).run_id, feature_run=run)
