"""ALS fitted by Spark MLlib (``engine: spark``), scored by segmint's factor code."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from segmint.errors import ConfigError
from segmint.recommend._interactions import Interactions
from segmint.recommend._models import Weighting, _FactorModel, weighted

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

__all__ = ["SparkALSRecommender"]

log = logging.getLogger(__name__)


class SparkALSRecommender(_FactorModel):
    """Matrix factorisation for implicit feedback, fitted by ``pyspark.ml`` ALS.

    The model a project with ``engine: spark`` gets for ``als``: the same weighted
    interaction matrix as :class:`ALSRecommender` goes to Spark as (user index, item
    index, strength) rows, MLlib's ``ALS(implicitPrefs=True)`` learns the factors, and
    they come back to the driver as numpy arrays. Scoring, filters, fallbacks, reasons
    and top-n are then :class:`ALSRecommender`'s own code.

    Parameters
    ----------
    engine : SparkEngine
        The Spark engine whose session fits the model.
    factors : int, default 32
        Latent factors (MLlib's ``rank``).
    iterations : int, default 15
        ALS sweeps (``maxIter``).
    regularization : float, default 0.1
        L2 penalty (``regParam``).
    alpha : float, default 1.0
        Confidence scale.
    weighting : {'none', 'log', 'bm25'}, default 'log'
        Rescaling of interaction strengths before the confidence.
    random_state : int, default 0
        Seed of the factor initialisation (``seed``).

    Notes
    -----
    The two libraries define two terms differently: MLlib's confidence of an observed
    pair is ``1 + alpha * strength`` (implicit's is ``alpha * strength``), and MLlib
    scales the L2 penalty by the user's (item's) number of interactions (ALS-WR; implicit
    adds it once). The factors therefore differ; the recommendations are of the same
    quality (``tests/spark/test_recommend.py`` checks NDCG@10 against implicit's band).
    """

    name = "als"

    def __init__(
        self,
        *,
        engine: SparkEngine,
        factors: int = 32,
        iterations: int = 15,
        regularization: float = 0.1,
        alpha: float = 1.0,
        weighting: Weighting = "log",
        random_state: int = 0,
    ) -> None:
        self.engine = engine
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.weighting = weighting
        self.random_state = random_state

    def _fit(self, interactions: Interactions) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ConfigError("factors and iterations must be at least 1")
        from pyspark.ml.recommendation import ALS

        spark = self.engine.session
        self.spark_master_ = str(spark.sparkContext.master)
        rows = self._rows(interactions)
        blocks = max(1, int(spark.sparkContext.defaultParallelism))
        als = ALS(
            rank=self.factors,
            maxIter=self.iterations,
            regParam=self.regularization,
            alpha=self.alpha,
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="strength",
            coldStartStrategy="drop",
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            seed=self.random_state,
        )
        frame = spark.createDataFrame(rows)
        model = als.fit(frame)
        users = self._factors(model.userFactors, interactions.n_users)
        items = self._factors(model.itemFactors, interactions.n_items)
        self._set_factors(users, items)

    def _rows(self, interactions: Interactions) -> pa.Table:
        """The weighted matrix as (user, item, strength) rows, integer indices."""
        coo = weighted(interactions.matrix, self.weighting).tocoo()
        return pa.table(
            {
                "user": pa.array(coo.row.astype(np.int32)),
                "item": pa.array(coo.col.astype(np.int32)),
                "strength": pa.array(coo.data.astype(np.float32)),
            }
        )

    def _factors(self, frame: Any, n: int) -> np.ndarray:
        """MLlib's ``(id, features)`` factors as an ``n x factors`` array (zeros for an
        index without interactions, which MLlib has no row for)."""
        table = self.engine.to_arrow(frame)
        ids = table.column("id").to_numpy()
        out = np.zeros((n, self.factors), dtype=np.float32)
        if ids.size:
            flat = table.column("features").combine_chunks().flatten().to_numpy()
            out[ids] = flat.reshape(ids.size, self.factors)
        return out

    def get_params(self) -> dict[str, Any]:
        """The parameters (for the run record); the engine as the master it ran on."""
        params = super().get_params()
        master = getattr(self, "spark_master_", self.engine.settings.master)
        params["engine"] = f"spark {master}"
        return params
