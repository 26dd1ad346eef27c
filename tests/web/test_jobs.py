"""Jobs: the schedule of segmint.yaml, the scheduler's history (live), and "Run now" for
editors only, recorded in the audit log."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web.conftest import (
    Client,
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

import segmint

SCHEDULE = """
schedule:
  products-nightly:
    cron: "0 3 * * *"
    task: ingest
    args: {sources: [products]}
    grace_seconds: 0
  lifecycle-weekly:
    cron: "30 4 * * 1"
    task: segment
    args: {segmentations: [lifecycle]}
    grace_seconds: 0
"""


@pytest.fixture()
def scheduled(ws_project: Path) -> Path:
    """The demo with two jobs: a cheap ingest (the products file is unchanged, so the load
    is skipped) and a rules segmentation; no catch-up run at start (grace 0)."""
    config = ws_project / "segmint.yaml"
    config.write_text(config.read_text() + SCHEDULE)
    return ws_project


def _statuses(c: Client, job: str) -> list[str]:
    html = c.get("/jobs/live", headers={"X-Requested-With": "fragment"}).text
    return re.findall(rf'<tr data-job="{re.escape(job)}" data-status="(\w+)"', html)


def _wait_for(c: Client, job: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while status not in _statuses(c, job):
        assert time.monotonic() < deadline, _statuses(c, job)
        time.sleep(0.3)


def test_every_job_of_the_schedule_is_listed_with_its_next_run(scheduled: Path) -> None:
    with served_ws(scheduled) as s, sign_in(s.url, "vic") as c:
        html = c.get("/jobs").text
        for job, cron in (("products-nightly", "0 3 * * *"), ("lifecycle-weekly", "30 4 * * 1")):
            row = html.split(f'<tr data-job="{job}">')[1].split("</tr>")[0]
            assert f"<code>{cron}</code>" in row
            assert re.search(r">20\d\d-\d\d-\d\d \d\d:\d\d</td>", row)  # the next run
            assert "never" in row
        assert "Run now" not in html  # a viewer cannot start a job
        assert "No job has run yet." in html


def test_an_editor_runs_a_job_now_and_sees_it_finish(scheduled: Path) -> None:
    with served_ws(scheduled) as s, sign_in(s.url, "ana") as c:
        assert 'action="/jobs/products-nightly/run"' in c.get("/jobs").text
        r = c.post("/jobs/products-nightly/run", data={"csrf_token": c.csrf})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/jobs?started=products-nightly")
        assert "Job products-nightly started" in c.get(r.headers["location"]).text
        assert "Call us now" not in c.get("/jobs?started=Call+us+now").text  # only a job
        _wait_for(c, "products-nightly", "ok")
        html = c.get("/jobs").text
        row = html.split('<tr data-job="products-nightly">')[1].split("</tr>")[0]
        assert "succeeded" in row
        assert "run now" in c.get("/jobs/live", headers={"X-Requested-With": "fragment"}).text
    with segmint.open_project(scheduled, read_only=True) as p:
        audit = p.store.query(
            "SELECT actor, action, target, detail FROM audit_log WHERE action = 'job.run'"
        )
    assert audit[["actor", "target"]].values.tolist() == [["ana", "products-nightly"]]
    assert "slot" in json.loads(audit["detail"].iloc[0])


def test_a_job_already_running_is_not_started_twice(scheduled: Path) -> None:
    from datetime import UTC, datetime

    with segmint.open_project(scheduled) as p:  # a run left going (this process is alive)
        p.store.execute(
            "INSERT INTO job_runs (job, slot, started_at, status, trigger, host, pid) "
            "VALUES ('lifecycle-weekly', ?, ?, 'running', 'schedule', 'elsewhere', 1)",
            [datetime.now(UTC), datetime.now(UTC)],
        )
    with served_ws(scheduled) as s, sign_in(s.url, "ana") as c:
        r = c.post("/jobs/lifecycle-weekly/run", data={"csrf_token": c.csrf})
        assert r.status_code == 409
        assert "A run of this job is still going; it was not started again." in r.text
        assert _statuses(c, "lifecycle-weekly") == ["running"]


def test_running_a_job_is_refused_without_the_right(scheduled: Path) -> None:
    with served_ws(scheduled) as s:
        anon = httpx.post(s.url + "/jobs/products-nightly/run", data={"csrf_token": "x"})
        assert anon.status_code == 401
        assert httpx.get(s.url + "/jobs", follow_redirects=False).status_code == 303
        with sign_in(s.url, "vic") as c:
            assert (
                c.post("/jobs/products-nightly/run", data={"csrf_token": c.csrf}).status_code == 403
            )
        with sign_in(s.url, "ana") as c:
            assert c.post("/jobs/products-nightly/run").status_code == 403  # no CSRF token
            assert (
                c.post("/jobs/products-nightly/run", data={"csrf_token": "forged"}).status_code
                == 403
            )
            missing = c.post("/jobs/nope/run", data={"csrf_token": c.csrf})
            assert missing.status_code == 404
            assert _statuses(c, "products-nightly") == []  # nothing ran
    with segmint.open_project(scheduled, read_only=True) as p:
        assert p.store.scalar("SELECT count(*) FROM job_runs") == 0


def test_without_a_schedule_the_page_says_how_to_add_one(ws_demo: Path) -> None:
    with served_ws(ws_demo) as s, sign_in(s.url, "ana") as c:
        html = c.get("/jobs").text
    assert "No scheduled jobs yet" in html
    assert "schedule:\n  nightly-refresh:\n    cron: &#34;0 3 * * *&#34;" in html
    assert "task: refresh" in html


def test_the_jobs_page_runs_a_job_in_the_browser_and_reads_on_a_phone(
    scheduled: Path, browser: Any, tmp_path: Path
) -> None:
    out = screenshot_dir(tmp_path)
    with served_ws(scheduled) as s:
        page = open_page(browser, s.url, "ana")
        page.goto(s.url + "/jobs")
        page.click('tr[data-job="lifecycle-weekly"] button[type=submit]')
        page.wait_for_selector(
            '#runs tr[data-job="lifecycle-weekly"][data-status="ok"]', timeout=60_000
        )
        assert page.problems == []
        page.context.close()
        for width, size in ((1280, "desktop"), (390, "phone")):
            for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
                page = open_page(browser, s.url, "ana", width=width, locale=locale)
                page.goto(s.url + "/jobs")
                page.wait_for_selector("#runs-table")
                if width == 390:
                    assert no_horizontal_scroll(page)
                if lang == "zh":
                    assert "立即运行" in page.content()
                page.screenshot(path=str(out / f"jobs-{size}-{lang}.png"), full_page=True)
                assert page.problems == []
                page.context.close()
