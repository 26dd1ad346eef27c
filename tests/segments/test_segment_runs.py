"""Segmentations end to end on a small demo store: independent pandas checks, versioned
runs, determinism, diff, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.demo import generate_demo
from segmint.errors import NotFoundError
from segmint.segments import RFM_GRID


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, n_users=2_000, seed=5)
    p = segmint.open_project(out)
    p.ingest()
    yield p
    p.close()


def _pandas_rfm_lifecycle(p: segmint.Project, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM and lifecycle from the raw tables with pandas only (no segmint SQL)."""
    users = p.store.query("SELECT user_id, created_at FROM users")
    orders = p.store.query("SELECT user_id, ts, amount, status FROM orders")
    events = p.store.query("SELECT user_id, ts FROM events WHERE user_id IS NOT NULL")
    users = users[users["created_at"] < as_of]
    orders, events = orders[orders["ts"] < as_of], events[events["ts"] < as_of]
    day = as_of.normalize()
    done = orders[orders["status"] == "completed"]
    g = done.groupby("user_id")
    f = pd.DataFrame(
        {
            "recency": (day - g["ts"].max().dt.floor("D")).dt.days,
            "frequency": g.size(),
            "monetary": g["amount"].sum(),
        }
    )
    f = users.set_index("user_id").join(f)
    buyers = f[f["frequency"] > 0]
    n = len(buyers)

    def score(s: pd.Series, ascending: bool) -> pd.Series:
        return (1 + np.floor(5 * (s.rank(method="min", ascending=ascending) - 1) / n)).astype(int)

    r = score(buyers["recency"], False)
    fm = np.floor((score(buyers["frequency"], True) + score(buyers["monetary"], True) + 1) / 2)
    f["rfm"] = "No Purchase"
    f.loc[buyers.index, "rfm"] = [RFM_GRID[a][int(b) - 1] for a, b in zip(r, fm, strict=True)]
    last_any = pd.concat([orders[["user_id", "ts"]], events]).groupby("user_id")["ts"].max()
    last_days = (day - last_any.dt.floor("D")).dt.days.reindex(f.index)
    tenure = (day - f["created_at"].dt.floor("D")).dt.days
    f["lifecycle"] = np.select(
        [tenure <= 60, last_days <= 90, last_days.isna() | (last_days > 365)],
        ["new", "active", "churned"],
        default="silent",
    )
    return f


def test_rfm_and_lifecycle_counts_match_pandas(demo: segmint.Project) -> None:
    run = demo.compute_features()
    rfm, life = demo.segment(["rfm", "lifecycle"], feature_run=run)
    want = _pandas_rfm_lifecycle(demo, pd.Timestamp(run.as_of))
    assert rfm.sizes.to_dict() == want["rfm"].value_counts().to_dict()
    assert life.sizes.to_dict() == want["lifecycle"].value_counts().to_dict()


def test_runs_are_stored_and_reload_identically(demo: segmint.Project) -> None:
    r = demo.segment("value")
    back = demo.segment_run(r.run_id)
    assert back.assignments[["user_id", "segment"]].equals(
        r.assignments[["user_id", "segment"]].sort_values("user_id").reset_index(drop=True)
    )
    assert back.metrics["sizes"] == r.metrics["sizes"]
    assert demo.segment_run("value").run_id == r.run_id  # a name means its latest run
    assert r.run_id in set(demo.segment_runs("value")["run_id"])


def test_same_data_same_assignments(demo: segmint.Project) -> None:
    a = demo.segment("vip")
    b = demo.segment("vip")
    assert a.run_id != b.run_id
    assert a.assignments.equals(b.assignments)


def test_diff_is_a_migration_matrix(demo: segmint.Project) -> None:
    run = demo.compute_features()
    earlier = demo.compute_features(as_of=(pd.Timestamp(run.as_of) - pd.Timedelta(days=90)).date())
    a = demo.segment("lifecycle", feature_run=earlier)
    b = demo.segment("lifecycle", feature_run=run)
    m = demo.segments_diff(a.run_id, b.run_id)
    assert int(m.values.sum()) == len(set(a.assignments["user_id"]) | set(b.assignments["user_id"]))
    # users who signed up in the last 90 days were absent from the earlier run
    assert m.loc["(absent)"].sum() > 0
    assert m.loc["active", "churned"] == 0  # nobody churns in 90 days with a 365-day window


def test_unknown_run_is_a_clear_error(demo: segmint.Project) -> None:
    with pytest.raises(NotFoundError, match="segments list"):
        demo.segment_run("nope")


def test_cli_segment_list_show_diff(demo: segmint.Project) -> None:
    runner = CliRunner()
    root = str(demo.root)
    res = runner.invoke(app, ["segment", "rfm", "value", "-p", root, "--json"])
    assert res.exit_code == 0, res.output
    runs = json.loads(res.output)
    assert [r["segmentation"] for r in runs] == ["rfm", "value"]
    assert sum(runs[0]["metrics"]["sizes"].values()) == runs[0]["metrics"]["n_users"]
    res = runner.invoke(app, ["segments", "list", "-p", root, "--json"])
    assert res.exit_code == 0 and runs[0]["run_id"] in res.output
    res = runner.invoke(app, ["segments", "show", "rfm", "-p", root])
    assert res.exit_code == 0 and "Champions" in res.output
    res = runner.invoke(app, ["segments", "diff", runs[0]["run_id"], "rfm", "-p", root])
    assert res.exit_code == 0 and "changed segment" in res.output
    res = runner.invoke(app, ["segment", "nope", "-p", root])
    assert res.exit_code == 2 and "known:" in res.output
