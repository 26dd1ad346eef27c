"""ALS fitted by Spark MLlib ranks as well as ALS fitted by ``implicit`` under the same
evaluation protocol, and a project with ``engine: spark`` stores its lists where
``Project.recommend`` reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import segmint
from segmint.engines import SparkEngine
from segmint.recommend import ALSRecommender, SparkALSRecommender, evaluate_models
from segmint.store import completed

SEEDS = (0, 1, 2)


def test_mllib_als_ranks_within_implicits_seed_band(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    """One time split, the same interactions and filters, NDCG@10 over the same users.

    The band is implicit's seed-to-seed range over three seeds. Below it, we widen by the
    range itself (three seeds understate seed noise); that side catches a broken bridge
    (scrambled user or item indices, factors of the wrong rows), which drops NDCG to
    popularity's level or lower. Above it, MLlib may legitimately rank better: its
    confidence is ``1 + alpha * strength`` (implicit's ``alpha * strength``) and its
    penalty is scaled by each user's and item's count (ALS-WR); the upper bound, 25% over
    the band, catches leakage of test purchases into training (NDCG would jump far more).
    """
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    models = {f"implicit-{s}": ALSRecommender(random_state=s) for s in SEEDS}
    models["mllib"] = SparkALSRecommender(engine=spark_engine, random_state=0)
    with segmint.open_project(root) as p:
        result = evaluate_models(p.store, models=models, save=False, config=p.config.recommend)
    ndcg = result.table["ndcg@10"]
    band = ndcg[[f"implicit-{s}" for s in SEEDS]]
    low, high = float(band.min()), float(band.max())
    mllib = float(ndcg["mllib"])
    print(
        f"\nNDCG@10 on {result.n_users} users: implicit "
        + ", ".join(f"seed {s} {ndcg[f'implicit-{s}']:.4f}" for s in SEEDS)
        + f"; MLlib {mllib:.4f} (fit {result.table.loc['mllib', 'fit_s']:.1f}s)"
    )
    assert low - (high - low) <= mllib <= 1.25 * high, (mllib, low, high)


def test_a_spark_project_stores_mllib_lists_that_recommend_reads(
    spark_shop: Path, spark_engine: SparkEngine, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    shutil.copytree(spark_shop, root)
    config = root / "segmint.yaml"
    extra = "engine: spark\nrecommend:\n  als:\n    iterations: 3\n"  # the path, not quality
    config.write_text(config.read_text(encoding="utf-8") + extra, encoding="utf-8")
    with segmint.open_project(root) as p:
        run = p.recommend_all("als")
        user = str(p.store.scalar("SELECT min(user_id) FROM orders"))
        bought = set(
            p.store.query(
                "SELECT DISTINCT oi.item_id AS item_id FROM order_items oi JOIN orders o "
                f"ON o.order_id = oi.order_id WHERE o.user_id = '{user}' AND {completed('o')}"
            )["item_id"].astype(str)
        )
        lists = p.recommend(user)
    assert run.params["model_params"]["engine"] == "spark local[2]"
    assert run.params["model_params"]["iterations"] == 3
    assert len(lists) == 10 and set(lists["model"]) == {"als"}
    assert not bought & set(lists["item_id"])  # already bought: filtered, as on DuckDB
