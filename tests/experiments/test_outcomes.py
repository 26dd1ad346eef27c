"""Final outcomes of an imported experiment: imported values replace the store's, the
evaluation is complete, bad values are counted rows, an explicit outcome end closes the
window, re-import replaces; on DuckDB and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from typer.testing import CliRunner

from segmint.errors import ConfigError
from segmint.experiments._evaluate import evaluate_campaign, import_assignments
from segmint.store import Store

from .test_evaluate import assignments, build_store

# t1..t6 treated, c1..c4 control (the hand-made store of test_evaluate)
CONVERTED = ["yes", "0", "TRUE", "no", " 1 ", "f", "y", "false", "0", "no"]
REVENUE = ["12.5", "0", "1,000", "0", "7", "0", "30", "0", "0", "0"]
VISITED = ["1", "1", "0", "0", "1", "0", "1", "1", "0", "0"]


def with_outcomes() -> pd.DataFrame:
    return assignments().assign(converted=CONVERTED, revenue=REVENUE, visited=VISITED)


def _store(url: str) -> Store:
    return build_store(url)


@pytest.fixture(params=["duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "s.duckdb")
    return str(request.getfixturevalue("pg_url"))


def test_imported_outcomes_are_final_and_equal_a_hand_computation(url: str) -> None:
    store = _store(url)
    try:
        out = import_assignments(store, "spring", with_outcomes(), control_share=0.4)
        assert out["imported"] == 10 and out["bad_converted"] == 0 and out["bad_revenue"] == 0
        # 30 days: the store's data ends 10 days after the send, yet the outcomes are final
        ev = evaluate_campaign(store, "spring", window_days=30, uplift=False, n_resamples=100)
        assert ev.complete and ev.observed_days == 30
        assert not any("not complete" in w for w in ev.warnings)
        assert ev.outcomes_imported == ("converted", "revenue", "visited")
        u = ev.users.set_index("user_id")
        assert u.loc["t1", "revenue"] == 12.5  # imported, not the store's 150
        assert u.loc["t3", "revenue"] == 1000.0
        conv = ev.effect("conversion")
        assert conv["treatment"] == pytest.approx(3 / 6) and conv["control"] == pytest.approx(1 / 4)
        assert ev.effect("visit_rate")["treatment"] == pytest.approx(3 / 6)
        t = np.array([12.5, 0, 1000, 0, 7, 0])
        c = np.array([30.0, 0, 0, 0])
        ref = scipy.stats.ttest_ind(t, c, equal_var=False)
        rev = ev.effect("revenue_per_user", "welch")
        assert rev["diff"] == pytest.approx(t.mean() - c.mean(), abs=1e-12)
        assert rev["p_value"] == pytest.approx(ref.pvalue, abs=1e-9)
        assert rev["verdict"] == "inconclusive" and np.isfinite(rev["mde"])
        # re-importing without outcomes removes them (the import is replaced as a whole)
        import_assignments(store, "spring", assignments(), control_share=0.4)
        assert store.scalar("SELECT count(*) FROM campaign_outcomes") == 0
        again = evaluate_campaign(store, "spring", window_days=30, uplift=False, n_resamples=50)
        assert not again.complete and again.outcomes_imported == ()
    finally:
        store.close()


def test_bad_outcome_values_are_counted_rows(tmp_path: Path) -> None:
    store = _store(str(tmp_path / "s.duckdb"))
    frame = with_outcomes()
    frame.loc[0, "converted"] = "maybe"
    frame.loc[1, "converted"] = ""
    frame.loc[2, "revenue"] = "n/a"
    frame.loc[2, "visited"] = "2"
    out = import_assignments(store, "spring", frame, control_share=0.4)
    assert out["bad_converted"] == 2 and out["bad_revenue"] == 1 and out["bad_visited"] == 1
    assert out["rejected_bad_rows"] == 3 and out["imported"] == 7
    assert out["read"] == out["imported"] + out["rejected_bad_rows"] + out["rejected_unknown_users"]
    kept = set(store.query("SELECT user_id FROM campaign_outcomes")["user_id"])
    assert kept == {"t4", "t5", "t6", "c1", "c2", "c3", "c4"}
    store.close()


def test_a_partial_import_says_which_outcomes_come_from_the_store(tmp_path: Path) -> None:
    store = _store(str(tmp_path / "s.duckdb"))
    import_assignments(
        store, "spring", assignments().assign(converted=CONVERTED), control_share=0.4
    )
    ev = evaluate_campaign(store, "spring", window_days=10, uplift=False, n_resamples=50)
    assert ev.outcomes_imported == ("converted",)
    assert any("revenue, visited" in w and "come from the store" in w for w in ev.warnings)
    assert ev.users.set_index("user_id").loc["t1", "revenue"] == 150.0  # the store's
    store.close()


def test_an_outcome_end_closes_every_window(tmp_path: Path) -> None:
    store = _store(str(tmp_path / "s.duckdb"))
    import_assignments(
        store,
        "spring",
        assignments(),
        control_share=0.4,
        outcome_end=pd.Timestamp("2026-06-05").date(),
    )
    ev = evaluate_campaign(store, "spring", window_days=30, uplift=False, n_resamples=50)
    # windows end 2026-06-06 00:00 UTC: t1's orders of 06-01 and 06-05 count, t2's of 06-11 not
    u = ev.users.set_index("user_id")
    assert u.loc["t1", "revenue"] == 150.0 and not u.loc["t2", "converted"]
    assert ev.window_days == 5  # 4.58 days from the send, rounded up
    assert ev.complete and not any("not complete" in w for w in ev.warnings)
    assert ev.end == pd.Timestamp("2026-06-06", tz="UTC")
    # an outcome end beyond the store's data: interim, judged against that end
    import_assignments(
        store,
        "spring",
        assignments(),
        control_share=0.4,
        outcome_end=pd.Timestamp("2026-07-31").date(),
    )
    ev = evaluate_campaign(store, "spring", window_days=30, uplift=False, n_resamples=50)
    assert not ev.complete and ev.window_days == 61  # to 08-01 00:00, 60.58 days
    assert ev.observed_days == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="before the last send"):
        import_assignments(
            store, "spring", assignments(), control_share=0.4, outcome_end=date(2026, 5, 31)
        )
    store.close()


def test_cli_imports_outcomes_and_prints_verdicts(tmp_path: Path) -> None:
    from segmint.cli import app

    root = tmp_path / "p"
    root.mkdir()
    (root / "segmint.yaml").write_text("project: p\nstore: s.duckdb\n", encoding="utf-8")
    build_store(str(root / "s.duckdb")).close()
    frame = assignments().rename(columns={"user_id": "uid"})
    frame = frame.assign(bought=CONVERTED, spend=REVENUE, came=VISITED)
    frame.loc[0, "bought"] = "perhaps"
    frame.to_csv(root / "past.csv", index=False)
    runner = CliRunner()
    args = ["campaign", "import", "spring", "past.csv", "--control-share", "0.4",
            "--user-column", "uid", "--converted-column", "bought", "--revenue-column", "spend",
            "--visited-column", "came", "--outcome-end", "2026-06-30", "-p", str(root)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "1 of the bad rows have an unreadable converted value" in r.stdout
    r = runner.invoke(app, [*args, "--json"])
    assert json.loads(r.stdout)["bad_converted"] == 1
    r = runner.invoke(app, ["evaluate", "spring", "--no-uplift", "-p", str(root)])
    assert r.exit_code == 0, r.output
    assert "outcomes: imported (final)" in r.stdout and "verdict" in r.stdout
    assert "detectable at this size" in r.stdout and "users per arm" in r.stdout
    assert "not complete" not in r.stdout
    r = runner.invoke(app, ["evaluate", "spring", "--no-uplift", "-p", str(root), "--json"])
    data = json.loads(r.stdout)
    assert data["complete"] and data["outcomes_imported"] == ["converted", "revenue", "visited"]
    assert {"verdict", "mde", "mde_rel", "users_needed"} <= set(data["effects"][0])
    r = runner.invoke(app, [*args[:-2], "--outcome-end", "June", "-p", str(root)])
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output
    r = runner.invoke(app, [*args[:6], "--converted-column", "bougth", "-p", str(root)])
    assert r.exit_code == 2 and "bought" in r.output  # did you mean
