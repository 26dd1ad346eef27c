"""The workspace's Settings page: the configuration (``segmint.yaml``, the source of truth),
its earlier versions with their diffs, the people of the workspace and the audit log."""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from segmint.store import verify_audit
from segmint.web._accounts import people
from segmint.web._auth import Viewer
from segmint.web._config_edit import HISTORY, current
from segmint.web._core import page, workspace
from segmint.web._text import N_

router = APIRouter()

_VERSION = re.compile(r"[\w.-]+")


def _versions(request: Request) -> list[dict[str, Any]]:
    folder = workspace(request).config_path.parent / HISTORY
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.yaml"), reverse=True)[:50]:
        stat = path.stat()
        out.append(
            {
                "name": path.name,
                "saved": datetime.fromtimestamp(stat.st_mtime, UTC),
                "bytes": stat.st_size,
            }
        )
    return out


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, session: Viewer) -> HTMLResponse:
    ws = workspace(request)
    text, sha = current(ws.config_path)
    modified = datetime.fromtimestamp(ws.config_path.stat().st_mtime, UTC)
    with ws.host.hold_store() as store:
        team = people(store)
        audit = store.query(
            "SELECT ts, actor, action, target, why FROM audit_log "
            "ORDER BY seq DESC NULLS LAST, ts DESC LIMIT 50"
        ).to_dict("records")
        audit_check = verify_audit(store)
    return page(
        request,
        "settings.html.j2",
        active="settings",
        title=N_("Settings"),
        path_shown=str(ws.config_path),
        sha=sha[:12],
        modified=modified,
        text=text,
        versions=_versions(request),
        team=team,
        audit=audit,
        audit_check=audit_check,
    )


@router.get("/settings/versions/{name}", response_class=HTMLResponse)
def version_diff(request: Request, name: str, session: Viewer) -> HTMLResponse:
    from segmint.web._app import message

    ws = workspace(request)
    kept = ws.config_path.parent / HISTORY / name
    if not _VERSION.fullmatch(name) or not kept.is_file():
        return message(request, 404, N_("Not found"), N_("There is no such version."), "/settings")
    old = kept.read_text(encoding="utf-8")
    now, _ = current(ws.config_path)
    lines = []
    for line in difflib.unified_diff(
        old.splitlines(), now.splitlines(), f"{name}", "segmint.yaml (now)", n=2, lineterm=""
    ):
        if line.startswith(("+++", "---")):
            continue
        lines.append(({"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx"), line))
    return page(
        request,
        "settings_version.html.j2",
        active="settings",
        title=N_("Configuration history"),
        name=name,
        diff=lines,
    )
