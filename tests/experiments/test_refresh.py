"""The refresh loop: new runs, migrations since the previous run, PSI drift flags."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import segmint
from segmint.experiments._refresh import compare_runs, feature_psi
from segmint.experiments._stats import psi
from segmint.features import default_as_of


@pytest.fixture()
def shop(demo_shop: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(demo_shop, root, ignore=shutil.ignore_patterns("exports"))
    return root


def test_refresh_compares_with_the_previous_run(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        before = p.compute_features(as_of=default_as_of(p.store) - timedelta(days=60))
        old = p.segment(["rfm", "lifecycle"], feature_run=before)
        assert isinstance(old, list)
        res = p.refresh(["rfm", "lifecycle"])
        assert [s.segmentation for s in res.segmentations] == ["rfm", "lifecycle"]
        for prev, s in zip(old, res.segmentations, strict=True):
            assert s.previous_run_id == prev.run_id
            assert s.run_id != prev.run_id
            m = s.migrations
            assert int(m.to_numpy().sum()) == s.n_users  # same users in both runs
            common = [x for x in m.index if x in m.columns]
            stayed = int(sum(m.loc[x, x] for x in common))
            assert s.moved == s.n_users - stayed
            assert s.sizes["users_after"].sum() == s.n_users
            counts_b = prev.assignments["segment"].value_counts()
            counts_a = p.segment_run(s.run_id).assignments["segment"].value_counts()
            segs = sorted(set(counts_b.index) | set(counts_a.index))
            expected = psi(
                counts_b.reindex(segs, fill_value=0).to_numpy(),
                counts_a.reindex(segs, fill_value=0).to_numpy(),
            )
            assert s.size_psi == pytest.approx(expected, abs=1e-12)
            assert not s.profile.empty and s.profile["psi"].notna().any()
        # two months of ageing move lifecycle users (active -> silent and so on)
        life = res.segmentations[1]
        assert life.moved > 0
        # a second refresh on the same data: nobody moves, nothing drifts
        again = p.refresh(["lifecycle"])
        s2 = again.segmentations[0]
        assert s2.previous_run_id == life.run_id
        assert s2.moved == 0 and s2.size_psi == pytest.approx(0.0, abs=1e-12)
        assert s2.flagged == []


def test_first_refresh_has_nothing_to_compare(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        res = p.refresh("value")
    (s,) = res.segmentations
    assert s.previous_run_id is None and s.flagged == []
    assert s.sizes["users_after"].sum() == s.n_users


def test_feature_psi() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=20_000)
    assert feature_psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert feature_psi(a, rng.normal(size=20_000)) < 0.01  # same distribution
    assert feature_psi(a, rng.normal(1.0, 1.0, size=20_000)) > 0.25  # shifted by one sd
    # missing values form their own bin
    b = np.where(rng.random(20_000) < 0.5, np.nan, a)
    assert feature_psi(a, b) > 0.25


def test_drift_flags_on_hand_made_runs(shop: Path) -> None:
    """A segment that doubles is flagged for size; one whose members changed, for profile."""
    with segmint.open_project(shop) as p:
        store = p.store

        users = [f"u{i}" for i in range(400)]
        store.execute(
            "INSERT INTO segment_runs (run_id, segmentation, method, created_at, n_users) VALUES "
            "('s-a', 'hand', 'rules', CAST('2026-01-01 00:00:00+00' AS TIMESTAMPTZ), 400), "
            "('s-b', 'hand', 'rules', CAST('2026-02-01 00:00:00+00' AS TIMESTAMPTZ), 400)"
        )
        before = ["A"] * 100 + ["B"] * 300
        after = ["A"] * 200 + ["B"] * 200
        for run, segs in (("s-a", before), ("s-b", after)):
            store.execute(
                "INSERT INTO segment_assignments (run_id, user_id, segment) VALUES "
                + ", ".join(f"('{run}', '{u}', '{s}')" for u, s in zip(users, segs, strict=True))
            )
        rng = np.random.default_rng(1)
        fb = pd.DataFrame({"user_id": users, "monetary": rng.normal(100, 10, 400)})
        fa = fb.copy()
        # B's members (users 200..399) now spend much more; A's stay the same
        fa.loc[200:, "monetary"] = rng.normal(300, 10, 200)
        s = compare_runs(
            store,
            "s-a",
            "s-b",
            features_before=fb,
            features_after=fa,
            profile_features=["monetary"],
        )
    sizes = s.sizes.set_index("segment")
    assert sizes.loc["A", "share_change"] == pytest.approx(1.0)  # 25% -> 50%
    assert sizes.loc["A", "size_flag"] and sizes.loc["B", "size_flag"]  # -33%
    assert sizes.loc["B", "profile_flag"] and sizes.loc["B", "profile_feature"] == "monetary"
    assert s.moved == 100  # users 100..199 went from B to A
    assert set(s.flagged) == {"A", "B"}


def test_cli_refresh(shop: Path) -> None:
    from segmint.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["refresh", "lifecycle", "-p", str(shop)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["refresh", "lifecycle", "-p", str(shop)])
    assert r.exit_code == 0, r.output
    assert "0 of" in r.stdout and "users moved" in r.stdout
    r = runner.invoke(app, ["refresh", "lifecycle", "-p", str(shop), "--json"])
    import json

    data = json.loads(r.stdout)
    assert data["segmentations"][0]["moved"] == 0
