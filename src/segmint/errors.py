"""Every error segmint raises on purpose.

The tree::

    SegmintError                      base; the CLI prints its message and exits 1
    ├── ConfigError                   (exit 2) segmint.yaml missing, unreadable, unknown key,
    │   │                             wrong type, a key for something not built yet
    │   ├── ConfigChangedError        segmint.yaml changed since an edit of it was prepared in
    │   │                             the workspace; nothing was written (review the edit again)
    │   ├── TemplateError             a message template does not compile, is unsafe or uses an
    │   │                             unknown field (raised at plan time, never at send time)
    │   └── SourceConfigError         (also a SourceError) a source as configured does not fit
    │       │                         what is there: no file at `path:`, a folder or a device,
    │       │                         an invalid column expression, filter or query, a file not
    │       │                         in the declared encoding, an unset $ENV_VAR
    │       └── MissingColumnError    a mapped column is not in the source; suggests the closest
    ├── EngineError                   (exit 2) engine: spark cannot run here: no Java 17/21, a
    │                                 master that does not answer, no JDBC driver (names the fix)
    ├── StoreError                    the store cannot be opened, migrated or written
    │   └── StoreBusyError            a DuckDB store is held by another process (its lock), or
    │                                 owned by a running `segmint serve` (a write command stops)
    ├── SourceError                   a source's data cannot be read (empty, damaged or
    │                                 mislabelled compression, a header with repeated names)
    ├── LoadError                     a load failed and was rolled back; the store is unchanged
    ├── DeliveryError                 a send stopped (channel unreachable, too many failures);
    │   │                             the delivery log is intact and a rerun resumes
    │   ├── ChannelUnavailable        the channel as a whole cannot deliver: SMTP server or
    │   │                             webhook unreachable, login refused, file not writable
    │   └── JournalBusy               another process holds the campaign's hand-over journal
    │                                 lock (it is sending the same campaign); the sender turns
    │                                 it into a DeliveryError that says to wait or stop it
    ├── NotFoundError                 (exit 2) a named thing (source, table, user) does not exist
    ├── InvalidTokenError             (exit 2) an unsubscribe token is malformed or its signature
    │                                 does not match any configured key
    ├── RequestError                  (exit 2) `segmint serve` refuses a request: its HTTP
    │   │                             ``status`` and reason go back as a problem detail
    │   └── AccessDenied              the workspace refuses a request: no session (401, a page
    │                                 redirects to sign-in), no right or a bad CSRF token (403),
    │                                 too many failed sign-ins (429); answered as a page
    └── NotFittedError                (also an AttributeError) a recommender was used before
                                      its ``fit``

Every class above is defined here; the modules that raise them re-export them under their
old names (``segmint.recommend.NotFittedError``, ``segmint.campaigns.ChannelUnavailable``,
``segmint.campaigns.InvalidTokenError``, ``segmint.campaigns._journal.JournalBusy``).
tests/test_errors.py checks that this drawing is the real class hierarchy.

Five private exceptions are not errors but control flow inside one package and never
leave it: ``campaigns._templates._LimitExceeded`` (turned into a TemplateError),
``campaigns._channels._LostBeforeEnd`` / ``_LostAfterEnd`` (a broken SMTP connection,
turned into one resend, or a delivery counted as sent but flagged unconfirmed) and
``serve._spool._SpoolClosed`` (the tracking spool cannot take a line: the service is
stopping or the disk refused; the tracking endpoint answers 503 with Retry-After) and
``web._sending._Pause`` (raised from a send's progress callback after a committed batch, so
the workspace lets go of the store between batches and resumes the send).

``exit_code`` is what the CLI exits with: 2 for a problem the user fixes in segmint.yaml or
on the command line (ConfigError and its subclasses, NotFoundError, InvalidTokenError,
EngineError), 1 for everything else. Each message says what was found, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "ConfigChangedError",
    "ConfigError",
    "ChannelUnavailable",
    "DeliveryError",
    "EngineError",
    "InvalidTokenError",
    "JournalBusy",
    "LoadError",
    "MissingColumnError",
    "NotFittedError",
    "NotFoundError",
    "RequestError",
    "SegmintError",
    "SourceConfigError",
    "SourceError",
    "StoreBusyError",
    "StoreError",
    "TemplateError",
]


class SegmintError(Exception):
    """Base class of every error segmint raises on purpose.

    ``committed``: when the error stopped ``Project.ingest`` after earlier sources were
    loaded, their load results (those loads stand; the message names them too).
    """

    exit_code: int = 1
    committed: tuple[Any, ...] = ()


class ConfigError(SegmintError):
    """The configuration is missing or invalid."""

    exit_code = 2


class EngineError(SegmintError):
    """The compute engine cannot run here (Spark: no Java 17/21, a master that does not
    answer, a missing driver); the message names the fix."""

    exit_code = 2


class StoreError(SegmintError):
    """The store cannot be opened, migrated or written."""


class StoreBusyError(StoreError):
    """A DuckDB store is in use: another process holds its lock, or a running
    ``segmint serve`` owns it (see :mod:`segmint.store`). ``pid``: the holder's process id
    when known."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class SourceError(SegmintError):
    """A source cannot be read."""


class SourceConfigError(SourceError, ConfigError):
    """A source as configured does not fit what is there (fixed in segmint.yaml)."""

    exit_code = 2


class MissingColumnError(SourceConfigError):
    """A mapped column is missing from the source.

    Parameters
    ----------
    source : str
        Name of the source in segmint.yaml.
    missing : list of str
        Source column names the column map asks for but the source lacks.
    found : list of str
        Column names the source actually has.
    """

    def __init__(
        self, source: str, missing: list[str], found: list[str], *, hint: str | None = None
    ) -> None:
        import difflib

        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, found, n=1, cutoff=0.5)
            if not close:
                lowered = {f.lower(): f for f in found}
                if name.lower() in lowered:
                    close = [lowered[name.lower()]]
            if close:
                hints.append(f"{name!r} -> did you mean {close[0]!r}?")
        msg = (
            f"source {source!r}: column(s) {', '.join(map(repr, missing))} not found. "
            f"Expected (from the column map): {', '.join(missing)}. "
            f"Found: {', '.join(found)}."
        )
        if hints:
            msg += " " + " ".join(hints)
        if hint:
            msg += " " + hint
        msg += " Fix the `columns:` map of this source in segmint.yaml."
        super().__init__(msg)
        self.source = source
        self.missing = missing
        self.found = found


class LoadError(SegmintError):
    """A load failed midway and was rolled back; the store is exactly as before."""


class NotFoundError(SegmintError):
    """A named source, table or user does not exist."""

    exit_code = 2


class ConfigChangedError(ConfigError):
    """``segmint.yaml`` changed since an edit of it was prepared; nothing was written."""


class TemplateError(ConfigError):
    """A message template does not compile, tries to reach Python internals, or uses a
    field that messages do not have."""


class DeliveryError(SegmintError):
    """Sending stopped before the end; every attempt so far is in the delivery log.

    ``report`` holds the counts of the interrupted send (a
    :class:`segmint.campaigns.SendReport`), when there is one.
    """

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ChannelUnavailable(DeliveryError):
    """The channel as a whole cannot deliver (server unreachable, login refused)."""


class JournalBusy(DeliveryError):
    """Another process is sending the same campaign (it holds the journal's lock).

    The message is the journal's path.
    """


class InvalidTokenError(SegmintError):
    """The unsubscribe token is malformed or its signature does not match."""

    exit_code = 2


class RequestError(SegmintError):
    """``segmint serve`` refuses a request; ``status`` is the HTTP status of the answer,
    the message its problem detail's ``detail``, ``extra`` more members of the problem."""

    exit_code = 2

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


class AccessDenied(RequestError):
    """The workspace refuses a request: ``status`` 401 (no session; ``next_url`` is the
    sign-in page to send a browser to), 403 (no right, or a bad CSRF token), 429 (too many
    failed sign-ins). The message is an English message id (translated on the page)."""

    def __init__(self, status: int, detail: str, *, next_url: str | None = None) -> None:
        super().__init__(status, detail)
        self.next_url = next_url


class NotFittedError(SegmintError, AttributeError):
    """A recommender was used before :meth:`segmint.recommend.Recommender.fit`."""
