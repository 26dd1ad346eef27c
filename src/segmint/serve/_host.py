"""What the workspace (:mod:`segmint.web`) gets from the running service: the store
through the service's holder, the scheduler, decisions and the tracking pipeline's state
(:class:`segmint.web.Host`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI

__all__ = ["ServiceHost"]


class ServiceHost:
    """:class:`segmint.web.Host` for one service app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def project(self) -> Any:
        return self.app.state.project

    @contextmanager
    def hold_store(self) -> Iterator[Any]:
        from segmint.serve._app import hold_store

        with hold_store(self.app) as store:
            yield store

    def jobs(self, *, limit: int = 20, job: str | None = None) -> dict[str, Any]:
        return self.app.state.scheduler.overview(limit=limit, job=job)  # type: ignore[no-any-return]

    def run_job(self, name: str) -> datetime:
        return self.app.state.scheduler.run_in_background(name)  # type: ignore[no-any-return]

    def decide(self, user_id: str) -> dict[str, Any] | None:
        """The decision the site gets for ``user_id`` now, without logging an exposure (a
        marketer looking is not the person being served); None while the first snapshot
        builds."""
        from segmint.errors import RequestError
        from segmint.serve._decide import decide

        service = self.app.state.decisions
        try:
            snap = service.snapshot
        except RequestError:
            return None
        decision, _exposure = decide(service, snap, user_id)
        return decision

    def tracking(self) -> dict[str, Any]:
        loader = getattr(self.app.state, "tracking", None)
        return {
            "loaded_batches": getattr(loader, "n_loaded", 0),
            "failed_batches": getattr(loader, "n_failures", 0),
            "batch_seconds": getattr(loader, "batch_seconds", None),
        }
