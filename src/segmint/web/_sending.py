"""Sending a campaign from the workspace: in a background thread, one batch at a time.

:func:`segmint.campaigns.send_campaign` takes the store for the whole call. DuckDB lets
one user at a time use the service's connection, so a send holding it throughout would
stop every page (and the tracking loader) until the last message left. The workspace
therefore sends one batch per call: the library's ``callback`` (called after each batch's
outcomes are committed) stops the call, the store is let go for a moment, and the next
call resumes the same plan where the log says it stands. This is the library's own
resume path (a stopped send is resumed exactly once per idempotency key; the hand-over
journal is empty after each committed batch), so nothing is sent twice or lost. The
price: each call checks the channels and templates again (one SMTP connection per
batch) and re-enters the plan in the log (a few queries).

One send per campaign runs at a time in this process (:class:`Sends`); another process
sending the same campaign is refused by the library (the journal's lock).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["BATCH", "SendState", "Sends"]

log = logging.getLogger("segmint.web")

BATCH = 200
"""Messages per call of ``send_campaign`` (the store is held for one batch)."""


class _Pause(Exception):
    """Raised from the progress callback: let go of the store after a committed batch."""


@dataclass
class SendState:
    """Where one workspace send stands (shown by the progress region)."""

    campaign: str
    run_id: str
    actor: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    running: bool = True
    batches: int = 0
    error: str | None = None
    report: dict[str, Any] | None = None

    @property
    def seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


class Sends:
    """The workspace's sends in this process, by campaign."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, SendState] = {}

    def get(self, campaign: str) -> SendState | None:
        with self._lock:
            return self._states.get(campaign)

    def running(self, campaign: str) -> bool:
        state = self.get(campaign)
        return bool(state and state.running)

    def start(self, host: Any, config: Any, campaign: str, run_id: str, actor: str) -> bool:
        """Start sending plan ``run_id`` in the background; False if a send of this
        campaign is already running here."""
        with self._lock:
            now = self._states.get(campaign)
            if now is not None and now.running:
                return False
            state = SendState(campaign, run_id, actor)
            self._states[campaign] = state
        thread = threading.Thread(
            target=_send_all,
            args=(host, config, state),
            name=f"segmint-send-{campaign}",
            daemon=True,
        )
        thread.start()
        return True

    def wait(self, campaign: str, timeout: float = 60.0) -> SendState | None:
        """Wait until the campaign's send ends (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get(campaign)
            if state is None or not state.running:
                return state
            time.sleep(0.05)
        return self.get(campaign)


def sends_of(app: Any) -> Sends:
    """The app's :class:`Sends` (made on first use)."""
    found = getattr(app.state, "workspace_sends", None)
    if found is None:
        found = app.state.workspace_sends = Sends()
    return found  # type: ignore[no-any-return]


def _one_batch(done: int, total: int) -> None:
    raise _Pause


def _send_all(host: Any, config: Any, state: SendState) -> None:
    """Call ``send_campaign`` batch after batch until it returns (everything sent or
    deferred) or fails; the outcome goes into ``state``."""
    from segmint.campaigns import send_campaign
    from segmint.errors import SegmintError

    try:
        while True:
            with host.hold_store() as store:
                try:
                    report = send_campaign(
                        store,
                        config,
                        state.campaign,
                        plan=state.run_id,
                        batch_size=BATCH,
                        callback=_one_batch,
                        actor=state.actor,
                    )
                except _Pause:
                    state.batches += 1
                    report = None
            if report is not None:
                state.report = report.to_dict()
                break
            time.sleep(0.02)  # let waiting requests have the store
    except SegmintError as exc:
        state.error = str(exc)
        log.warning("campaign %s: the workspace's send stopped: %s", state.campaign, exc)
    except Exception as exc:  # a bug or a lost store: say so, keep the service up
        state.error = f"{type(exc).__name__}: {exc}"
        log.exception("campaign %s: the workspace's send failed", state.campaign)
    finally:
        state.finished_at = datetime.now(UTC)
        state.running = False
