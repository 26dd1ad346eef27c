"""Every code block of docs/api.md runs, in order, in one namespace (on plain data)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_page_has_the_examples() -> None:
    code = "\n".join(blocks())
    for name in (
        "AutoKMeans",
        "WardClustering",
        "MixtureClustering",
        "DensityClustering",
        "FactorReducer",
        "FeatureScaler",
        "SurrogateTree",
        "SegmentAssigner",
        "name_clusters",
        "evaluate_clustering",
        "PopularityRecommender",
        "ItemKNNRecommender",
        "ALSRecommender",
        "BPRRecommender",
        "ContentRecommender",
        "SegmentPopularityRecommender",
        "HybridRecommender",
        "ranking_metrics",
        "wilson_interval",
        "newcombe_interval",
        "two_proportion_ztest",
        "welch_ttest",
        "cuped",
        "srm_test",
        "holm",
        "benjamini_hochberg",
        "bootstrap_means",
        "bootstrap_diff_interval",
        "percentile_interval",
        "mde_proportion",
        "users_needed_proportion",
        "mde_mean",
        "users_needed_mean",
        "TLearner",
        "qini_coefficient",
        "uplift_by_decile",
    ):
        assert re.search(rf"from segmint\.\w+ import [^\n]*\b{name}\b", code), name


def test_every_block_runs() -> None:
    namespace: dict[str, object] = {"__name__": "docs_api"}
    out = io.StringIO()
    for i, code in enumerate(blocks()):
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"docs/api.md block {i}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"docs/api.md block {i} failed: {type(exc).__name__}: {exc}\n{code}")
    # a few figures the page's prose relies on
    km = namespace["km"]
    assert 2 <= km.n_clusters_ <= 6  # type: ignore[attr-defined]
