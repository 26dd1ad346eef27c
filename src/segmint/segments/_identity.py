"""A cluster's identity across runs: keys matched by centroid, not by name or number.

Every clustering run stores, per cluster, its centroid in *transformed* units (after the
log1p the scaler applied, before centring and scaling) and the scale of each feature. A new
run is matched to the previous run of the same segmentation with the Hungarian algorithm on
the distance between centroids, in units of the new run's scale:

    distance = sqrt(mean over features of ((c_new - c_old) / scale_new) ** 2)

(the root mean square difference, in standard deviations, so it does not grow with the
number of features). A pair at most ``MATCH_THRESHOLD`` apart is the same cluster: the new
cluster inherits the old one's key (``c1``, ``c2``, ...), whatever its number or generated
name now is. A cluster without a match is new and gets the next unused key.

Playbook strategies for clusterings resolve through these keys (see
:mod:`segmint.campaigns`), so a re-clustering that renames or renumbers clusters keeps
each strategy with its cluster.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

__all__ = ["MATCH_THRESHOLD", "cluster_profiles", "link_clusters", "match_clusters"]

#: Largest centroid distance (root mean square, in standard deviations of each feature)
#: at which a cluster of a new run is the same cluster as one of the previous run.
MATCH_THRESHOLD = 0.5


def cluster_profiles(
    transformed: pd.DataFrame, labels: np.ndarray, names: dict[Any, str], noise_label: int = -1
) -> list[dict[str, Any]]:
    """Per cluster (noise excluded): label, name, size and centroid in transformed units."""
    out = []
    for label in sorted(set(labels.tolist())):
        if label == noise_label:
            continue
        member = labels == label
        centroid = transformed.loc[member].mean(axis=0)
        out.append(
            {
                "label": int(label),
                "name": str(names[label]),
                "n_users": int(member.sum()),
                "centroid": {str(k): round(float(v), 6) for k, v in centroid.items()},
            }
        )
    return out


def _distance(a: dict[str, float], b: dict[str, float], scale: dict[str, float]) -> float:
    shared = [f for f in b if f in a and scale.get(f, 0) > 0]
    if not shared:
        return math.inf
    return math.sqrt(sum(((a[f] - b[f]) / scale[f]) ** 2 for f in shared) / len(shared))


def match_clusters(
    previous: list[dict[str, Any]],
    current: list[dict[str, Any]],
    scale: dict[str, float],
    *,
    threshold: float = MATCH_THRESHOLD,
) -> list[tuple[int | None, float]]:
    """For each current cluster: (index of its match in ``previous`` or None, distance).

    One-to-one (Hungarian algorithm on the centroid distances, in units of ``scale``);
    pairs farther apart than ``threshold`` are not matches (the distance reported is then
    to the nearest previous cluster, or inf when there is none).
    """
    if not previous or not current:
        return [(None, math.inf) for _ in current]
    cost = np.array(
        [[_distance(p["centroid"], c["centroid"], scale) for p in previous] for c in current]
    )
    finite = np.where(np.isfinite(cost), cost, 1e12)
    rows, cols = linear_sum_assignment(finite)
    out: list[tuple[int | None, float]] = [
        (None, float(np.min(cost[i]))) for i in range(len(current))
    ]
    for r, c in zip(rows, cols, strict=True):
        if cost[r, c] <= threshold:
            out[r] = (int(c), float(cost[r, c]))
    return out


def _key_number(key: str) -> int:
    return int(key[1:]) if key[:1] == "c" and key[1:].isdigit() else 0


def link_clusters(
    details: dict[str, Any],
    previous: dict[str, Any] | None,
    *,
    previous_run: str | None = None,
    threshold: float = MATCH_THRESHOLD,
) -> dict[str, Any]:
    """Give each cluster of ``details["clusters"]`` a key, inherited from its match in the
    previous run's ``details`` when there is one; returns ``details`` (changed in place).

    Each cluster gets ``key``, and when matched ``matched_from`` (the previous name),
    ``previous_key`` and ``distance``; ``details["last_key"]`` is the highest key number
    used so far (keys of vanished clusters are never reused).
    """
    clusters = details.get("clusters", [])
    scale = details.get("centroid_scale", {})
    before = (previous or {}).get("clusters", []) if previous else []
    before = [c for c in before if "key" in c]
    last = int((previous or {}).get("last_key", 0) or 0)
    last = max([last, *(_key_number(c["key"]) for c in before)])
    matches = match_clusters(before, clusters, scale, threshold=threshold)
    # new clusters are numbered largest first, so a first run's c1 is its biggest cluster
    order = sorted(range(len(clusters)), key=lambda i: (-clusters[i]["n_users"], i))
    for i in order:
        cluster = clusters[i]
        index, distance = matches[i]
        cluster["distance"] = None if not math.isfinite(distance) else round(distance, 4)
        if index is None:
            last += 1
            cluster["key"] = f"c{last}"
            cluster["matched_from"] = None
        else:
            old = before[index]
            cluster["key"] = old["key"]
            cluster["matched_from"] = old["name"]
    details["last_key"] = last
    details["previous_run"] = previous_run
    details["match_threshold"] = threshold
    return details
