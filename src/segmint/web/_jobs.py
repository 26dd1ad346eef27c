"""The workspace's Jobs page (``/jobs``): every job of ``schedule:`` in segmint.yaml (cron,
task, next and last run), the scheduler's run history (a live region), and "Run now" for
editors (``POST /jobs/{name}/run``: the service's scheduler starts the run in the
background; the audit log records who asked).

On a DuckDB store a run holds the store while it works: the page (and its live region)
answers when the run lets go of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.web._auth import Editor, Viewer
from segmint.web._core import N_, fragment, page, record, workspace

router = APIRouter()

HISTORY = 30
"""Runs shown in the history."""

STATUS = {"running": N_("running"), "ok": N_("succeeded"), "failed": N_("failed")}
TRIGGER = {"schedule": N_("on schedule"), "catch-up": N_("catch-up"), "manual": N_("run now")}

EXAMPLE = """schedule:
  nightly-refresh:
    cron: "0 3 * * *"        # every day at 03:00 ({tz})
    task: refresh            # features, then every segmentation
  hourly-events:
    cron: "15 * * * *"
    task: ingest
    args: {{sources: [events]}}
"""


def _when(value: Any) -> datetime | None:
    """An ISO time of the scheduler's overview as an aware datetime."""
    if not value or value == "NaT":  # a running run's end (JobRun.to_dict writes NaT)
        return None
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _summary(detail: dict[str, Any]) -> str:
    """A run's detail in one short line: its counts and ids (never personal data)."""
    parts = [
        f"{key}: {value}"
        for key, value in detail.items()
        if isinstance(value, int | float | str) and not isinstance(value, bool)
    ]
    return ", ".join(parts)[:200]


def _run(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        **run,
        "slot": _when(run.get("slot")),
        "started_at": _when(run.get("started_at")),
        "finished_at": _when(run.get("finished_at")),
        "summary": _summary(run.get("detail") or {}),
    }


def read_jobs(request: Request) -> dict[str, Any]:
    """The scheduler's overview, with times as datetimes."""
    overview = workspace(request).host.jobs(limit=HISTORY)
    jobs = [
        {**j, "next_run": _when(j.get("next_run")), "last_run": _run(j.get("last_run"))}
        for j in overview["jobs"]
    ]
    history = [_run(r) for r in overview["history"]]
    return {"timezone": overview["timezone"], "jobs": jobs, "history": history}


def _started(request: Request, jobs: list[dict[str, Any]]) -> str | None:
    """The job the redirect after "Run now" names (only a job of the schedule)."""
    name = request.query_params.get("started")
    return name if any(j["job"] == name for j in jobs) else None


def _page(request: Request, *, status: int = 200, **extra: Any) -> HTMLResponse:
    data = read_jobs(request)
    return page(
        request,
        "jobs.html.j2",
        active="jobs",
        title=N_("Jobs"),
        status=status,
        statuses=STATUS,
        triggers=TRIGGER,
        example=EXAMPLE.format(tz=data["timezone"]),
        started=_started(request, data["jobs"]),
        **data,
        **extra,
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: Viewer) -> HTMLResponse:
    return _page(request)


@router.get("/jobs/live", response_class=HTMLResponse)
def jobs_live(request: Request, session: Viewer) -> HTMLResponse:
    """The run history (running, finished), refreshed every 5 s."""
    data = read_jobs(request)
    return fragment(
        request, "jobs_runs.html.j2", history=data["history"], statuses=STATUS, triggers=TRIGGER
    )


@router.post("/jobs/{name}/run", response_class=HTMLResponse)
def run_job(request: Request, name: str, session: Editor) -> Response:
    """Start job ``name`` now (trigger ``manual``), recorded in the audit log."""
    from segmint.errors import NotFoundError, RequestError
    from segmint.web._app import message

    ws = workspace(request)
    if name not in ws.config().schedule:
        return message(
            request, 404, N_("Not found"), N_("There is no job with this name."), "/jobs"
        )
    try:
        # held across both: on DuckDB the run waits for the store until the audit row is in
        with ws.host.hold_store() as store:
            slot = ws.host.run_job(name)
            record(store, session.name, "job.run", name, slot=slot.isoformat())
    except NotFoundError:
        return message(
            request, 404, N_("Not found"), N_("There is no job with this name."), "/jobs"
        )
    except RequestError as exc:
        refused = N_("A run of this job is still going; it was not started again.")
        if exc.status != 409:
            refused = N_("The job could not be started: the service is stopping.")
        return _page(request, status=exc.status, refused=refused, refused_job=name)
    return RedirectResponse(f"/jobs?started={quote(name)}#runs-h", status_code=303)
