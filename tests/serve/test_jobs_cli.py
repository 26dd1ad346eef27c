"""``segmint jobs`` and ``segmint jobs run``: text and JSON, exit codes."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from tests.helpers import make_project
from typer.testing import CliRunner

from segmint.cli import app

runner = CliRunner()


def _text(out: str) -> str:
    """The output's words, table borders dropped."""
    return " ".join(re.sub("[│┃]", " ", out).split())


def _shop(root: Path) -> Path:
    return make_project(
        root,
        extra={
            "timezone": "Europe/Berlin",
            "segmentations": {"life": {"type": "lifecycle"}},
            "schedule": {
                "load": {"cron": "0 3 * * *", "task": "ingest"},
                "seg": {"cron": "15 4 * * 1", "task": "segment"},
            },
        },
    )


def test_jobs_lists_the_schedule_and_says_nothing_ran(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    res = runner.invoke(app, ["jobs", "-p", str(shop)])
    assert res.exit_code == 0, res.output
    text = _text(res.stdout)
    assert "scheduled jobs (times in Europe/Berlin)" in text
    assert "load ingest 0 3 * * *" in text and "seg segment 15 4 * * 1" in text
    assert "no job has run yet" in text
    doc = json.loads(runner.invoke(app, ["jobs", "-p", str(shop), "--json"]).stdout)
    assert doc["history"] == [] and doc["timezone"] == "Europe/Berlin"
    nxt = {j["job"]: datetime.fromisoformat(j["next_run"]) for j in doc["jobs"]}
    assert (nxt["load"].hour, nxt["load"].minute) == (3, 0)  # Berlin's 03:00
    assert nxt["load"].utcoffset() is not None and nxt["load"].utcoffset().total_seconds() == 3600
    assert nxt["seg"].strftime("%a %H:%M") == "Mon 04:15"


def test_jobs_run_then_the_history(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    res = runner.invoke(app, ["jobs", "run", "load", "-p", str(shop), "--json"])
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert run["status"] == "ok" and run["trigger"] == "manual"
    assert run["detail"]["rows_accepted"] == 6 and run["seconds"] >= 0
    res = runner.invoke(app, ["jobs", "run", "seg", "-p", str(shop)])
    assert res.exit_code == 0, res.output
    assert "status" in res.stdout and "ok" in res.stdout and "segment_runs" in res.stdout

    res = runner.invoke(app, ["jobs", "-p", str(shop)])
    text = _text(res.stdout)
    assert res.exit_code == 0 and "history (newest first)" in text
    assert "manual ok" in text
    doc = json.loads(runner.invoke(app, ["jobs", "-p", str(shop), "--json", "-n", "1"]).stdout)
    assert [r["job"] for r in doc["history"]] == ["seg"]
    assert {j["job"]: j["last_run"]["status"] for j in doc["jobs"]} == {"load": "ok", "seg": "ok"}
    doc = json.loads(
        runner.invoke(app, ["jobs", "-p", str(shop), "--json", "--job", "load"]).stdout
    )
    assert [j["job"] for j in doc["jobs"]] == ["load"]
    assert [r["job"] for r in doc["history"]] == ["load"]


def test_jobs_run_fails_with_the_job(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    (shop / "orders.csv").unlink()
    res = runner.invoke(app, ["jobs", "run", "load", "-p", str(shop), "--json"])
    assert res.exit_code == 1
    run = json.loads(res.stdout)
    assert run["status"] == "failed" and "orders.csv" in run["error"]
    res = runner.invoke(app, ["jobs", "-p", str(shop)])
    assert "failed" in res.stdout


def test_an_unknown_job_is_a_usage_error(tmp_path: Path) -> None:
    shop = _shop(tmp_path)
    for args in (["jobs", "run", "nope"], ["jobs", "--job", "nope"]):
        res = runner.invoke(app, [*args, "-p", str(shop)])
        assert res.exit_code == 2
        assert "no job named 'nope'" in res.stderr and "known: load, seg" in res.stderr


def test_no_schedule_says_how_to_add_one(tmp_path: Path) -> None:
    shop = make_project(tmp_path)
    res = runner.invoke(app, ["jobs", "-p", str(shop)])
    assert res.exit_code == 0
    assert "no jobs in segmint.yaml: add them under schedule:" in _text(res.stdout)
    doc = json.loads(runner.invoke(app, ["jobs", "-p", str(shop), "--json"]).stdout)
    assert doc == {"timezone": "UTC", "jobs": [], "history": []}
