"""What every command does to the store: read it or write it, in one table.

While ``segmint serve`` runs on a DuckDB project it owns the file (see
:mod:`segmint.store`'s claim): a command that writes stops at once with one line naming
the service; a command that reads opens the file read-only beside it. :func:`guard` wraps
every command of the app so it runs inside :func:`segmint.store.access_mode` of its kind.
A test walks the app and fails on a command missing from :data:`ACCESS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from segmint.cli._common import run

__all__ = ["ACCESS", "access_of", "guard"]

Kind = str | Callable[[dict[str, Any]], str]

ACCESS: dict[str, Kind] = {
    # -- commands that write the store (refused while a service owns a DuckDB file) --------
    "init": "write",
    "ingest": "write",
    "segment": "write",
    "recommend": lambda kw: "read" if kw.get("user") is not None else "write",
    "refresh": "write",
    "evaluate": "write",  # stores the evaluation
    "demo": "write",
    "serve": "write",  # a second service on the same file
    "campaign plan": "write",
    "campaign send": "write",
    "campaign import": "write",
    "campaign unsubscribe": "write",
    "campaign rotate-key": "write",
    "campaign preview": "write",  # plans the campaign when it has no plan yet
    "export profiles": "write",  # every export of personal data is logged in the store
    "export segment": "write",
    "export audience": "write",
    "recommend evaluate": "write",  # stores the evaluation ("best" reads it)
    "predict clv": "write",
    "predict churn": "write",
    "predict export": "write",  # every export is logged in the store
    "keys create": "write",
    "keys revoke": "write",
    "jobs run": "write",
    "users add": "write",
    "users passwd": "write",
    "users remove": "write",
    "privacy export": "write",  # records the export and its audit entry
    "privacy rotate-key": "write",
    "privacy retention": lambda kw: "read" if kw.get("dry_run") else "write",
    "privacy do-not-sell": "write",
    "privacy forget": "write",
    # -- commands that only read it (read-only beside a running service) -------------------
    "status": "read",
    "quarantine": lambda kw: "write" if kw.get("reveal") else "read",  # --reveal is audited
    "profile": "read",
    "persona": "read",
    "report": "read",
    "retention": "read",
    "satisfaction": "read",
    "before-after": "read",
    "segments list": "read",
    "segments show": "read",
    "segments diff": "read",
    "predict list": "read",
    "predict show": "read",
    "campaign list": "read",
    "playbook init": "read",  # writes segmint.yaml, not the store
    "playbook check": "read",
    "export personas": "read",
    "export log": "read",
    "keys list": "read",
    "users list": "read",
    "jobs": "read",
    "privacy audit": "read",
}
"""Command path (as typed after ``segmint``) -> ``"read"``, ``"write"``, or a function of
the command's arguments giving one of them."""


def access_of(path: str, arguments: dict[str, Any] | None = None) -> str:
    """``"read"`` or ``"write"`` for the command at ``path`` (unknown commands write)."""
    kind = ACCESS.get(path, "write")
    return kind(arguments or {}) if callable(kind) else kind


def _check_claim(project: Any) -> None:
    """Stop a command that writes at once when a live service claims its project."""
    from segmint.errors import StoreBusyError
    from segmint.store import read_claim

    if not isinstance(project, Path):
        return
    root = project.parent if project.is_file() else project
    claim = read_claim(root)
    if claim is not None and not claim.is_mine():
        raise StoreBusyError(
            f"{claim.owner()} owns {claim.store or root} while it runs: stop it first, or "
            "send events through its tracking API; read-only commands (report, profile, "
            "segments list, jobs ...) still work",
            pid=claim.pid,
        )


def _wrap(path: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        from segmint.store import access_mode

        ctx = next((v for v in kwargs.values() if isinstance(v, typer.Context)), None)
        if ctx is not None and ctx.invoked_subcommand is not None:
            return fn(*args, **kwargs)  # a group's callback before its subcommand
        mode = access_of(path, kwargs)
        if mode == "write":
            run(lambda: _check_claim(kwargs.get("project", kwargs.get("dir"))))
        with access_mode("read" if mode == "read" else "write"):
            return fn(*args, **kwargs)

    command._segmint_access = path  # type: ignore[attr-defined]
    return command


def _name(info: Any) -> str:
    from typer.main import get_command_name

    return str(info.name or get_command_name(info.callback.__name__))


def guard(app: typer.Typer, prefix: str = "") -> None:
    """Wrap every command of ``app`` (and of its groups) in its access mode."""
    for info in app.registered_commands:
        if info.callback is None or hasattr(info.callback, "_segmint_access"):
            continue
        info.callback = _wrap(f"{prefix}{_name(info)}", info.callback)
    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        name = group.name or (sub.info.name if sub.info else None)
        path = f"{prefix}{name}"
        group_cb = sub.registered_callback
        fn = group_cb.callback if group_cb is not None else None
        if group_cb is not None and fn is not None and not hasattr(fn, "_segmint_access"):
            group_cb.callback = _wrap(path, fn)
        guard(sub, f"{path} ")
