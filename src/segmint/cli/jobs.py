"""``segmint jobs``: the scheduled jobs of segmint.yaml and their history; ``segmint jobs
run NAME`` runs one now. Registered in :mod:`segmint.cli` with
``app.add_typer(jobs_app, name="jobs")``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._common import JsonOpt, ProjectOpt, console, fail, print_json, show_time
from segmint.cli._common import run as _run

__all__ = ["jobs_app"]

jobs_app = typer.Typer(
    help="Scheduled jobs (schedule: in segmint.yaml): next runs, history, run one now.",
    no_args_is_help=False,
)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


def _print_overview(doc: dict[str, Any]) -> None:
    tz = doc["timezone"]
    if doc["jobs"]:
        t = Table(title=f"scheduled jobs (times in {tz})")
        for c in ("job", "task", "cron", "next run", "last run", "status"):
            t.add_column(c, overflow="fold")
        for j in doc["jobs"]:
            last = j["last_run"] or {}
            t.add_row(
                j["job"],
                j["task"],
                j["cron"],
                show_time(j["next_run"], tz),
                show_time(last.get("slot"), tz),
                last.get("status", ""),
            )
        console.print(t)
    else:
        console.print(
            "no jobs in segmint.yaml: add them under schedule: (e.g. nightly: {cron: "
            "'0 3 * * *', task: refresh}); `segmint serve` runs them"
        )
    if not doc["history"]:
        console.print("no job has run yet")
        return
    h = Table(title="history (newest first)")
    for c in ("job", "slot", "started", "finished", "duration", "trigger", "status", "error"):
        h.add_column(c, overflow="fold", justify="right" if c == "duration" else "left")
    for r in doc["history"]:
        h.add_row(
            r["job"],
            show_time(r["slot"], tz),
            show_time(r["started_at"], tz),
            show_time(r["finished_at"], tz),
            _duration(r["seconds"]),
            r["trigger"],
            r["status"],
            r["error"] or "",
        )
    console.print(h)


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    project: ProjectOpt = Path("."),
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Runs of the history shown.")
    ] = 20,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The configured jobs with their cron and next run, and the latest runs (job, slot,
    start, end, duration, status, error)."""
    if ctx.invoked_subcommand is not None:
        return
    from segmint import open_project
    from segmint.serve import JobScheduler

    def go() -> dict[str, Any]:
        with open_project(project) as p:
            return JobScheduler(p).overview(limit=limit, job=job)

    doc = _run(go)
    if as_json:
        print_json(doc)
    else:
        _print_overview(doc)


@jobs_app.command("run")
def run_cmd(
    name: Annotated[str, typer.Argument(help="A job of schedule: in segmint.yaml.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run a job now and wait for it (trigger 'manual'); exit 1 if it fails."""
    from segmint import open_project
    from segmint.errors import RequestError
    from segmint.serve import JobScheduler

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            try:
                return JobScheduler(p).run(name), p.config.timezone
            except RequestError as exc:  # a run of it is in progress
                raise fail(str(exc), 1) from None

    run, tz = _run(go)
    if as_json:
        print_json(run.to_dict())
    else:
        t = Table(title=f"job {run.job} (times in {tz})")
        t.add_column("")
        t.add_column("", overflow="fold")
        for label, value in (
            ("slot", show_time(run.slot, tz)),
            ("status", run.status),
            ("duration", _duration(run.seconds)),
            ("error", run.error or ""),
        ):
            t.add_row(label, value)
        for key, value in run.detail.items():
            t.add_row(key, str(value))
        console.print(t)
    if run.status != "ok":
        raise typer.Exit(1)
