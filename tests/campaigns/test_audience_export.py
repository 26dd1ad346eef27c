"""``segmint export audience CAMPAIGN``: a plan's treatment group as a list for other
tools, by campaign name or plan id (or its unique start)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import segmint
from segmint.campaigns import plan_campaign
from segmint.campaigns._plan import load_audience
from segmint.cli import app

from .conftest import demo_playbook, open_demo

CAMPAIGN = "winback_at_risk"


def _cli(*args: str | Path):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, [str(a) for a in args])


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str)


def test_audience_export_by_name_and_by_plan_id_prefix(demo: Path, tmp_path: Path) -> None:
    store, config = open_demo(demo, demo_playbook(demo))
    plan = plan_campaign(store, config, CAMPAIGN)
    treated = load_audience(store, plan.run_id, "treatment")
    store.close()
    res = _cli("export", "audience", CAMPAIGN, "-o", tmp_path / "a.csv", "-p", demo, "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert (rec["kind"], rec["campaign"], rec["run_id"]) == ("audience", CAMPAIGN, plan.run_id)
    a = _csv(tmp_path / "a.csv")
    assert list(a.columns) == ["pseudonym", "segment", "channel"]
    assert len(a) == plan.n_treatment == len(treated)
    # the same pseudonyms as a segment export of the same users
    res = _cli("export", "segment", plan.segment_run_id, "-o", tmp_path / "s.csv", "-p", demo)
    assert res.exit_code == 0, res.output
    assert set(a["pseudonym"]) <= set(_csv(tmp_path / "s.csv")["pseudonym"])
    # by the start of the plan id; contacts for the campaign's purpose: every treated user
    # consented (the plan required it), so nobody is left out
    prefix = plan.run_id[:-4]
    res = _cli(
        "export", "audience", prefix, "-o", tmp_path / "c.jsonl", "--purpose", "marketing",
        "-p", demo, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["run_id"] == plan.run_id and rec["n_excluded"] == 0
    c = pd.read_json(tmp_path / "c.jsonl", lines=True, dtype={"user_id": str})
    assert sorted(c["user_id"]) == sorted(treated["user_id"])
    assert c["email"].notna().all()
    with segmint.open_project(demo) as p:
        log = p.exports()
    assert log["kind"].tolist() == ["audience", "segment", "audience"]
    assert log["contact"].tolist() == [True, False, False]


def test_an_ambiguous_plan_prefix_lists_the_candidates(demo: Path, tmp_path: Path) -> None:
    store, config = open_demo(demo, demo_playbook(demo))
    first = plan_campaign(store, config, CAMPAIGN)
    second = plan_campaign(store, config, CAMPAIGN)
    store.close()
    res = _cli("export", "audience", "c-", "-o", tmp_path / "a.csv", "-p", demo)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "is the start of several campaign plan ids" in text
    assert first.run_id in text and second.run_id in text
    assert not (tmp_path / "a.csv").exists()


def test_a_campaign_without_a_plan_says_what_to_run(demo: Path, tmp_path: Path) -> None:
    open_demo(demo, demo_playbook(demo))[0].close()
    res = _cli("export", "audience", CAMPAIGN, "-o", tmp_path / "a.csv", "-p", demo)
    assert res.exit_code == 2, res.output
    assert f"segmint campaign plan {CAMPAIGN}" in res.output
