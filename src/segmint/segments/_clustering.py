"""From a ``ClusterSegmentation`` in segmint.yaml to a stored, explained clustering run.

scale -> (optional PCA / factor analysis) -> fit -> evaluate -> surrogate-tree rules ->
readable names -> random-forest assigner (importances; assigns new users later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from segmint.config import ClusterSegmentation
from segmint.errors import ConfigError
from segmint.segments._cluster import (
    NOISE_LABEL,
    AutoKMeans,
    DensityClustering,
    FactorReducer,
    MixtureClustering,
    WardClustering,
)
from segmint.segments._evaluate import evaluate_clustering
from segmint.segments._explain import SegmentAssigner, SurrogateTree, name_clusters
from segmint.segments._identity import cluster_profiles
from segmint.segments._scaling import FeatureScaler

if TYPE_CHECKING:
    from segmint.engines import SparkEngine

NOISE_NAME = "noise"


def _model(spec: ClusterSegmentation, engine: SparkEngine | None = None) -> Any:
    k, lo, hi, seed = spec.k, spec.k_min, spec.k_max, spec.random_state
    if spec.type == "kmeans" and engine is not None:
        from segmint.segments._spark_kmeans import SparkKMeans

        return SparkKMeans(
            engine, k, k_min=lo, k_max=hi, sample_size=spec.sample_size, random_state=seed
        )
    if spec.type == "kmeans":
        return AutoKMeans(k, k_min=lo, k_max=hi, sample_size=spec.sample_size, random_state=seed)
    if spec.type == "ward":
        return WardClustering(k, k_min=lo, k_max=hi, random_state=seed)
    if spec.type == "gmm":
        return MixtureClustering(k, k_min=lo, k_max=hi, random_state=seed)
    return DensityClustering(spec.type, random_state=spec.random_state)


def cluster_inputs(spec: ClusterSegmentation, features: pd.DataFrame, name: str) -> pd.DataFrame:
    """The chosen numeric feature columns, indexed by user_id."""
    missing = [c for c in spec.features if c not in features.columns]
    if missing:
        raise ConfigError(
            f"segmentation {name!r}: unknown feature(s) {missing}; available: "
            f"{', '.join(c for c in features.columns if c not in ('user_id', 'run_id'))}"
        )
    frame = features.set_index("user_id")[spec.features]
    bad = [c for c in spec.features if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ConfigError(f"segmentation {name!r}: features {bad} are not numeric")
    return frame.astype("float64")


def run_clustering(
    name: str,
    spec: ClusterSegmentation,
    features: pd.DataFrame,
    *,
    engine: SparkEngine | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str], dict[str, Any]]:
    """Fit, evaluate and explain one clustering; return (assignments, metrics, rules, details).

    With a Spark ``engine`` k-means chooses k on a sample as :class:`AutoKMeans` does and
    fits on all rows with MLlib (``details["fit"]`` says where); the other methods, the
    evaluation and the explanations run here.
    """
    if spec.k != "auto" and not isinstance(spec.k, int):  # pragma: no cover - pydantic
        raise ConfigError(f"segmentation {name!r}: k must be 'auto' or an integer")
    raw = cluster_inputs(spec, features, name)
    details: dict[str, Any] = {}
    # one BLAS/OpenMP thread per process: 2 cores shared with DuckDB do better this way
    with threadpool_limits(limits=1):
        scaler = FeatureScaler(scaling=spec.scaling, log1p=spec.log1p).fit(raw)
        X = scaler.transform(raw)
        scaled = X
        details["scaling"] = scaler.describe().to_dict(orient="records")
        if spec.reduce:
            reducer = FactorReducer(spec.reduce, n_components=spec.n_components).fit(X)
            X = reducer.transform(X)
            details["loadings"] = reducer.loadings_.round(4).to_dict(orient="index")
            if hasattr(reducer, "explained_variance_ratio_"):
                details["explained_variance_ratio"] = reducer.explained_variance_ratio_.round(
                    4
                ).to_dict()
        model = _model(spec, engine).fit(X)
        if hasattr(model, "describe"):
            details["fit"] = model.describe()
        labels = np.asarray(model.labels_)
        X_arr = np.asarray(X, dtype="float64")
        refit = None
        if spec.type in ("kmeans", "ward", "gmm"):
            k = int(model.n_clusters_)

            def refit(data: np.ndarray) -> Any:
                return KMeans(k, n_init=1, random_state=spec.random_state).fit(data)

        revenue = features.set_index("user_id").loc[raw.index, "monetary"].to_numpy()
        quality = evaluate_clustering(
            X_arr,
            labels,
            revenue=revenue,
            sample_size=spec.sample_size,
            n_bootstrap=5,
            refit=refit,
            random_state=spec.random_state,
        )
        details.update(_k_search(model))
        names = name_clusters(raw, labels)
        seg_name = {lab: (NOISE_NAME if lab == NOISE_LABEL else names[lab]) for lab in names}
        seg_name.setdefault(NOISE_LABEL, NOISE_NAME)
        segments = pd.Series(labels).map(seg_name).to_numpy()
        # the cluster's identity across runs: its centroid in transformed (log1p) units
        transformed = scaled * scaler.scale_ + scaler.center_
        details["clusters"] = cluster_profiles(transformed, labels, seg_name, NOISE_LABEL)
        details["centroid_scale"] = {str(k): float(v) for k, v in scaler.scale_.items()}
        rules = _explain(raw, segments, spec.random_state, details)
        details["names"] = {str(seg_name[lab]): f"cluster {lab}" for lab in sorted(seg_name)}
        details["n_clusters"] = int(model.n_clusters_)
    assignments = pd.DataFrame(
        {"user_id": raw.index.to_numpy(), "segment": segments, "detail": labels.astype(str)}
    )
    if hasattr(model, "probabilities_"):
        assignments["probability"] = np.asarray(model.probabilities_, dtype="float64")
    metrics = {
        key: (round(float(v), 6) if isinstance(v, float | np.floating) else v)
        for key, v in quality.items()
        if key not in ("sizes", "shares", "revenue_share")
    }
    return assignments, metrics, rules, details


def _k_search(model: Any) -> dict[str, Any]:
    """What a model with automatic k says of its choice (k scores, decision, elbow)."""
    out: dict[str, Any] = {}
    if getattr(model, "k_scores_", None) is not None:
        out["k_scores"] = model.k_scores_.reset_index().round(6).to_dict(orient="records")
    if getattr(model, "decision_", None):
        out["decision"] = model.decision_
    if getattr(model, "elbow_k_", None) is not None:
        out["elbow_k"] = int(model.elbow_k_)
    return out


def _explain(
    raw: pd.DataFrame, segments: np.ndarray, seed: int | None, details: dict[str, Any]
) -> dict[str, str]:
    """Surrogate-tree rules per segment and the random-forest assigner (into ``details``)."""
    # the tree sees missing values as missing (never the imputed median), so a rule
    # never selects one-off buyers by a gap they do not have
    tree = SurrogateTree(random_state=seed).fit(raw, segments)
    details["fidelity"] = round(tree.fidelity_, 2)
    details["rule_table"] = tree.rule_table_.to_dict(orient="records")
    assigner = SegmentAssigner(random_state=seed).fit(raw.fillna(raw.median()), segments)
    details["feature_importances"] = assigner.feature_importances_.round(4).to_dict()
    details["assigner_oob_accuracy"] = round(assigner.oob_score_, 4)
    return {seg: " OR ".join(f"({r})" for r in rs) for seg, rs in tree.rules_.items() if rs}


def assign_segments(
    features_train: pd.DataFrame,
    assignments: pd.DataFrame,
    features_new: pd.DataFrame,
    columns: list[str],
    *,
    random_state: int = 0,
) -> pd.DataFrame:
    """Assign new or changed users to an existing segmentation without refitting it.

    A random forest learns the stored run's segments from the features it was fitted on
    and predicts segments (with their probability) for ``features_new``.
    """
    train = features_train.set_index("user_id")[columns].astype("float64")
    y = assignments.set_index("user_id").loc[train.index, "segment"].to_numpy()
    medians = train.median()
    forest = SegmentAssigner(random_state=random_state).fit(train.fillna(medians), y)
    new = features_new.set_index("user_id")[columns].astype("float64").fillna(medians)
    proba = forest.predict_proba(new)
    return pd.DataFrame(
        {
            "user_id": new.index.to_numpy(),
            "segment": forest.predict(new),
            "probability": proba.max(axis=1),
        }
    )
