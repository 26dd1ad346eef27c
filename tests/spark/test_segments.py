"""Segmentations on Spark equal the DuckDB engine's: rule segmentations user for user (the
same SQL, transpiled), k-means with the same k and (nearly) the same clusters.

``pytest -s tests/spark/test_segments.py`` prints the parity table (lines ``parity ...``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from sklearn.metrics import adjusted_rand_score

import segmint
from segmint.config import (
    LifecycleSegmentation,
    RfmSegmentation,
    RuleSpec,
    RulesSegmentation,
    Segmentation,
    ValueTiersSegmentation,
)
from segmint.engines import SparkEngine
from segmint.errors import ConfigError
from segmint.features import compute_features, load_features
from segmint.project import Project
from segmint.segments import rfm_sql, run_segmentation, run_sql

RULES = RulesSegmentation(
    type="rules",
    rules=[
        RuleSpec(segment="big spenders", when="ln(1 + monetary) >= 7 AND frequency >= 3"),
        RuleSpec(
            segment="lapsed regulars",
            when="coalesce(last_active_days, 9999) > 180 AND greatest(frequency, 1) >= 2",
        ),
        RuleSpec(segment="deal seekers", when="round(discount_share, 1) >= 0.2"),
        RuleSpec(
            segment="steady",
            when="monetary / nullif(frequency, 0) BETWEEN 50 AND 150 "
            "AND abs(tenure_days - recency_days) > 365",
        ),
        RuleSpec(segment="app people", when="if(app_share > 0.5, length(lower(country)), 0) = 2"),
    ],
    default="everyone else",
)
SPECS: dict[str, Segmentation] = {
    "rfm": RfmSegmentation(type="rfm"),
    "lifecycle": LifecycleSegmentation(
        type="lifecycle", new_days=60, active_days=90, churned_days=365
    ),
    "value": ValueTiersSegmentation(type="value_tiers"),
    "value_monetary": ValueTiersSegmentation(
        type="value_tiers", feature="monetary", high=0.9, potential=0.35
    ),
    "value_frequency": ValueTiersSegmentation(
        type="value_tiers", feature="frequency", high=0.75, potential=0.4
    ),
    "custom": RULES,
}


@pytest.fixture(scope="module")
def project(spark_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("segments") / "shop"
    shutil.copytree(spark_shop, root)
    with segmint.open_project(root) as p:
        yield p


@pytest.fixture(scope="module")
def features(project: Project) -> pd.DataFrame:
    """One feature run (DuckDB) both engines segment."""
    return compute_features(project.store).data


@pytest.mark.parametrize("name", list(SPECS))
def test_rule_segmentations_on_spark_equal_duckdbs(
    name: str, project: Project, features: pd.DataFrame, spark_engine: SparkEngine
) -> None:
    spec = SPECS[name]
    duck = run_segmentation(project.store, name, spec, features, save=False)
    spark = run_segmentation(project.store, name, spec, features, save=False, engine=spark_engine)
    assert_frame_equal(spark.assignments, duck.assignments, check_exact=True)
    assert spark.metrics == duck.metrics
    assert spark.details == duck.details
    n_segments = duck.assignments["segment"].nunique()
    assert n_segments >= 2  # the parity says something
    print(f"parity {name}: {len(duck.assignments)} users, {n_segments} segments, equal")


def test_rfm_scores_on_spark_equal_duckdbs(
    features: pd.DataFrame, spark_engine: SparkEngine
) -> None:
    duck = run_sql(rfm_sql(), features)
    spark = run_sql(rfm_sql(), features, engine=spark_engine)
    assert_frame_equal(spark, duck, check_exact=True)  # user order, dtypes, every score
    assert set(duck["r_score"]) == {0, 1, 2, 3, 4, 5}
    print(f"parity rfm scores (r, f, m): {len(duck)} users, equal")


def test_a_rule_spark_cannot_run_names_the_rule(
    project: Project, features: pd.DataFrame, spark_engine: SparkEngine
) -> None:
    # DuckDB truncates to decades; Spark's DATE_TRUNC would give NULL, never an error
    odd = RulesSegmentation(
        type="rules",
        rules=[
            RuleSpec(segment="big", when="monetary > 1000"),
            RuleSpec(
                segment="old",
                when="date_trunc('decade', CAST('2024-05-01' AS DATE)) < CAST('2021-01-01' AS DATE)",
            ),
        ],
        default="rest",
    )
    run_segmentation(project.store, "odd", odd, features, save=False)  # DuckDB runs it
    with pytest.raises(ConfigError) as err:
        run_segmentation(project.store, "odd", odd, features, save=False, engine=spark_engine)
    text = str(err.value)
    assert "rule 2 ('old') of segmentation 'odd' cannot run on engine: spark" in text
    assert "date_trunc('decade', ...) has no Spark SQL equivalent" in text


def test_kmeans_on_spark_chooses_the_same_k_and_clusters(
    project: Project, features: pd.DataFrame, spark_engine: SparkEngine
) -> None:
    spec = project.config.segmentations["clusters"]
    duck = run_segmentation(project.store, "clusters", spec, features, save=False)
    spark = run_segmentation(
        project.store, "clusters", spec, features, save=False, engine=spark_engine
    )
    assert spark.details["n_clusters"] == duck.details["n_clusters"]
    assert spark.details["k_scores"] == duck.details["k_scores"]  # the same scan
    assert spark.assignments["user_id"].equals(duck.assignments["user_id"])
    ari = adjusted_rand_score(duck.assignments["detail"], spark.assignments["detail"])
    print(
        f"parity kmeans: {len(duck.assignments)} users, k={duck.details['n_clusters']} on "
        f"both, ARI {ari:.4f}"
    )
    assert ari >= 0.95
    fit = spark.details["fit"]
    assert fit["engine"] == "spark" and fit["master"] == "local[2]"
    assert fit["k_scan_rows"] == fit["fit_rows"] == len(features)
    assert "fit" not in duck.details
    # what follows the fit is the same pipeline: names, rules, an assigner
    assert set(spark.rules) <= set(spark.assignments["segment"])
    assert spark.details["fidelity"] > 0.5


def test_a_spark_project_stores_runs_the_rest_reads(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    config = root / "segmint.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["engine"] = "spark"
    raw["spark"] = {"master": "local[2]"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with segmint.open_project(root) as p:
        assert p.engine is not None
        results = p.segment(["rfm", "vip"])
        assert isinstance(results, list)
        for result in results:
            stored = p.segment_run(result.segmentation)
            assert stored.run_id == result.run_id
            assert_frame_equal(
                stored.assignments[["user_id", "segment"]],
                result.assignments[["user_id", "segment"]],
            )
            personas = p.personas(result.segmentation)
            assert {x.segment for x in personas} == set(result.assignments["segment"])
        duck = run_segmentation(
            p.store,
            "vip",
            p.config.segmentations["vip"],
            load_features(p.store, str(results[1].feature_run_id)),
            save=False,
        )
    assert_frame_equal(
        results[1].assignments[["user_id", "segment"]], duck.assignments[["user_id", "segment"]]
    )
