"""``segmint privacy``: erasure, access requests, retention, key rotation, the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segmint.cli._common import JsonOpt, ProjectOpt, console, err, print_result
from segmint.cli._common import run as _run

privacy_app = typer.Typer(
    help="Personal data: forget a person, export what is held about them, purge past the "
    "retention periods, rotate the data key, verify the audit log.",
    no_args_is_help=True,
)


# -- forget (erasure) ------------------------------------------------------------------


# -- export (access request) -------------------------------------------------------------


# -- audit --------------------------------------------------------------------------------


# -- rotate-key ---------------------------------------------------------------------------


# -- retention ---------------------------------------------------------------------------
def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name (a container without /etc/passwd entry)
        return "cli"


@privacy_app.command("retention")
def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; purge nothing.")
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Purge the rows older than their table's period (privacy.retention in segmint.yaml:
    e.g. events 13mo, quarantine 90d), log each table's count, and delete the tracking
    spool files past the events' period."""
    from segmint import open_project
    from segmint.privacy import apply_retention

    def go() -> Any:
        with open_project(project) as p:
            return apply_retention(p.store, p.config, actor=_cli_actor(), dry_run=dry_run)

    print_result(_run(go), as_json, _show_retention, to_json=lambda r: r.to_dict())


def _show_retention(report: Any) -> None:
    from rich.table import Table

    if not report.tables:
        err.print("no retention period set (privacy.retention in segmint.yaml): nothing purged")
        return
    title = "would be purged (dry run)" if report.dry_run else f"purged ({report.purge_id})"
    table = Table("table", "period", "cutoff", "rows", title=title)
    for t in report.tables:
        table.add_row(t.table, t.period, t.cutoff.strftime("%Y-%m-%d %H:%M UTC"), f"{t.n_rows:,}")
    console.print(table)
    if report.n_spool_files:
        err.print(f"tracking spool files past the events' period: {report.n_spool_files}")


# -- do-not-sell ---------------------------------------------------------------------------
@privacy_app.command("do-not-sell")
def do_not_sell_cmd(
    user: Annotated[str, typer.Argument(help="The person's user id.")],
    undo: Annotated[
        bool, typer.Option("--undo", help="The person allows the sale or sharing again.")
    ] = False,
    source: Annotated[
        str, typer.Option("--source", help="Where the request came from (recorded).")
    ] = "privacy request",
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Record a CCPA "do not sell or share" request: the person is left out of every list
    exported for other tools and of webhook and file campaign channels (a consent row,
    channel any, purpose sale_or_share; --undo lifts it)."""
    from segmint import open_project
    from segmint.privacy import do_not_sell

    def go() -> Any:
        with open_project(project) as p:
            return do_not_sell(
                p.store, p.config, user, undo=undo, source=source, actor=_cli_actor()
            )

    def show(r: Any) -> None:
        what = "may be sold or shared again" if r.allowed else "is no longer sold or shared"
        err.print(f"recorded: {r.user_id} {what} (source: {r.source})")

    print_result(
        _run(go),
        as_json,
        show,
        to_json=lambda r: {"user_id": r.user_id, "allowed": r.allowed, "ts": r.ts.isoformat()},
    )
