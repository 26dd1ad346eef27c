"""The refresh loop's measures: who moved between two runs, and what drifted.

:meth:`segmint.Project.refresh` recomputes features and segments, then compares every
segmentation's new run with its previous one here (:func:`compare_runs`, on the store).

Drift is measured with the population stability index (PSI; Siddiqi 2006), the usual
credit-scoring measure of how far one distribution moved from another:
``sum((actual - expected) * ln(actual / expected))`` over shares. Conventional reading:
below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major shift.

* **size drift** of a segmentation: PSI of the segment shares, previous run -> new run;
  a segment is flagged when its share moved by more than ``size_change`` (relative) or
  appeared / vanished;
* **profile drift** of a segment: for each profile feature, PSI of the feature's
  distribution among the segment's members (decile bins of the previous members); the
  segment is flagged when the largest of these exceeds ``psi_threshold``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint.experiments._stats import psi

if TYPE_CHECKING:
    from segmint.store import Store

PROFILE_FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "spend_90d",
    "events_30d",
)
"""Features whose distribution within a segment defines its profile for drift."""


@dataclass(frozen=True)
class SegmentationRefresh:
    """One segmentation's new run compared with its previous one.

    Attributes
    ----------
    sizes : DataFrame
        Per segment: ``users_before, users_after, share_before, share_after,
        share_change`` (relative), ``size_flag``, ``profile_psi`` (largest feature PSI),
        ``profile_feature`` (the feature it came from), ``profile_flag``.
    migrations : DataFrame
        From-segment x to-segment user counts (``(absent)`` for users in one run only).
    profile : DataFrame
        Tidy: ``segment, feature, psi`` for every profile feature.
    """

    segmentation: str
    run_id: str
    previous_run_id: str | None
    size_psi: float
    moved: int
    n_users: int
    sizes: pd.DataFrame
    migrations: pd.DataFrame
    profile: pd.DataFrame

    @property
    def flagged(self) -> list[str]:
        """Segments whose size or profile drifted beyond the thresholds."""
        f = self.sizes
        return [str(s) for s in f.loc[f["size_flag"] | f["profile_flag"], "segment"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "segmentation": self.segmentation,
            "run_id": self.run_id,
            "previous_run_id": self.previous_run_id,
            "size_psi": self.size_psi,
            "moved": self.moved,
            "n_users": self.n_users,
            "flagged": self.flagged,
            "sizes": json.loads(self.sizes.to_json(orient="records")),
            "migrations": json.loads(self.migrations.to_json(orient="split")),
            "profile": json.loads(self.profile.to_json(orient="records")),
        }


@dataclass(frozen=True)
class RefreshResult:
    """What ``segmint refresh`` did: a feature run, a new run per segmentation, the drift."""

    feature_run_id: str
    as_of: datetime
    segmentations: list[SegmentationRefresh] = field(default_factory=list)
    psi_threshold: float = 0.25
    size_change: float = 0.2
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_run_id": self.feature_run_id,
            "as_of": self.as_of.isoformat(),
            "psi_threshold": self.psi_threshold,
            "size_change": self.size_change,
            "segmentations": [s.to_dict() for s in self.segmentations],
            "seconds": round(self.seconds, 3),
        }


def feature_psi(before: np.ndarray, after: np.ndarray, bins: int = 10) -> float:
    """PSI of a numeric feature: bins are the quantiles of ``before`` (NaN is its own bin)."""
    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    if b.size == 0 or a.size == 0:
        return float("nan")
    finite = b[np.isfinite(b)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        if finite.size
        else np.array([])
    )

    def counts(x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x)
        c = np.bincount(np.searchsorted(edges, x[ok], side="right"), minlength=edges.size + 1)
        return np.append(c, (~ok).sum())

    return float(psi(counts(b), counts(a)))


def compare_runs(
    store: Store,
    previous_run_id: str | None,
    run_id: str,
    *,
    features_before: pd.DataFrame | None,
    features_after: pd.DataFrame,
    profile_features: Sequence[str] = PROFILE_FEATURES,
    psi_threshold: float = 0.25,
    size_change: float = 0.2,
) -> SegmentationRefresh:
    """Sizes, migrations and drift of ``run_id`` against ``previous_run_id``."""
    from segmint.segments import diff_runs, load_run

    new = load_run(store, run_id)
    after = new.assignments[["user_id", "segment"]].astype(str)
    n_after = len(after)
    if previous_run_id is None:
        return SegmentationRefresh(
            new.segmentation, run_id, None, float("nan"), 0, n_after,
            _order(_first_sizes(after, n_after)), pd.DataFrame(),
            pd.DataFrame(columns=["segment", "feature", "psi"]),
        )  # fmt: skip
    old = load_run(store, previous_run_id)
    before = old.assignments[["user_id", "segment"]].astype(str)
    sizes, size_psi = _sizes(before, after, size_change)
    migrations = diff_runs(store, previous_run_id, run_id)
    profile = pd.DataFrame(
        _profile_psi(before, after, features_before, features_after, profile_features),
        columns=["segment", "feature", "psi"],
    )
    if profile.empty or profile["psi"].isna().all():
        sizes["profile_psi"] = np.nan
        sizes["profile_feature"] = None
    else:
        top = profile.dropna(subset=["psi"]).sort_values("psi", ascending=False)
        top = top.drop_duplicates("segment").set_index("segment")
        sizes["profile_psi"] = sizes["segment"].map(top["psi"])
        sizes["profile_feature"] = sizes["segment"].map(top["feature"])
    sizes["profile_flag"] = sizes["profile_psi"].fillna(0) > psi_threshold
    return SegmentationRefresh(
        new.segmentation, run_id, previous_run_id, size_psi, _moved(before, after), n_after,
        _order(sizes), migrations, profile,
    )  # fmt: skip


def _first_sizes(after: pd.DataFrame, n_after: int) -> pd.DataFrame:
    """The sizes of a segmentation's first run: nothing before, nothing flagged."""
    sizes = after.groupby("segment").size().rename("users_after").reset_index()
    sizes["users_before"] = 0
    sizes["share_before"] = np.nan
    sizes["share_after"] = sizes["users_after"] / max(n_after, 1)
    sizes["share_change"] = np.nan
    sizes["size_flag"] = False
    sizes["profile_psi"] = np.nan
    sizes["profile_feature"] = None
    sizes["profile_flag"] = False
    return sizes


def _sizes(
    before: pd.DataFrame, after: pd.DataFrame, size_change: float
) -> tuple[pd.DataFrame, float]:
    """Per segment of either run: users and shares before and after, the relative change
    and its flag; and the PSI of the segment shares."""
    nb, na = before.groupby("segment").size(), after.groupby("segment").size()
    segs = sorted(set(nb.index) | set(na.index))
    nb, na = nb.reindex(segs, fill_value=0), na.reindex(segs, fill_value=0)
    size_psi = float(psi(nb.to_numpy(), na.to_numpy()))
    sb, sa = nb / max(int(nb.sum()), 1), na / max(int(na.sum()), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (sa - sb) / sb
    sizes = pd.DataFrame(
        {
            "segment": segs,
            "users_before": nb.to_numpy(),
            "users_after": na.to_numpy(),
            "share_before": sb.to_numpy(),
            "share_after": sa.to_numpy(),
            "share_change": change.to_numpy(),
        }
    )
    sizes["size_flag"] = (
        (sizes["users_before"] == 0)
        | (sizes["users_after"] == 0)
        | (sizes["share_change"].abs() > size_change)
    )
    return sizes, size_psi


def _moved(before: pd.DataFrame, after: pd.DataFrame) -> int:
    """Users whose segment changed, plus those in one run only."""
    merged = before.merge(after, on="user_id", how="inner", suffixes=("_a", "_b"))
    moved = int((merged["segment_a"] != merged["segment_b"]).sum())
    moved += int((~before["user_id"].isin(after["user_id"])).sum())
    moved += int((~after["user_id"].isin(before["user_id"])).sum())
    return moved


def _profile_psi(
    before: pd.DataFrame,
    after: pd.DataFrame,
    features_before: pd.DataFrame | None,
    features_after: pd.DataFrame,
    profile_features: Sequence[str],
) -> list[dict[str, Any]]:
    """Per segment and profile feature: the PSI of the feature among the segment's members
    before and after (none without the previous features)."""
    if features_before is None:
        return []
    nb, na = before.groupby("segment").size(), after.groupby("segment").size()
    segs = sorted(set(nb.index) | set(na.index))
    fb = before.merge(features_before, on="user_id", how="left")
    fa = after.merge(features_after, on="user_id", how="left")
    feats = [f for f in profile_features if f in fb.columns and f in fa.columns]
    rows = []
    for seg in segs:
        xb, xa = fb[fb["segment"] == seg], fa[fa["segment"] == seg]
        for feat in feats:
            value = (
                feature_psi(xb[feat].to_numpy(float), xa[feat].to_numpy(float))
                if len(xb) and len(xa)
                else np.nan
            )
            rows.append({"segment": seg, "feature": feat, "psi": value})
    return rows


def _order(sizes: pd.DataFrame) -> pd.DataFrame:
    return sizes.sort_values("users_after", ascending=False, kind="stable").reset_index(drop=True)
