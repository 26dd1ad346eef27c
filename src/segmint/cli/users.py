"""``segmint users``: the people who sign in to the workspace (add, list, passwd, remove)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._common import JsonOpt, ProjectOpt, console, err, print_json, show_time
from segmint.cli._common import run as _run

users_app = typer.Typer(
    help="People of the workspace (segmint serve at /): a name, a password (stored hashed) "
    "and a role, viewer or editor.",
    no_args_is_help=True,
)

StdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (for scripts)."),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


def _change(
    project: Path, change: Callable[[Any], None], out: dict[str, Any], said: str, as_json: bool
) -> None:
    """Run ``change(store)`` on the project's store; print ``out`` (JSON) or ``said``."""
    from segmint import open_project

    def go() -> dict[str, Any]:
        with open_project(project) as p:
            change(p.store)
        return out

    _run(go)
    if as_json:
        print_json(out)
    else:
        err.print(said)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: Annotated[str, typer.Option(help="viewer (reads) or editor (also changes).")] = "viewer",
    password_stdin: StdinOpt = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Add a person (or reset one: new password and role). Asks for the password twice."""
    from segmint.web import add_person

    secret = _password(password_stdin)
    _change(
        project,
        lambda store: add_person(store, name, secret, role),
        {"name": name, "role": role},
        f"{name} can sign in to the workspace as {role} (segmint serve, then open /)",
        as_json,
    )


@users_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="Whose password.")],
    password_stdin: StdinOpt = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Set a new password; the person's open sessions end."""
    from segmint.web import set_password

    secret = _password(password_stdin)
    _change(
        project,
        lambda store: set_password(store, name, secret),
        {"name": name, "password": "changed"},
        f"new password for {name}; their sessions ended",
        as_json,
    )


@users_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Who.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Disable a person (kept for the audit log) and end their sessions."""
    from segmint.web import remove_person

    _change(
        project,
        lambda store: remove_person(store, name),
        {"name": name, "removed": True},
        f"{name} can no longer sign in",
        as_json,
    )


@users_app.command("list")
def list_cmd(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the people: name, role, created, disabled (never a password)."""
    from segmint import open_project
    from segmint.web import people

    def go() -> tuple[list[dict[str, Any]], str]:
        with open_project(project) as p:
            return people(p.store), p.config.timezone

    rows, tz = _run(go)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("nobody yet: `segmint users add NAME --role editor` adds someone")
        return
    t = Table(title="Workspace users")
    for c in ("name", "role", "created", "disabled"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(
            r["name"], r["role"], show_time(r["created_at"], tz), show_time(r["disabled_at"], tz)
        )
    console.print(t)
