"""The workspace's Jobs page (a placeholder until it is built)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from segmint.web._auth import Viewer
from segmint.web._core import page

router = APIRouter()


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: Viewer) -> HTMLResponse:
    return page(request, "placeholder.html.j2", active="jobs", title="Jobs")
