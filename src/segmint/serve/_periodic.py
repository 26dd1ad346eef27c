"""The service's background threads: one step every few seconds until the service stops."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

__all__ = ["Periodic"]

log = logging.getLogger("segmint.serve")


class Periodic(ABC):
    """A daemon thread calling :meth:`tick` every :attr:`interval` seconds until stopped.
    A tick that raises is logged (``failure`` says what failed and what happens next) and
    the thread goes on; subclasses start and stop it from their ``start``/``stop``."""

    thread_name = "segmint-periodic"
    failure = "a background step failed; trying again at the next tick"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    @abstractmethod
    def interval(self) -> float:
        """Seconds between two ticks."""

    @abstractmethod
    def tick(self) -> None:
        """One step of the worker's work."""

    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _stop_thread(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception(self.failure)
