"""``segmint keys``: the API keys of ``segmint serve`` (create, list, revoke)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._common import JsonOpt, ProjectOpt, console, err, print_json, show_time
from segmint.cli._common import run as _run

keys_app = typer.Typer(
    help="API keys of `segmint serve`: write (send events), decide (read decisions), admin.",
    no_args_is_help=True,
)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the key is for (a write key: the source).")],
    scope: Annotated[str, typer.Option(help="write, decide or admin.")] = "write",
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.001, help="Requests per second for this key (default: serve.rate_per_second)."
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its secret, the only time it is shown (the store keeps its hash)."""
    from segmint import open_project
    from segmint.errors import ConfigError
    from segmint.serve import SCOPES, create_key

    def go() -> dict[str, Any]:
        if scope not in SCOPES:
            raise ConfigError(f"--scope {scope!r}: one of {', '.join(SCOPES)}")
        with open_project(project) as p:
            secret = create_key(p.store, name, scope, rate_per_second=rate)
        return {"key_id": secret[:11], "name": name, "scope": scope, "secret": secret,
                "rate_per_second": rate}  # fmt: skip

    out = _run(go)
    if as_json:
        print_json(out)
        return
    console.print(out["secret"])
    err.print(
        f"created {out['scope']} key {out['key_id']} ({name}); the line above is its secret, "
        "shown this once: keep it (the store has only its hash)"
    )


@keys_app.command("list")
def list_cmd(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the keys: id (the secret's first characters), name, scope, created, revoked."""
    from segmint import open_project
    from segmint.serve import list_keys

    def go() -> tuple[list[dict[str, Any]], str]:
        with open_project(project) as p:
            return list_keys(p.store), p.config.timezone

    rows, tz = _run(go)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no API keys: `segmint keys create NAME --scope write` makes one")
        return
    t = Table(title="API keys")
    for c in ("key_id", "name", "scope", "rate/s", "created", "revoked"):
        t.add_column(c, overflow="fold")
    for r in rows:
        rate = "" if r["rate_per_second"] is None else f"{r['rate_per_second']:g}"
        t.add_row(r["key_id"], r["name"], r["scope"], rate, show_time(r["created"], tz),
                  show_time(r["revoked"], tz))  # fmt: skip
    console.print(t)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `segmint keys list`).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: a running service refuses it within seconds."""
    from segmint import open_project
    from segmint.serve import revoke_key

    def go() -> bool:
        with open_project(project) as p:
            return revoke_key(p.store, key_id)

    changed = _run(go)
    if as_json:
        print_json({"key_id": key_id, "revoked": True, "already_revoked": not changed})
    elif changed:
        console.print(f"revoked {key_id}; a running service refuses it within 5 seconds")
    else:
        console.print(f"{key_id} was already revoked")
