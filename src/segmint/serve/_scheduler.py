"""Scheduled jobs: the ``schedule:`` of segmint.yaml, run inside ``segmint serve``.

Each job is a cron expression (read in the project's ``timezone``) and a task run through
the same library calls as its CLI command: ``ingest`` (:meth:`Project.ingest`),
``refresh`` (:meth:`Project.refresh`), ``segment`` (:meth:`Project.segment`),
``recommend`` (:meth:`Project.recommend_all`), ``campaign`` (plan for the run's day,
then send: birthday and lifecycle-transition campaigns are campaign jobs on a cron) and
``retention`` (:func:`segmint.privacy.apply_retention`, ``privacy.retention``'s purge) and
``predict`` (:meth:`Project.predict_clv` or :meth:`Project.predict_churn`: a new run).

APScheduler's ``BackgroundScheduler`` fires the jobs (``max_instances=1``,
``coalesce=True``, a misfire grace per job). The guarantee comes from the store, not from
the process: every run is a row of ``job_runs`` keyed by (job, slot) — the slot is the
time the run was due — and a run starts only after it has *claimed* its slot by inserting
that row as ``running``, under the store lock ``job-runs``. A slot already there (run by
another worker, or by an earlier life of this service) is never run again; a job whose
previous run is still ``running`` is not started twice. On start-up:

- rows left ``running`` on this host by a process that is gone are marked ``failed``
  ("the service stopped during the run");
- a slot missed while the service was down is run once (trigger ``catch-up``) if it is
  at most ``grace_seconds`` old (default an hour) and no row has it; older misses are not
  made up for (the next slot comes).

Store use: on a store with one connection (DuckDB) a run holds the service's store lock
for its whole duration, so tracking loads and pages wait for it (events wait in the
spool). On a shared store (PostgreSQL) a run opens its own connection and the service keeps
answering; with several workers, each runs a scheduler and the claim makes exactly one of
them run a slot.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from segmint._cron import cron_trigger, latest_fire, next_fire
from segmint.errors import NotFoundError, RequestError, SegmintError
from segmint.serve._auth import require

__all__ = [
    "STOPPED_DURING_RUN",
    "JobRun",
    "JobScheduler",
    "claim_slot",
    "job_history",
    "read_run",
    "recover_stale_runs",
    "router",
    "scheduler_for",
]

log = logging.getLogger("segmint.serve.jobs")

STOPPED_DURING_RUN = "the service stopped during the run"
"""The error of a run whose process ended before the run did."""

MAX_ERROR = 500
"""Characters of an error message kept in ``job_runs.error``."""

_HOST = socket.gethostname()

# Runs this process has claimed and not finished: a ``running`` row with this process's
# pid that is not here was left by an earlier process that had the same pid (a container
# restarted as pid 1), so it is stale.
_mine: set[tuple[str, datetime]] = set()
_mine_lock = threading.Lock()


@dataclass(frozen=True)
class JobRun:
    """One row of ``job_runs``: a run of a job for one slot."""

    job: str
    slot: datetime
    status: str  # running, ok, failed
    trigger: str  # schedule, catch-up, manual
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    pid: int | None = None

    @property
    def seconds(self) -> float | None:
        """How long the run took (None while it runs)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "slot": self.slot.isoformat(),
            "status": self.status,
            "trigger": self.trigger,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "error": self.error,
            "detail": self.detail,
        }


def _utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime."""
    if value is None or value != value:  # None, NaN or NaT (a running run's finish)
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row_run(row: dict[str, Any]) -> JobRun:
    detail = row.get("detail")
    if isinstance(detail, str):
        detail = json.loads(detail)
    pid = row.get("pid")
    return JobRun(
        job=str(row["job"]),
        slot=_utc(row["slot"]) or datetime.min.replace(tzinfo=UTC),
        status=str(row["status"]),
        trigger=str(row["trigger"]),
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        error=None if row.get("error") is None or row["error"] != row["error"] else row["error"],
        detail=detail if isinstance(detail, dict) else {},
        host=row.get("host"),
        pid=None if pid is None or pid != pid else int(pid),
    )


_COLUMNS = "job, slot, started_at, finished_at, status, trigger, error, host, pid, detail"


def job_history(store: Any, *, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """The latest runs (newest first), of one job or of all."""
    from segmint.store import lit

    where = "" if job is None else f"WHERE job = {lit(job)}"
    frame = store.query(
        f"SELECT {_COLUMNS} FROM job_runs {where} ORDER BY started_at DESC, job LIMIT {int(limit)}"
    )
    return [_row_run(r) for r in frame.to_dict(orient="records")]


def read_run(store: Any, job: str, slot: datetime) -> JobRun | None:
    """The run of ``job`` for ``slot``, if there is one."""
    from segmint.store import literal

    frame = store.query(
        f"SELECT {_COLUMNS} FROM job_runs WHERE job = {literal(job)} AND slot = {literal(slot)}"
    )
    rows = frame.to_dict(orient="records")
    return _row_run(rows[0]) if rows else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


LOST_WITH_ITS_HOST = "no word from host {host} for {minutes} minutes (max_minutes): taken as lost"
"""The error of a run left ``running`` by another machine for longer than ``max_minutes``."""


def _stale(run: JobRun, max_minutes: int | None = None) -> bool:
    if run.host != _HOST or run.pid is None:
        # another machine's run: its process cannot be checked from here, only its age
        if max_minutes is None or run.started_at is None:
            return False
        age = (datetime.now(UTC) - run.started_at).total_seconds()
        return age > max_minutes * 60
    if run.pid == os.getpid():
        with _mine_lock:
            return (run.job, run.slot) not in _mine
    return not _pid_alive(run.pid)


def recover_stale_runs(
    store: Any, *, job: str | None = None, max_minutes: dict[str, int] | None = None
) -> list[JobRun]:
    """Mark ``failed`` the runs left ``running`` on this host by a process that is gone,
    and (given ``max_minutes`` per job) those left by another host for longer than that;
    return them."""
    from segmint.store import lit

    limits = max_minutes or {}
    where = "" if job is None else f" AND job = {lit(job)}"
    frame = store.query(f"SELECT {_COLUMNS} FROM job_runs WHERE status = 'running'{where}")
    runs = list(map(_row_run, frame.to_dict(orient="records")))
    stale = [r for r in runs if _stale(r, limits.get(r.job))]
    for run in stale:
        error = (
            STOPPED_DURING_RUN
            if run.host == _HOST
            else LOST_WITH_ITS_HOST.format(host=run.host, minutes=limits.get(run.job))
        )
        _finish(store, run.job, run.slot, "failed", error, run.detail, only_running=True)
        log.warning(
            "job %s: the run of slot %s was marked failed: %s", run.job, run.slot.isoformat(), error
        )
    return stale


def claim_slot(
    store: Any, job: str, slot: datetime, *, trigger: str, max_minutes: int | None = None
) -> str | None:
    """Claim ``slot`` of ``job`` for this process: insert its ``running`` row.

    Returns None when the slot is now ours, else why not (the slot was taken, or a run
    of the job is still going). Checks and insert are one step under the store lock
    ``job-runs`` (an advisory lock on PostgreSQL; the primary key backs it up).
    """
    from segmint.store import literal

    with store.lock("job-runs"):
        recover_stale_runs(
            store, job=job, max_minutes=None if max_minutes is None else {job: max_minutes}
        )
        taken = store.query(
            f"SELECT status FROM job_runs WHERE job = {literal(job)} AND slot = {literal(slot)}"
        )
        if not taken.empty:
            return f"slot {slot.isoformat()} was already claimed ({taken.iat[0, 0]})"
        running = store.query(
            f"SELECT slot FROM job_runs WHERE job = {literal(job)} AND status = 'running'"
        )
        if not running.empty:
            busy = _utc(running.iat[0, 0])
            return f"its run of slot {busy.isoformat() if busy else '?'} is still running"
        store.execute(
            f"INSERT INTO job_runs ({_COLUMNS}) VALUES ({literal(job)}, {literal(slot)}, "
            f"current_timestamp, NULL, 'running', {literal(trigger)}, NULL, "
            f"{literal(_HOST)}, {os.getpid()}, NULL)"
        )
        with _mine_lock:
            _mine.add((job, slot))
    return None


def _finish(
    store: Any,
    job: str,
    slot: datetime,
    status: str,
    error: str | None,
    detail: dict[str, Any],
    *,
    only_running: bool = False,
) -> None:
    from segmint.store import literal

    text = json.dumps(detail, default=str, ensure_ascii=False)
    guard = " AND status = 'running'" if only_running else ""
    store.execute(
        f"UPDATE job_runs SET status = {literal(status)}, finished_at = current_timestamp, "
        f"error = {literal(error)}, detail = {literal(text)} "
        f"WHERE job = {literal(job)} AND slot = {literal(slot)}{guard}"
    )
    with _mine_lock:
        _mine.discard((job, slot))


def _error_text(exc: BaseException) -> str:
    """What ``job_runs.error`` keeps: segmint's own message (written for users), first
    lines only; for anything else only its kind (the traceback goes to the log)."""
    if isinstance(exc, SegmintError):
        text = " ".join(str(exc).split())
        return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
    return f"unexpected {type(exc).__name__} (the service log has the traceback)"


# -- the tasks ---------------------------------------------------------------------------
def run_task(project: Any, spec: Any, slot: datetime) -> dict[str, Any]:
    """Run one job's task on ``project``; return what it did (counts and run ids, never
    personal data) for ``job_runs.detail``."""
    options = spec.options()
    task = spec.task
    if task == "ingest":
        return _ingest(project, options)
    if task == "refresh":
        result = project.refresh(options.segmentations)
        return {
            "feature_run_id": result.feature_run_id,
            "segment_runs": {s.segmentation: s.run_id for s in result.segmentations},
            "moved": {s.segmentation: int(s.moved) for s in result.segmentations},
        }
    if task == "segment":
        results = project.segment(options.segmentations)
        return {
            "feature_run_id": results[0].feature_run_id if results else None,
            "segment_runs": {r.segmentation: r.run_id for r in results},
            "users": {r.segmentation: len(r.assignments) for r in results},
        }
    if task == "recommend":
        model = options.model or project.config.recommend.model
        run = project.recommend_all(model, n=options.n)
        return {"run_id": run.run_id, "model": run.model, "users": int(run.n_users)}
    if task == "retention":
        from segmint.privacy import apply_retention

        report = apply_retention(
            project.store, project.config, actor="scheduler", dry_run=options.dry_run
        )
        return {
            "purge_id": report.purge_id,
            "dry_run": report.dry_run,
            "rows": {t.table: t.n_rows for t in report.tables},
            "spool_files": report.n_spool_files,
        }
    if task == "predict":
        run = (
            project.predict_clv(options.as_of)
            if options.kind == "clv"
            else project.predict_churn(options.as_of)
        )
        return {"run_id": run.run_id, "kind": run.kind, "users": int(run.n_users)}
    return _campaign(project, options.campaign, slot)


def _ingest(project: Any, options: Any) -> dict[str, Any]:
    results = project.ingest(options.sources, force=options.force)
    loads = [
        {
            "source": r.source,
            "load_id": r.load_id,
            "rows_read": int(r.rows_read),
            "rows_accepted": int(r.rows_accepted),
            "rows_rejected": int(r.rows_rejected),
            "skipped": bool(r.skipped),
        }
        for r in results
    ]
    return {
        "loads": loads,
        "rows_accepted": sum(x["rows_accepted"] for x in loads),
        "rows_rejected": sum(x["rows_rejected"] for x in loads),
    }


def _campaign(project: Any, name: str, slot: datetime) -> dict[str, Any]:
    """Plan the campaign for the slot's day (in the project's time zone: whose birthday
    it is) and send that plan, as ``segmint campaign plan`` then ``send`` do."""
    from zoneinfo import ZoneInfo

    from segmint.campaigns import plan_campaign, send_campaign

    day = slot.astimezone(ZoneInfo(project.config.timezone)).date()
    plan = plan_campaign(project.store, project.config, name, as_of=day)
    report = send_campaign(project.store, project.config, name, plan=plan)
    sent = report.to_dict()
    keep = ("sent", "already_sent", "failed", "rejected", "skipped", "capped", "deferred")
    return {
        "plan": plan.run_id,
        "as_of": day.isoformat(),
        "treatment": int(plan.n_treatment),
        "control": int(plan.n_control),
        **{k: sent[k] for k in keep if k in sent},
        "complete": bool(report.complete),
    }


# -- the scheduler -----------------------------------------------------------------------
class JobScheduler:
    """Runs a project's ``schedule:``: a worker of ``segmint serve`` (``start``/``stop``),
    and the way ``segmint jobs run`` runs a job now.

    Parameters
    ----------
    project : segmint.Project
        The open project (its configuration and store).
    lock : lock, optional
        The lock that serialises use of ``project.store`` (the service's store lock).
    trigger_for : callable, optional
        ``trigger_for(name, spec)`` -> an APScheduler trigger, instead of the job's cron
        (tests fire a job every second this way).
    """

    def __init__(
        self, project: Any, *, lock: Any = None, hold: Any = None, trigger_for: Any = None
    ) -> None:
        self.project = project
        self._lock = lock if lock is not None else threading.RLock()
        self._hold = hold
        self._shared = str(project.config.store_url).startswith(("postgresql://", "postgres://"))
        self._trigger_for = trigger_for
        self._scheduler: Any = None
        self._triggers: dict[str, Any] = {}

    @property
    def jobs(self) -> dict[str, Any]:
        """The configured jobs by name."""
        return dict(self.project.config.schedule)

    def trigger(self, name: str) -> Any:
        """The APScheduler trigger of job ``name``."""
        if name not in self._triggers:
            spec = self._spec(name)
            self._triggers[name] = (
                self._trigger_for(name, spec)
                if self._trigger_for is not None
                else cron_trigger(spec.cron, self.project.config.timezone)
            )
        return self._triggers[name]

    def _spec(self, name: str) -> Any:
        spec = self.project.config.schedule.get(name)
        if spec is None:
            known = ", ".join(self.project.config.schedule) or "none"
            raise NotFoundError(
                f"no job named {name!r} in schedule: of segmint.yaml (known: {known})"
            )
        return spec

    def _max_minutes(self) -> dict[str, int]:
        return {name: spec.max_minutes for name, spec in self.project.config.schedule.items()}

    def next_run(self, name: str, now: datetime | None = None) -> datetime | None:
        """When job ``name`` fires next."""
        return next_fire(self.trigger(name), now or datetime.now(UTC))

    # -- store access --------------------------------------------------------------------
    @contextmanager
    def service_store(self) -> Iterator[Any]:
        """The service's store, held (briefly) by the caller alone."""
        if self._hold is not None:  # the service: its holder opens and lets go of the file
            with self._hold() as store:
                yield store
            return
        with self._lock:
            yield self.project.store

    @contextmanager
    def _run_project(self) -> Iterator[Any]:
        """The project a run works on: on a shared store its own connection (the service
        keeps answering); on DuckDB the service's, held for the whole run."""
        from segmint.project import Project

        if self._shared:
            with Project(self.project.config) as own:
                yield own
        elif self._hold is not None:  # the service's held store, lent for the whole run
            with self._hold() as store, Project(self.project.config, store=store) as lent:
                yield lent
        else:
            with self._lock:
                yield self.project

    # -- worker --------------------------------------------------------------------------
    def start(self) -> None:
        """Mark stale runs failed, start firing the jobs, run missed slots once."""
        try:
            with self.service_store() as store:
                recover_stale_runs(store, max_minutes=self._max_minutes())
        except Exception:  # the store is down: the service still starts (/readyz says so)
            log.exception("could not check job_runs for runs left by a stopped service")
        if not self.project.config.schedule:
            return
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=self.project.config.timezone)
        for name, spec in self.project.config.schedule.items():
            scheduler.add_job(
                self._fire,
                trigger=self.trigger(name),
                args=[name],
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, spec.grace_seconds),
            )
        scheduler.start()
        self._scheduler = scheduler
        self._catch_up()
        log.info("scheduler started: %d jobs", len(self.project.config.schedule))

    def stop(self) -> None:
        """Stop firing; wait for a run in progress to end."""
        if self._scheduler is not None:
            # one-off jobs (catch-up, run now) leave the job store once APScheduler's loop
            # has handed them to a thread; shutting down before that makes the loop's own
            # removal fail (JobLookupError in its thread): wait for it, briefly
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                j.id not in self.project.config.schedule for j in self._scheduler.get_jobs()
            ):
                time.sleep(0.01)
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def _catch_up(self) -> None:
        now = datetime.now(UTC)
        for name, spec in self.project.config.schedule.items():
            slot = latest_fire(self.trigger(name), now, timedelta(seconds=spec.grace_seconds))
            if slot is not None:  # claimed only if no row has it (see claim_slot)
                self._submit(self._run_slot, name, slot, "catch-up")

    def _submit(self, func: Any, *args: Any) -> None:
        """Run ``func(*args)`` on the scheduler's threads (or a thread of its own)."""
        if self._scheduler is not None:
            self._scheduler.add_job(
                func,
                "date",
                args=list(args),
                id=f"{args[0]}-{uuid.uuid4().hex}",
                misfire_grace_time=None,  # a claimed slot must run, however late
            )
        else:
            threading.Thread(target=func, args=args, daemon=False).start()

    def _fire(self, name: str) -> None:
        """Called by APScheduler when ``name`` is due."""
        spec = self._spec(name)
        now = datetime.now(UTC)
        horizon = timedelta(seconds=spec.grace_seconds + 60)
        slot = latest_fire(self.trigger(name), now, horizon) or now.replace(microsecond=0)
        self._run_slot(name, slot, "schedule")

    def _run_slot(self, name: str, slot: datetime, trigger: str) -> JobRun | None:
        with self.service_store() as store:
            reason = claim_slot(
                store, name, slot, trigger=trigger, max_minutes=self._spec(name).max_minutes
            )
        if reason is not None:
            log.info("job %s: slot %s not run: %s", name, slot.isoformat(), reason)
            return None
        return self._execute(name, slot, trigger)

    def _execute(self, name: str, slot: datetime, trigger: str) -> JobRun:
        """Run a claimed slot and record its end."""
        spec = self._spec(name)
        status, error, detail = "ok", None, {}
        try:
            with self._run_project() as project:
                detail = run_task(project, spec, slot)
        except Exception as exc:
            status, error = "failed", _error_text(exc)
            report = getattr(exc, "report", None)  # a send that stopped: its counts so far
            if report is not None and hasattr(report, "to_dict"):
                detail = {k: v for k, v in report.to_dict().items() if isinstance(v, int | float)}
            if isinstance(exc, SegmintError):
                log.warning("job %s (slot %s) failed: %s", name, slot.isoformat(), error)
            else:
                log.exception("job %s (slot %s) failed unexpectedly", name, slot.isoformat())
        with self.service_store() as store:
            _finish(store, name, slot, status, error, detail)
            run = read_run(store, name, slot)
        log.info("job %s (slot %s, %s): %s", name, slot.isoformat(), trigger, status)
        return run or JobRun(name, slot, status, trigger, error=error, detail=detail)

    # -- runs on demand ------------------------------------------------------------------
    def _claim_now(self, name: str) -> datetime:
        self._spec(name)
        slot = datetime.now(UTC)
        with self.service_store() as store:
            reason = claim_slot(
                store, name, slot, trigger="manual", max_minutes=self._spec(name).max_minutes
            )
        if reason is not None:
            raise RequestError(409, f"job {name!r} was not started: {reason}")
        return slot

    def run(self, name: str) -> JobRun:
        """Run job ``name`` now and wait for it (``segmint jobs run``); trigger ``manual``.

        Raises NotFoundError for an unknown job and RequestError (409) when a run of it is
        in progress."""
        return self._execute(name, self._claim_now(name), "manual")

    def run_in_background(self, name: str) -> datetime:
        """Claim a ``manual`` run of ``name`` now and start it in the background; return
        its slot (``POST /v1/jobs/{name}/run``)."""
        slot = self._claim_now(name)
        try:
            self._submit(self._execute, name, slot, "manual")
        except Exception as exc:  # the scheduler is stopping: do not leave the slot running
            with self.service_store() as store:
                _finish(store, name, slot, "failed", _error_text(exc), {})
            raise RequestError(503, f"job {name!r} could not be started: {exc}") from None
        return slot

    def overview(self, *, limit: int = 20, job: str | None = None) -> dict[str, Any]:
        """The configured jobs (cron, next run, last run) and the latest runs."""
        if job is not None:
            self._spec(job)
        now = datetime.now(UTC)
        with self.service_store() as store:
            history = job_history(store, job=job, limit=limit)
            last = {n: job_history(store, job=n, limit=1) for n in self.jobs}
        jobs = []
        for name, spec in self.jobs.items():
            if job is not None and name != job:
                continue
            upcoming = self.next_run(name, now)
            jobs.append(
                {
                    "job": name,
                    "task": spec.task,
                    "cron": spec.cron,
                    "args": dict(spec.args),
                    "next_run": None if upcoming is None else upcoming.isoformat(),
                    "last_run": last[name][0].to_dict() if last[name] else None,
                }
            )
        return {
            "timezone": self.project.config.timezone,
            "jobs": jobs,
            "history": [r.to_dict() for r in history],
        }


def scheduler_for(app: Any) -> JobScheduler:
    """The service's scheduler (kept as ``app.state.scheduler``), holding the service's
    store through its holder (never ``project.store``)."""
    from segmint.serve._app import hold_store

    app.state.scheduler = JobScheduler(
        app.state.project, lock=app.state.store_lock, hold=lambda: hold_store(app)
    )
    return app.state.scheduler


# -- endpoints ---------------------------------------------------------------------------
router = APIRouter(
    tags=["jobs"],
    dependencies=[Depends(require("admin"))],
    responses={
        401: {"description": "No key, or an unknown or revoked one"},
        403: {"description": "Not an admin key"},
    },
)


@router.get(
    "/v1/jobs",
    summary="The scheduled jobs (cron, next run, last run) and the latest runs",
    responses={404: {"description": "?job= names no job of schedule:"}},
)
def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=1000, description="Runs of the history"),
    job: str | None = Query(None, description="Only this job"),
) -> dict[str, Any]:
    result: dict[str, Any] = request.app.state.scheduler.overview(limit=limit, job=job)
    return result


@router.post(
    "/v1/jobs/{name}/run",
    status_code=202,
    summary="Run a job now, in the background (trigger 'manual')",
    responses={
        404: {"description": "No such job in schedule:"},
        409: {"description": "A run of the job is in progress"},
    },
)
def run_job_now(name: str, request: Request) -> dict[str, Any]:
    slot = request.app.state.scheduler.run_in_background(name)
    return {"job": name, "slot": slot.isoformat(), "status": "running", "trigger": "manual"}
