"""The measuring commands end to end on the small demo shop: retention, satisfaction,
before-after (with difference-in-differences)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import segmint
from segmint.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(demo_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "shop"
    shutil.copytree(demo_shop, root, ignore=shutil.ignore_patterns("exports"))
    with segmint.open_project(root) as p:
        p.segment("lifecycle")
    return root


def test_retention(shop: Path) -> None:
    r = runner.invoke(app, ["retention", "--months", "6", "-p", str(shop)])
    assert r.exit_code == 0, r.output
    assert "retention by first purchase cohort" in r.stdout and "m6" in r.stdout
    assert "repeat-purchase rate (all)" in r.stdout
    r = runner.invoke(app, ["retention", "--segmentation", "lifecycle", "-p", str(shop), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert {"matrix", "repeat", "by_segment"} <= set(data)
    first = data["matrix"][0]
    assert "cohort" in first and first["0"] == 1.0  # month 0 of a first-purchase cohort
    assert {row["segment"] for row in data["repeat"]} >= {"(all)", "active"}
    r = runner.invoke(app, ["retention", "--by", "weekly", "-p", str(shop)])
    assert r.exit_code == 2


def test_satisfaction(shop: Path) -> None:
    r = runner.invoke(app, ["satisfaction", "--segmentation", "lifecycle", "-p", str(shop)])
    assert r.exit_code == 0, r.output
    assert "nps" in r.stdout and "csat" in r.stdout and "(all)" in r.stdout
    r = runner.invoke(app, ["satisfaction", "-p", str(shop), "--json"])
    rows = json.loads(r.stdout)["table"]
    nps = [x for x in rows if x["survey"] == "nps"][0]
    assert -100 <= nps["ci_lo"] <= nps["score"] <= nps["ci_hi"] <= 100


def test_before_after_and_did(shop: Path) -> None:
    args = ["before-after", "--date", "2026-06-01", "--metric", "revenue", "-p", str(shop)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "not a causal effect" in r.stdout.lower()
    r = runner.invoke(
        app, [*args, "--segment", "lifecycle:active", "--compare", "lifecycle:churned", "--json"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["did"] is not None
    r = runner.invoke(app, [*args, "--segment", "lifecycle"])
    assert r.exit_code == 2 and "SEGMENTATION:SEGMENT" in r.output
