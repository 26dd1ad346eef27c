"""The playbook survives re-clustering: strategies follow a cluster's identity (matched by
centroid, or pinned with `cluster:`), not its generated name or number."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from segmint.campaigns import plan_campaign, preview, validate_playbook
from segmint.campaigns._resolve import resolve_segments
from segmint.cli import app
from segmint.config import ClusterSegmentation
from segmint.segments import run_segmentation
from segmint.segments._identity import link_clusters, match_clusters
from segmint.segments._runs import SegmentResult, save_run
from segmint.store import Store, latest_run_sql, open_store

from .conftest import TINY_PLAYBOOK, build_tiny_store, tiny_config

SCALE = {"recency_days": 1.0, "frequency": 0.5}


def test_hungarian_matching_on_hand_made_centroids() -> None:
    before = [
        {"name": "a", "key": "c1", "centroid": {"x": 0.0, "y": 0.0}, "n_users": 5},
        {"name": "b", "key": "c2", "centroid": {"x": 5.0, "y": 5.0}, "n_users": 5},
        {"name": "c", "key": "c3", "centroid": {"x": 10.0, "y": 0.0}, "n_users": 5},
    ]
    now = [
        {"name": "c now", "centroid": {"x": 10.2, "y": 0.0}, "n_users": 5},
        {"name": "a now", "centroid": {"x": 0.0, "y": 0.1}, "n_users": 5},
        {"name": "far", "centroid": {"x": 30.0, "y": 30.0}, "n_users": 5},
    ]
    scale = {"x": 1.0, "y": 1.0}
    got = match_clusters(before, now, scale)
    # RMS distances: sqrt(0.2^2 / 2), sqrt(0.1^2 / 2); "far" is 25 from b (no match)
    assert got[0] == (2, pytest.approx(math.sqrt(0.02)))
    assert got[1] == (0, pytest.approx(math.sqrt(0.005)))
    assert got[2] == (None, pytest.approx(25.0))
    details = link_clusters(
        {"clusters": now, "centroid_scale": scale}, {"clusters": before, "last_key": 3}
    )
    assert [c["key"] for c in details["clusters"]] == ["c3", "c1", "c4"]
    assert [c["matched_from"] for c in details["clusters"]] == ["c", "a", None]
    assert details["last_key"] == 4


def _run(
    store: Store, run_id: str, created: str, clusters: list[tuple[str, list[str], dict[str, float]]]
) -> dict[str, Any]:
    """Store a run of 'clus' (label = position in ``clusters``), keys linked to the
    previous run as run_segmentation does."""
    previous = store.scalar(latest_run_sql("segment", columns="details", segmentation="clus"))
    details: dict[str, Any] = {
        "clusters": [
            {"label": i, "name": name, "n_users": len(users), "centroid": centroid}
            for i, (name, users, centroid) in enumerate(clusters)
        ],
        "centroid_scale": SCALE,
    }
    if previous is not None and not isinstance(previous, dict):  # DuckDB: text; psycopg: dict
        previous = json.loads(str(previous))
    link_clusters(details, previous)
    rows = [(u, name, str(i)) for i, (name, users, _) in enumerate(clusters) for u in users]
    save_run(
        store,
        SegmentResult(
            run_id=run_id,
            segmentation="clus",
            method="kmeans",
            created_at=datetime.fromisoformat(created).replace(tzinfo=UTC),
            feature_run_id=None,
            as_of=None,
            assignments=pd.DataFrame(rows, columns=["user_id", "segment", "detail"]),
            details=details,
        ),
    )
    return details


FIRST = [
    ("Recent · frequent", ["u01", "u02", "u03"], {"recency_days": 1.0, "frequency": 2.0}),
    ("Lapsed · one-off", ["u04", "u05", "u06", "u07"], {"recency_days": 5.0, "frequency": 0.7}),
    ("Typical", ["u08", "u09", "u10"], {"recency_days": 3.0, "frequency": 1.2}),
]
# numbering permuted, one name changed (centroid moved 0.12 sd in each feature), one new
SECOND = [
    ("Lapsed · one-off", ["u04", "u05", "u06", "u07"], {"recency_days": 5.0, "frequency": 0.7}),
    ("Recent · big baskets", ["u01", "u02"], {"recency_days": 1.12, "frequency": 2.06}),
    ("Typical", ["u08", "u09"], {"recency_days": 3.0, "frequency": 1.2}),
    ("Browsers", ["u03", "u10"], {"recency_days": 20.0, "frequency": 9.0}),
]
PLAYBOOK: dict[str, Any] = {
    **TINY_PLAYBOOK,
    "templates": {"hello": {"subject": "Hi", "body": "{{ segment }}|{{ offer.label }}"}},
    "strategies": {
        "clus": {
            "Recent · frequent": {"template": "hello", "offer": {"type": "amount", "value": 5}},
            "Lapsed · one-off": {"template": "hello", "offer": {"type": "percent", "value": 20}},
            "Regulars": {"template": "hello", "cluster": "c3"},
            "*": {"template": "hello"},
        }
    },
    "campaigns": {
        "clus_all": {"segmentation": "clus"},
        "clus_recent": {"segmentation": "clus", "segments": ["Recent · frequent"]},
    },
}


@pytest.fixture()
def reclustered(tmp_path: Path) -> Store:
    store = build_tiny_store(str(tmp_path / "tiny.duckdb"))
    first = _run(store, "s-1-clus", "2026-10-01 00:00:00", FIRST)
    assert [c["key"] for c in first["clusters"]] == ["c2", "c1", "c3"]  # biggest is c1
    second = _run(store, "s-2-clus", "2026-11-01 00:00:00", SECOND)
    assert [c["key"] for c in second["clusters"]] == ["c1", "c2", "c3", "c4"]
    assert second["clusters"][1]["distance"] == pytest.approx(0.12)
    return store


def test_strategies_follow_the_matched_clusters(reclustered: Store) -> None:
    config = tiny_config(PLAYBOOK)
    known = ["Browsers", "Lapsed · one-off", "Recent · big baskets", "Typical"]
    keys = resolve_segments(reclustered, config.playbook, "clus", "s-2-clus", known)
    assert keys.strategy_keys() == {
        "Recent · big baskets": "Recent · frequent",  # renamed: matched by centroid
        "Lapsed · one-off": "Lapsed · one-off",  # renumbered: same name
        "Typical": "Regulars",  # pinned to c3
    }
    assert validate_playbook(reclustered, config) == [
        "clus: cluster 'Recent · frequent' is now 'Recent · big baskets' (matched by "
        "centroid, distance 0.12); strategy kept",
        "clus: cluster 'Browsers' (c4) is new: no strategy; clusters without a strategy get "
        "the default ('*')",
    ]


def test_a_campaign_naming_the_old_cluster_reaches_its_members(reclustered: Store) -> None:
    config = tiny_config(PLAYBOOK)
    plan = plan_campaign(reclustered, config, "clus_recent")
    assert set(plan.by_segment["segment"]) == {"Recent · big baskets"}
    assert plan.n_treatment == 2  # u01 and u02 (u03 moved to the new cluster)
    bodies = {m.body for m in preview(reclustered, config, "clus_all", n=10)}
    # u01/u02 keep the amount offer, u07 the percentage, u10 (new cluster) the default
    assert bodies == {"Recent · big baskets|$5 off", "Lapsed · one-off|20% off", "Browsers|"}


def test_playbook_check_explains_what_moved(reclustered: Store, tmp_path: Path) -> None:
    reclustered.close()
    doc = {"project": "t", "store": "tiny.duckdb", "playbook": PLAYBOOK}
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    result = CliRunner().invoke(app, ["playbook", "check", "-p", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    moved = "cluster 'Recent · frequent' is now 'Recent · big baskets' (matched by centroid,"
    assert moved + " distance 0.12); strategy kept" in out
    assert "cluster 'Browsers' (c4) is new: no strategy" in out
    assert "playbook ok: 2 campaigns" in out


def test_a_strategy_for_a_name_never_seen_is_still_an_error(reclustered: Store) -> None:
    from segmint.errors import ConfigError

    pb = {
        **PLAYBOOK,
        "strategies": {"clus": {"Recnet · frequent": {"template": "hello"}}},
        "campaigns": {"clus_all": {"segmentation": "clus"}},
    }
    with pytest.raises(ConfigError, match="unknown segment 'Recnet · frequent'"):
        validate_playbook(reclustered, tiny_config(pb))


def test_real_reclustering_keeps_keys_when_numbering_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blobs = [(5, 12, 900), (60, 4, 300), (300, 1, 40)]  # recency, frequency, monetary
    rows = [
        {"recency_days": r * rng.lognormal(0, 0.1), "frequency": f, "monetary": m}
        for r, f, m in blobs
        for _ in range(100)
    ]
    features = pd.DataFrame(rows)
    features.insert(0, "user_id", [f"u{i:03d}" for i in range(len(features))])
    store = open_store(str(tmp_path / "s.duckdb"))
    spec = ClusterSegmentation(
        type="kmeans", features=["recency_days", "frequency", "monetary"], k=3
    )
    first = run_segmentation(store, "clusters", spec, features)
    shuffled = features.sample(frac=1.0, random_state=1).reset_index(drop=True)
    second = run_segmentation(
        store, "clusters", spec.model_copy(update={"random_state": 7}), shuffled
    )

    def key_of_user(result: SegmentResult) -> dict[str, str]:
        key = {str(c["label"]): c["key"] for c in result.details["clusters"]}
        a = result.assignments
        return dict(zip(a["user_id"], a["detail"].map(key), strict=True))

    assert key_of_user(first) == key_of_user(second)
    assert all(c["distance"] < 0.1 for c in second.details["clusters"])
    assert sorted(c["key"] for c in second.details["clusters"]) == ["c1", "c2", "c3"]
    store.close()


def test_default_playbook_pins_each_cluster(reclustered: Store) -> None:
    from segmint.campaigns import default_playbook
    from segmint.config import Config

    config = Config.model_validate(
        {"segmentations": {"clus": {"type": "kmeans", "features": ["frequency"]}}}
    )
    text = default_playbook(config, store=reclustered)
    strategies = yaml.safe_load(text)["playbook"]["strategies"]["clus"]
    pins = {name: s.get("cluster") for name, s in strategies.items()}
    assert pins == {
        "Lapsed · one-off": "c1",
        "Recent · big baskets": "c2",
        "Typical": "c3",
        "Browsers": "c4",
        "*": None,
    }


def test_a_campaign_may_name_a_pinned_cluster_by_its_key(reclustered: Store) -> None:
    pb = {**PLAYBOOK, "campaigns": {"regulars": {"segmentation": "clus", "segments": ["c3"]}}}
    pb["strategies"] = {
        "clus": {k: v for k, v in PLAYBOOK["strategies"]["clus"].items() if k != "*"}
    }
    plan = plan_campaign(reclustered, tiny_config(pb), "regulars")
    # c3 is 'Typical' now: u08 and u09 (no consent, and at the frequency cap)
    assert plan.funnel["remaining"].iloc[0] == 2


def test_strategies_follow_the_matched_clusters_on_postgresql(pg_url: str) -> None:
    store = build_tiny_store(pg_url)
    try:
        _run(store, "s-1-clus", "2026-10-01 00:00:00", FIRST)
        second = _run(store, "s-2-clus", "2026-11-01 00:00:00", SECOND)
        assert [c["key"] for c in second["clusters"]] == ["c1", "c2", "c3", "c4"]
        config = tiny_config(PLAYBOOK)
        assert validate_playbook(store, config)[0].startswith(
            "clus: cluster 'Recent · frequent' is now 'Recent · big baskets'"
        )
        plan = plan_campaign(store, config, "clus_recent")
        assert set(plan.by_segment["segment"]) == {"Recent · big baskets"}
    finally:
        store.close()


def test_a_pinned_strategy_written_for_an_old_name_says_it_moved(reclustered: Store) -> None:
    strategies = {
        "Recent · frequent": {"template": "hello", "cluster": "c2"},  # written after run 1
        "Lapsed · one-off": {"template": "hello", "cluster": "c1"},  # same name now
        "Regulars": {"template": "hello", "cluster": "c3"},  # a label of the user's own
        "*": {"template": "hello"},
    }
    pb = {**PLAYBOOK, "strategies": {"clus": strategies}}
    assert validate_playbook(reclustered, tiny_config(pb)) == [
        "clus: cluster 'Recent · frequent' (c2) is now 'Recent · big baskets' (pinned; "
        "matched by centroid, distance 0.12); strategy kept",
        "clus: cluster 'Browsers' (c4) is new: no strategy; clusters without a strategy get "
        "the default ('*')",
    ]
