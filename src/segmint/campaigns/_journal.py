"""The hand-over journal: what a killed send run did between two commits of the log.

A channel that supports *hand-over* (e-mail, webhook) sends each message in two steps:
everything but its last piece (the SMTP end-of-data line ``.``; the last byte of an HTTP
body), then the last piece. A receiver that loses the connection before the last piece
discards the message (RFC 5321 section 3.8: a dropped connection cancels the open
transaction; an HTTP server never handles a body shorter than its ``Content-Length``).
Just before the last piece the sender appends ``H <key>`` to this journal, and after the
receiver's answer ``O <key> <status> <error>``.

One ``write(2)`` to a file opened with ``O_APPEND`` is on its way to disk as soon as it
returns: a process killed at any later moment (SIGKILL included) cannot lose it. So when
a run is killed, the next run reads the journal before anything else:

* a ``sending`` row with an outcome: the outcome is recorded (no resend);
* a ``sending`` row handed over without an outcome: the receiver got the whole message
  and the sender died before its answer. It is recorded ``sent`` and flagged
  ``ambiguous`` ("unconfirmed"), and **not** sent again;
* a ``sending`` row not in the journal: the receiver never got the last piece and threw
  the message away, so it is sent again, safely.

What is left: a kill between the journal write and the write of the last piece (two
consecutive system calls, microseconds) loses that one message, logged as unconfirmed,
rather than duplicating it. A machine crash (not a process kill) can lose journal lines
that were not yet flushed by the kernel; the journal does not ``fsync`` per message.

The journal is one small file per campaign, ``<project>/.segmint/journal/<campaign>.jsonl``,
emptied after each commit of the delivery log, so it holds at most one group of messages.
Resume a killed run from the same project folder. The sending process holds an exclusive
lock on it (``flock``, released by the kernel when the process dies), so two runs of the
same campaign can never send at once: the second stops with an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from segmint.errors import JournalBusy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, the rest works
    fcntl = None  # type: ignore[assignment]

__all__ = ["DeliveryJournal", "JournalBusy", "JournalEntry", "journal_path"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def journal_path(root: Path, campaign: str) -> Path:
    """Where the journal of ``campaign`` lives under the project folder ``root``."""
    return Path(root) / ".segmint" / "journal" / f"{_SAFE.sub('_', campaign)}.jsonl"


@dataclass
class JournalEntry:
    """What the journal says about one message."""

    handed_over: bool = False
    status: str | None = None  # the receiver's answer: sent / failed / rejected
    error: str | None = None
    ambiguous: bool = False  # sent without the receiver's answer (see the channel)


class DeliveryJournal:
    """Append-only journal of hand-overs and outcomes (see the module docstring).

    Parameters
    ----------
    path : Path
        The journal file; its folder is created.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._fd)
                self._fd = None
                raise JournalBusy(str(self.path)) from None

    @classmethod
    def open_or_none(cls, path: Path) -> DeliveryJournal | None:
        """The journal, or None when the folder cannot be written (the run then falls back
        to resending the one message of unknown fate)."""
        try:
            return cls(path)
        except JournalBusy:
            raise
        except OSError:
            return None

    def _append(self, record: list[str | None]) -> None:
        if self._fd is None:
            raise ValueError("the journal is closed")
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def handed_over(self, key: str) -> None:
        """Record that the receiver is about to get the last piece of message ``key``."""
        self._append(["H", key])

    def outcome(
        self, key: str, status: str, error: str | None = None, ambiguous: bool = False
    ) -> None:
        """Record the receiver's answer to message ``key``."""
        self._append(["O", key, status, error, "1" if ambiguous else ""])

    def read(self) -> dict[str, JournalEntry]:
        """Entries by idempotency key (a torn last line, if any, is ignored)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        entries: dict[str, JournalEntry] = {}
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, list) or len(record) < 2:
                continue
            entry = entries.setdefault(str(record[1]), JournalEntry())
            if record[0] == "H":
                entry.handed_over = True
            elif record[0] == "O" and len(record) >= 4:
                entry.status, entry.error = record[2], record[3]
                entry.ambiguous = len(record) > 4 and bool(record[4])
        return entries

    def clear(self) -> None:
        """Empty the journal (after its entries are committed to the delivery log)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def close(self, *, remove: bool = False) -> None:
        """Release the lock; ``remove`` deletes the (empty) file, while still holding it."""
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
