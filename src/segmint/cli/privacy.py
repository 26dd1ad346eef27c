"""``segmint privacy``: erasure, access requests, retention, key rotation, the audit log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from segmint.cli._common import (
    JsonOpt,
    ProjectOpt,
    cli_actor,
    console,
    err,
    print_json,
    print_result,
    show_time,
)
from segmint.cli._common import run as _run

privacy_app = typer.Typer(
    help="Personal data: forget a person, export what is held about them, purge past the "
    "retention periods, rotate the data key, verify the audit log.",
    no_args_is_help=True,
)


# -- forget (erasure) ------------------------------------------------------------------


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
            report = forget(p, user, actor=cli_actor(), why=why, request_id=request_id)
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


@privacy_app.command("export")
def export_person(
    user: Annotated[str, typer.Argument(help="The person's user id.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder where the export's folder is made.")
    ] = Path("."),
    why: Annotated[
        str | None, typer.Option("--why", help="The reason (a request reference): audited.")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write everything held about a person (an access request): person.json, one CSV per
    part (profile, orders, events, consents, segments, scores, recommendations, messages,
    ...) and manifest.json, in a new folder. Recorded in the export log and the audit log."""
    from segmint import open_project
    from segmint.privacy import access_export

    def go() -> Any:
        with open_project(project) as p:
            return access_export(p, user, out, actor=cli_actor(), why=why)

    result = _run(go)
    if as_json:
        print_json(result.to_dict())
        return
    err.print(f"access export written to {result.folder} ({sum(result.rows.values())} rows):")
    for name, meta in result.files.items():
        console.print(f"  {name:<26} {meta['rows']:>8} rows  sha256 {meta['sha256'][:16]}")


# -- audit --------------------------------------------------------------------------------


@privacy_app.command("audit")
def audit_log(
    verify_only: Annotated[
        bool, typer.Option("--verify-only", help="Only verify the chain; list no entries.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Latest entries shown.")] = 20,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show the latest audit log entries (who read, exported or erased personal data, and
    why) and verify the hash chain: exits 1 naming the first entry changed or missing."""
    from rich.table import Table

    from segmint import open_project
    from segmint.store import verify_audit

    def go() -> tuple[Any, Any, str]:
        with open_project(project) as p:
            check = verify_audit(p.store)
            rows = None if verify_only else p.store.query(
                "SELECT seq, ts, actor, action, target, why FROM audit_log "
                f"ORDER BY seq DESC NULLS LAST LIMIT {int(limit)}"
            )  # fmt: skip
            return check, rows, p.config.timezone

    check, rows, tz = _run(go)
    if as_json:
        out: dict[str, Any] = {"entries": check.entries, "ok": check.ok,
                               "first_bad": check.first_bad, "problem": check.problem,
                               "head": check.head}  # fmt: skip
        if rows is not None:
            out["latest"] = rows
        print_json(out)
    else:
        if rows is not None and len(rows):
            table = Table("seq", "time", "actor", "action", "target", "why")
            for r in rows.itertuples(index=False):
                table.add_row(*(str(x) if x is not None and x == x else "" for x in
                                (r.seq, show_time(r.ts, tz), r.actor, r.action, r.target,
                                 r.why)))  # fmt: skip
            console.print(table)
        if check.ok:
            head = f", head {check.head[:16]}" if check.head else ""
            console.print(f"audit log: {check.entries} entries, chain verified{head}")
    if not check.ok:
        if check.first_bad is None:
            err.print(f"audit log: {check.problem}")
        elif (check.problem or "").startswith("entry "):  # a removed entry
            err.print(f"audit log: {check.problem} (the chain breaks at entry {check.first_bad})")
        else:
            err.print(f"audit log: entry {check.first_bad}: {check.problem}")
        raise typer.Exit(1)


# -- rotate-key ---------------------------------------------------------------------------


NEW_MASTER_ENV = "SEGMINT_NEW_MASTER_KEY"


@privacy_app.command("rotate-key")
def rotate_data_key(
    new_master: Annotated[
        bool,
        typer.Option(
            "--new-master",
            help="Also re-wrap every key under a new master key, read from "
            "$SEGMINT_NEW_MASTER_KEY (64 hex digits); set it as the master key afterwards.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Seal every personal value with a new data key (values still in clear too), in one
    transaction; old keys no value uses are removed. Counts rows before and after."""
    from segmint import open_project
    from segmint.privacy import rotate_key
    from segmint.store import MasterKeyWrapper, parse_master_key

    wrapper = None
    if new_master:
        text = os.environ.get(NEW_MASTER_ENV)
        if not text:
            err.print(
                f"error: --new-master reads the new master key from ${NEW_MASTER_ENV}, which "
                'is not set; make one with: python -c "import secrets; '
                'print(secrets.token_hex(32))"'
            )
            raise typer.Exit(2)
        wrapper = _run(lambda: MasterKeyWrapper(parse_master_key(text, f"${NEW_MASTER_ENV}")))

    def go() -> Any:
        with open_project(project) as p:
            return rotate_key(p.store, p.config, actor=cli_actor(), new_master=wrapper)

    report = _run(go)
    if as_json:
        print_json(report.to_dict())
        return
    for c in report.columns:
        console.print(
            f"  {c.table + '.' + c.column:<22} {c.rows_before:>9} rows, {c.values_before:>9} "
            f"values: {c.resealed} re-sealed ({c.sealed_from_clear} were in clear); "
            f"after: {c.rows_after} rows, {c.values_after} values"
        )
    if report.indexes_filled:
        console.print(f"  blind indexes filled: {report.indexes_filled}")
    for key in report.removed:
        console.print(f"old key {key} removed: no value uses it")
    for key in report.kept:
        console.print(f"old key {key} kept: values still use it")
    console.print(
        f"new data key {report.new_key}: {report.n_resealed} values re-sealed in "
        f"{report.seconds:.1f} s, no row lost"
    )
    if report.master:
        err.print(
            f"every key is now wrapped by the new master key ({report.master}): set it as the "
            "master key (privacy.master_key_env or the key file) before the next command"
        )


# -- retention ---------------------------------------------------------------------------


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
            return apply_retention(p.store, p.config, actor=cli_actor(), dry_run=dry_run)

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
            return do_not_sell(p.store, p.config, user, undo=undo, source=source, actor=cli_actor())

    def show(r: Any) -> None:
        what = "may be sold or shared again" if r.allowed else "is no longer sold or shared"
        err.print(f"recorded: {r.user_id} {what} (source: {r.source})")

    print_result(
        _run(go),
        as_json,
        show,
        to_json=lambda r: {"user_id": r.user_id, "allowed": r.allowed, "ts": r.ts.isoformat()},
    )
