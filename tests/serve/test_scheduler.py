"""The scheduler of ``segmint serve``: schedule: checked at load, slots claimed once in
job_runs (also across a restart and between two processes on PostgreSQL), stale runs
failed at start, a missed slot caught up once, the scheduler firing jobs by itself, and
the /v1/jobs endpoints on a real uvicorn."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import make_project
from tests.serve.conftest import Served

import segmint
from segmint.config import parse_config
from segmint.errors import ConfigError
from segmint.serve import JobScheduler
from segmint.serve._scheduler import STOPPED_DURING_RUN, claim_slot, job_history
from segmint.store import literal

# Twelve hours from now: a fixed hour (03:00 once) put the run inside a slot's catch-up
# grace whenever the suite ran just after it, and the scheduler ran the job by itself too.
HOUR = (datetime.now(UTC).hour + 12) % 24
SCHEDULE = {
    "load": {"cron": f"0 {HOUR} * * *", "task": "ingest"},
    "seg": {"cron": f"30 {HOUR} * * *", "task": "segment", "args": {"segmentations": ["life"]}},
}


def _project(root: Path, *, store: str = "store.duckdb", schedule: dict | None = None) -> Path:
    return make_project(
        root,
        store=store,
        extra={
            "segmentations": {"life": {"type": "lifecycle"}},
            "schedule": SCHEDULE if schedule is None else schedule,
        },
    )


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tiny with a schedule, ingested once (copied per test)."""
    root = _project(tmp_path_factory.mktemp("sched-tiny_base"))
    with segmint.open_project(root) as p:
        p.ingest()
    return root


@pytest.fixture()
def tiny(tiny_base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    shutil.copytree(tiny_base, root)
    return root


def _rows(store: Any, job: str | None = None) -> list[Any]:
    return job_history(store, job=job, limit=100)


def _runs(scheduler: JobScheduler, job: str | None = None) -> list[Any]:
    """The history, read while the scheduler may be using the store."""
    with scheduler.service_store() as store:
        return _rows(store, job)


def _wait(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s")


# -- configuration ---------------------------------------------------------------------
BASE_YAML = """\
sources:
  people: {type: csv, path: u.csv, table: users, columns: {user_id: id}}
segmentations:
  rfm: {type: rfm}
schedule:
"""


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("{cron: '0 3 * *', task: ingest}", r"schedule\.j\.cron: .*4 fields in '0 3 \* \*'"),
        ("{cron: '61 3 * * *', task: ingest}", r"schedule\.j\.cron: .*maximum value \(59\)"),
        ("{cron: '0 0 31 2 *', task: ingest}", r"never fires"),
        ("{cron: '0 3 1 * 1', task: ingest}", r"both the day of month and the day of week"),
        ("{cron: '0 3 * * *', task: sing}", r"schedule\.j\.task: Input should be 'ingest'"),
        (
            "{cron: '0 3 * * *', task: refresh, args: {segmentation: rfm}}",
            r"schedule\.j: .*takes no 'segmentation'; did you mean 'segmentations'",
        ),
        (
            "{cron: '0 3 * * *', task: ingest, args: {sources: [peple]}}",
            r"schedule\.j\.args\.sources: no source named 'peple' \(known: people\)",
        ),
        (
            "{cron: '0 3 * * *', task: segment, args: {segmentations: [rfn]}}",
            r"schedule\.j\.args\.segmentations: no segmentation named 'rfn'",
        ),
        (
            "{cron: '0 3 * * *', task: campaign, args: {campaign: birthday}}",
            r"schedule\.j\.args\.campaign: no campaign named 'birthday'",
        ),
        ("{cron: '0 3 * * *', task: campaign}", r"args\.campaign: required for a campaign job"),
        (
            "{cron: '0 3 * * *', task: recommend, args: {model: magic}}",
            r"args\.model: .*\(got 'magic'\)",
        ),
    ],
)
def test_a_bad_job_is_a_config_error_naming_it(job: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(BASE_YAML + f"  j: {job}\n", path=Path("segmint.yaml"))


def test_weekday_numbers_mean_what_crontab_says() -> None:
    """APScheduler 3 counts Monday as 0; crontab Sunday. 1 must be Monday, 0 and 7 Sunday."""
    from segmint._cron import cron_trigger, next_fire

    friday = datetime(2026, 12, 4, 12, tzinfo=UTC)
    for expr, day in (("0 3 * * 1", "Mon"), ("0 3 * * 0", "Sun"), ("0 3 * * 7", "Sun"),
                      ("0 3 * * 6", "Sat"), ("0 3 * * 5-7", "Sat")):  # fmt: skip
        fire = next_fire(cron_trigger(expr, "UTC"), friday)
        assert fire is not None and fire.strftime("%a") == day, expr


def test_cron_is_read_in_the_project_time_zone() -> None:
    from segmint._cron import cron_trigger, next_fire

    fire = next_fire(cron_trigger("0 3 * * *", "Asia/Shanghai"), datetime(2026, 12, 4, tzinfo=UTC))
    assert fire is not None and fire.astimezone(UTC) == datetime(2026, 12, 4, 19, tzinfo=UTC)


# -- claims ------------------------------------------------------------------------------
def test_a_slot_is_claimed_once(tiny: Path) -> None:
    slot = datetime(2026, 12, 4, 3, tzinfo=UTC)
    with segmint.open_project(tiny) as p:
        assert claim_slot(p.store, "load", slot, trigger="schedule") is None
        again = claim_slot(p.store, "load", slot + timedelta(hours=1), trigger="schedule")
        assert again is not None and "still running" in again
        p.store.execute("UPDATE job_runs SET status = 'ok'")
        same = claim_slot(p.store, "load", slot, trigger="schedule")
        assert same is not None and "already claimed (ok)" in same
        assert len(_rows(p.store)) == 1


def test_a_slot_run_before_a_restart_is_never_run_again(tiny: Path) -> None:
    slot = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)
    with segmint.open_project(tiny) as p:
        first = JobScheduler(p)._run_slot("seg", slot, "schedule")
        assert first is not None and first.status == "ok"
    with segmint.open_project(tiny) as p:  # the service restarted: a new scheduler
        assert JobScheduler(p)._run_slot("seg", slot, "schedule") is None
        runs = _rows(p.store, "seg")
        assert [(r.slot, r.status) for r in runs] == [(slot, "ok")]
        assert len(p.segment_runs("life")) == 1  # the task ran once


def test_a_failing_job_is_failed_with_its_error(tiny: Path) -> None:
    (tiny / "users.csv").unlink()
    with segmint.open_project(tiny) as p:
        run = JobScheduler(p).run("load")
        assert run.status == "failed" and run.trigger == "manual"
        assert run.error is not None and "users.csv" in run.error
        assert "Traceback" not in run.error and "\n" not in run.error
        assert run.finished_at is not None
        # the next run of the job is not blocked by it
        assert claim_slot(p.store, "load", datetime.now(UTC), trigger="manual") is None


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def _insert_running(
    store: Any, job: str, slot: datetime, host: str, pid: int, started: datetime | None = None
) -> None:
    store.execute(
        "INSERT INTO job_runs (job, slot, started_at, status, trigger, host, pid) VALUES "
        f"({literal(job)}, {literal(slot)}, {literal(started or slot)}, 'running', 'schedule', "
        f"{literal(host)}, {pid})"
    )


def test_a_run_whose_process_died_is_failed_at_start(tiny: Path) -> None:
    host = socket.gethostname()
    old = datetime(2026, 12, 1, 3, tzinfo=UTC)
    with segmint.open_project(tiny) as p:
        _insert_running(p.store, "load", old, host, _dead_pid())
        # this process's own pid, but not a run it claimed: a container restarted as pid 1
        _insert_running(p.store, "seg", old, host, os.getpid())
        # another machine's run cannot be checked from here: left alone while it may still
        # be going, taken as lost after max_minutes (default 360) without an end
        recent = datetime.now(UTC) - timedelta(minutes=10)
        _insert_running(p.store, "seg", old + timedelta(days=1), "elsewhere", 1, recent)
        _insert_running(p.store, "load", old + timedelta(days=1), "gone-pod", 1)
        scheduler = JobScheduler(p)
        scheduler.start()
        scheduler.stop()
        got = {(r.job, r.slot): r for r in _rows(p.store)}
    assert got[("load", old)].status == "failed"
    assert got[("load", old)].error == STOPPED_DURING_RUN
    assert got[("seg", old)].status == "failed"
    assert got[("seg", old + timedelta(days=1))].status == "running"
    lost = got[("load", old + timedelta(days=1))]
    assert lost.status == "failed"
    assert lost.error == "no word from host gone-pod for 360 minutes (max_minutes): taken as lost"


def test_a_slot_missed_while_down_is_run_once_on_start_within_the_grace(tiny: Path) -> None:
    due = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    cron = f"{due.minute} {due.hour} * * *"
    schedule = {
        "seg": {"cron": cron, "task": "segment", "grace_seconds": 3600},
        "load": {"cron": cron, "task": "ingest", "grace_seconds": 30},  # missed for good
    }
    _project(tiny, schedule=schedule)
    for _ in range(2):  # a start, then a restart: the caught-up slot is not run again
        with segmint.open_project(tiny) as p:
            scheduler = JobScheduler(p)
            scheduler.start()
            _wait(lambda s=scheduler: [r for r in _runs(s, "seg") if r.status != "running"])
            scheduler.stop()
            runs = _rows(p.store)
            assert [(r.job, r.slot, r.trigger, r.status) for r in runs] == [
                ("seg", due, "catch-up", "ok")
            ]


def test_the_scheduler_fires_jobs_by_itself(tiny: Path) -> None:
    """APScheduler, not a manual call, runs the job: a trigger firing every second."""
    from apscheduler.triggers.cron import CronTrigger

    with segmint.open_project(tiny) as p:
        scheduler = JobScheduler(
            p, trigger_for=lambda name, spec: CronTrigger(second="*", timezone="UTC")
        )
        started = datetime.now(UTC)
        scheduler.start()
        try:
            fired = _wait(
                lambda: [
                    r
                    for r in _runs(scheduler, "seg")
                    if r.trigger == "schedule" and r.status == "ok"
                ],
                seconds=8,
            )
        finally:
            scheduler.stop()
        run = fired[-1]
        assert run.slot >= started.replace(microsecond=0) and run.slot.microsecond == 0
        assert run.detail["segment_runs"]["life"] in set(p.segment_runs("life")["run_id"])
        slots = [(r.job, r.slot) for r in _rows(p.store)]
        assert len(slots) == len(set(slots))


# -- PostgreSQL: two workers, one run -----------------------------------------------------
def test_two_schedulers_on_postgresql_run_a_slot_once(tmp_path: Path, pg_url: str) -> None:
    root = _project(tmp_path, store=pg_url)
    slot = datetime(2026, 12, 4, 3, tzinfo=UTC)
    projects = [segmint.open_project(root) for _ in range(2)]
    try:
        schedulers = [JobScheduler(p) for p in projects]
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def fire(i: int) -> None:
            barrier.wait()
            results[i] = schedulers[i]._run_slot("load", slot, "schedule")

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ran = [r for r in results if r is not None]
        assert len(ran) == 1 and ran[0].status == "ok", results
        store = projects[0].store
        assert [(r.slot, r.status) for r in _rows(store)] == [(slot, "ok")]
        assert int(store.scalar("SELECT count(*) FROM loads")) == 2  # people and sales, once
    finally:
        for p in projects:
            p.close()


# -- the service ----------------------------------------------------------------------------
def test_the_service_lists_jobs_and_runs_one_on_request(tiny: Path) -> None:
    from segmint.serve import create_app
    from segmint.serve._auth import create_key

    with segmint.open_project(tiny) as p:
        admin = create_key(p.store, "ops", "admin")
        writer = create_key(p.store, "web", "write")
        app = create_app(p)
        with Served(app) as s, httpx.Client(base_url=s.url, timeout=20) as c:
            assert c.get("/v1/jobs").status_code == 401
            assert c.get("/v1/jobs", auth=(writer, "")).status_code == 403
            auth = {"Authorization": f"Bearer {admin}"}
            doc = c.get("/v1/jobs", headers=auth).json()
            nxt = {j["job"]: j["next_run"] for j in doc["jobs"]}
            assert set(nxt) == {"load", "seg"}
            seg_next = datetime.fromisoformat(nxt["seg"])
            assert (seg_next.hour, seg_next.minute) == (HOUR, 30) and seg_next > datetime.now(UTC)

            res = c.post("/v1/jobs/seg/run", headers=auth)
            assert res.status_code == 202, res.text
            slot = res.json()["slot"]

            def finished() -> Any:
                runs = c.get("/v1/jobs", headers=auth, params={"job": "seg"}).json()["history"]
                return [r for r in runs if r["slot"] == slot and r["status"] != "running"]

            (run,) = _wait(finished)
            assert run["status"] == "ok" and run["trigger"] == "manual"
            created = run["detail"]["segment_runs"]["life"]
            with app.state.store_lock:
                assert created in set(p.segment_runs("life")["run_id"])
                assert len(_rows(p.store, "seg")) == 1

            missing = c.post("/v1/jobs/nope/run", headers=auth)
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
            assert "no job named 'nope'" in missing.json()["detail"]

            with app.state.store_lock:  # a run of load in progress
                claim_slot(p.store, "load", datetime.now(UTC), trigger="schedule")
            busy = c.post("/v1/jobs/load/run", headers=auth)
            assert busy.status_code == 409 and "still running" in busy.json()["detail"]


# -- a triggered campaign is a campaign job on a cron ---------------------------------------
def test_a_birthday_campaign_job_plans_for_its_day_and_sends_once(
    shop: Path, tmp_path: Path
) -> None:
    import yaml

    from segmint.campaigns import SmtpSink, default_playbook

    root = tmp_path / "demo"
    shutil.copytree(shop, root)
    with segmint.open_project(root) as p:
        p.segment(["lifecycle"])
        pb = yaml.safe_load(default_playbook(p.config, store=p.store))["playbook"]
    pb["campaigns"] = {"birthday": pb["campaigns"]["birthday"]}
    for strategies in pb["strategies"].values():
        for strategy in strategies.values():
            strategy.pop("timing", None)
    with SmtpSink() as sink:
        pb["channels"]["email"].update(host="127.0.0.1", port=sink.port)
        pb["channels"]["email"].pop("rate_per_second", None)
        doc = yaml.safe_load((root / "segmint.yaml").read_text(encoding="utf-8"))
        doc["playbook"] = pb
        doc["schedule"] = {
            "birthdays": {"cron": "0 9 * * *", "task": "campaign", "args": {"campaign": "birthday"}}
        }
        (root / "segmint.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
        with segmint.open_project(root) as p:
            scheduler = JobScheduler(p)
            slot = datetime.now(UTC).replace(microsecond=0)
            first = scheduler._run_slot("birthdays", slot, "schedule")
            assert first is not None and first.status == "ok", first
            detail = first.detail
            from zoneinfo import ZoneInfo

            assert detail["as_of"] == slot.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat()
            assert detail["treatment"] > 0 and detail["sent"] == detail["treatment"]
            assert sink.n_received == detail["sent"]
            # the next day's run plans again; nobody gets the same message twice
            second = scheduler._run_slot("birthdays", slot + timedelta(seconds=1), "schedule")
            assert second is not None and second.status == "ok"
            assert second.detail["sent"] == 0 and sink.n_received == detail["sent"]


def _lock_free_elsewhere(lock: Any) -> bool:
    """Whether another thread can take ``lock`` now."""
    got: list[bool] = []

    def probe() -> None:
        got.append(lock.acquire(timeout=0.2))
        if got[0]:
            lock.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


def test_a_run_holds_the_store_lock_on_duckdb_only(tiny: Path, tmp_path: Path, pg_url: str) -> None:
    """DuckDB: one connection, the run holds the service's lock (pages wait). PostgreSQL:
    the run has its own connection and the lock stays free (pages keep answering)."""
    (tmp_path / "pg").mkdir()
    pg = _project(tmp_path / "pg", store=pg_url)
    for root, shared in ((tiny, False), (pg, True)):
        with segmint.open_project(root) as p:
            lock = threading.RLock()
            with JobScheduler(p, lock=lock)._run_project() as project:
                assert (project is p) is not shared
                assert _lock_free_elsewhere(lock) is shared
                assert project.store.count("users") == (0 if shared else 3)


def test_the_service_on_postgresql_runs_a_job(tmp_path: Path, pg_url: str) -> None:
    from segmint.serve import create_app
    from segmint.serve._auth import create_key

    root = _project(tmp_path, store=pg_url)
    with segmint.open_project(root) as p:
        admin = create_key(p.store, "ops", "admin")
        with Served(create_app(p)) as s, httpx.Client(base_url=s.url, timeout=20) as c:
            auth = {"Authorization": f"Bearer {admin}"}
            assert c.post("/v1/jobs/load/run", headers=auth).status_code == 202

            def done() -> Any:
                doc = c.get("/v1/jobs", headers=auth, params={"job": "load"}).json()
                return [r for r in doc["history"] if r["status"] != "running"]

            (run,) = _wait(done, seconds=20)
            assert run["status"] == "ok" and run["detail"]["rows_accepted"] == 6
            assert c.get("/readyz").status_code == 200
