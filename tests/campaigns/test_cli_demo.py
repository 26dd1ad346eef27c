"""The CLI sub-apps and the demo runner, end to end on the small demo shop."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

import segmint.campaigns
from segmint.cli.campaigns import campaign_app, playbook_app
from segmint.demo import run_demo_campaigns

from .conftest import demo_playbook, write_playbook

app = typer.Typer()
app.add_typer(campaign_app, name="campaign")
app.add_typer(playbook_app, name="playbook")
runner = CliRunner()


def test_public_names_exist() -> None:
    for name in segmint.campaigns.__all__:
        assert hasattr(segmint.campaigns, name), name


def test_playbook_init_then_plan_preview_send(demo: Path) -> None:
    r = runner.invoke(app, ["playbook", "init", "-p", str(demo)])
    assert r.exit_code == 0, r.output
    assert "playbook" in yaml.safe_load((demo / "segmint.yaml").read_text())
    again = runner.invoke(app, ["playbook", "init", "-p", str(demo)])
    assert again.exit_code == 2 and "already has a playbook" in again.output
    assert runner.invoke(app, ["playbook", "init", "-p", str(demo), "--force"]).exit_code == 0
    plan = runner.invoke(app, ["campaign", "plan", "winback_at_risk", "-p", str(demo), "--json"])
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.output)
    assert doc["n_treatment"] > 0 and doc["funnel"][-1]["step"] == "holdout (control group)"
    table = runner.invoke(app, ["campaign", "plan", "winback_at_risk", "-p", str(demo)])
    assert "no consent for the channel and purpose" in table.output
    shown = runner.invoke(
        app, ["campaign", "preview", "winback_at_risk", "-p", str(demo), "--n", "2"]
    )
    assert shown.exit_code == 0 and shown.output.count("Subject:") == 2
    listed = runner.invoke(app, ["campaign", "list", "-p", str(demo), "--json"])
    assert any(c["campaign"] == "winback_at_risk" for c in json.loads(listed.output))


def test_errors_are_one_line_with_exit_codes(demo: Path) -> None:
    write_playbook(demo, demo_playbook(demo))
    r = runner.invoke(app, ["campaign", "plan", "winbak_at_risk", "-p", str(demo)])
    assert r.exit_code == 2 and "did you mean 'winback_at_risk'" in r.output
    assert "Traceback" not in r.output


def test_send_to_an_unreachable_server_exits_1(demo: Path) -> None:
    write_playbook(demo, demo_playbook(demo, smtp_port=9))
    r = runner.invoke(app, ["campaign", "send", "onboarding", "-p", str(demo)])
    assert r.exit_code == 1 and "cannot connect to SMTP server" in r.output


def test_run_demo_campaigns(demo: Path) -> None:
    summary = run_demo_campaigns(demo, campaigns=["winback_at_risk", "birthday", "cluster_picks"])
    assert summary.wrote_playbook
    assert "cluster_picks" in summary.skipped  # the small demo has no clusters run
    table = summary.table().set_index("campaign")
    assert (table["sent"] == table["treatment"]).all()
    assert summary.smtp_received + summary.webhook_received == int(table["sent"].sum())
    assert summary.control_received == 0
    assert len(summary.previews) == 2
