"""``segmint privacy``: erasure, access requests, retention, key rotation, the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segmint.cli._common import JsonOpt, ProjectOpt, err, print_json
from segmint.cli._common import run as _run

privacy_app = typer.Typer(
    help="Personal data: forget a person, export what is held about them, purge past the "
    "retention periods, rotate the data key, verify the audit log.",
    no_args_is_help=True,
)


# -- forget (erasure) ------------------------------------------------------------------


def _os_user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "cli"


@privacy_app.command("forget")
def forget_cmd(
    user: Annotated[str, typer.Argument(help="The user id of the person to erase.")],
    why: Annotated[
        str, typer.Option("--why", help="The reason (a ticket, 'GDPR art. 17'): recorded.")
    ],
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Your reference for the request.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Then rewrite the DuckDB file, so erased values leave its free blocks too.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Erase a person from every table and every file the project wrote (exports, message
    files, journals, the tracking spool), keeping an erasure record and a suppression by
    hashed address so they are never contacted or re-imported again. Cannot be undone.
    While `segmint serve` runs, use its POST /v1/admin/privacy/forget (an admin key)."""
    from segmint import open_project
    from segmint.privacy import compact as compact_store
    from segmint.privacy import forget

    if not yes:
        typer.confirm(f"Erase user {user} everywhere? This cannot be undone", abort=True, err=True)

    def go() -> dict[str, Any]:
        with open_project(project) as p:
            report = forget(p, user, actor=_os_user(), why=why, request_id=request_id)
            out = report.to_dict()
            if compact and not report.already:
                out["compacted"] = compact_store(p)["compacted"]
        return out

    out = _run(go)
    if as_json:
        print_json(out)
        return
    if out["already"]:
        err.print(f"already forgotten (erasure record {out['subject']}); nothing written")
        return
    tables = ", ".join(f"{t} {n}" for t, n in out["tables"].items() if n)
    err.print(
        f"forgotten: {out['n_rows']} rows ({tables or 'none'}), {len(out['files'])} files "
        f"rewritten; erasure record {out['subject']}, request {out['request_id']}"
    )
    for f in out["files"]:
        gone = " (missing: a copy elsewhere is beyond reach)" if f.get("missing") else ""
        err.print(f"  {f['kind']}: {f['path']}{gone}")


# -- export (access request) -------------------------------------------------------------


# -- audit --------------------------------------------------------------------------------


# -- rotate-key ---------------------------------------------------------------------------


# -- retention ---------------------------------------------------------------------------


# -- do-not-sell ---------------------------------------------------------------------------
