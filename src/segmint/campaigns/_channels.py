"""Channels: one small class each, one method that matters (``send(message)``).

A channel is opened once per send run (``open``/``close``, or ``with channel:``) and then
called once per message. ``send`` returns a :class:`DeliveryResult`:

* ``sent`` the receiver accepted the message;
* ``failed`` a transient problem (retried by the next ``send`` run, up to
  ``playbook.max_attempts``);
* ``rejected`` a permanent one (a refused or invalid address, a 4xx answer): never retried.

When the channel as a whole is down (SMTP server unreachable, webhook host refusing
connections), ``send`` raises :class:`ChannelUnavailable`: the run stops, records the
attempt, and a later run resumes. See docs/campaigns.md for how to add a channel.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any, Literal

from segmint._playbook import EmailChannelSpec, FileChannelSpec, WebhookChannelSpec
from segmint._spreadsheet import neutralise_row, restore, restore_frame, write_xlsx
from segmint.errors import ChannelUnavailable, ConfigError, SegmintError

__all__ = [
    "Channel",
    "ChannelUnavailable",
    "DeliveryResult",
    "EmailChannel",
    "FileChannel",
    "Message",
    "WebhookChannel",
    "message_id_for",
]

log = logging.getLogger(__name__)

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)


# SMTP wants CRLF line ends; headers stay on one line up to RFC 5322's 998 characters
_WIRE = compat32.clone(linesep="\r\n", max_line_length=998)


_ADDRESS_IN_TEXT = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:]+")


def _text(value: bytes | str) -> str:
    """A server's reply as text, any e-mail address in it replaced by ``<address>`` (the
    reply goes to the delivery log and the journal, which hold no personal data)."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    return _ADDRESS_IN_TEXT.sub("<address>", text)


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.close()


@dataclass(slots=True)
class Message:
    """One rendered message, ready for a channel.

    Attributes
    ----------
    idempotency_key : str
        ``campaign|user_id|step``; the same message always has the same key.
    message_id : str
        Deterministic ``<...@domain>`` id derived from the key (resends carry the same).
    to : str or None
        The e-mail address (e-mail and file channels), else None.
    payload : dict
        Segment, offer and recommendations, for webhook and file channels.
    """

    idempotency_key: str
    campaign: str
    user_id: str
    to: str | None
    subject: str
    body: str
    html: str | None
    message_id: str
    unsubscribe_url: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryResult:
    """What a channel did with one message."""

    status: Literal["sent", "failed", "rejected"]
    error: str | None = None
    # the fate was unclear: resent after a lost answer (webhook, same Idempotency-Key), or
    # counted as sent without the receiver's answer (e-mail after the end of data)
    ambiguous: bool = False


def _arm_header(message: Message) -> list[str]:
    """``X-Segmint-Arm`` (the campaign arm, so replies and bounces tell variants apart),
    encoded when the label is not ASCII."""
    arm = message.payload.get("arm")
    if not arm:
        return []
    value = arm if arm.isascii() else Header(arm, "utf-8").encode(linesep="\r\n")
    return [f"X-Segmint-Arm: {value}"]


def message_id_for(idempotency_key: str, domain: str = "segmint.local") -> str:
    """The Message-ID of a message: ``<md5 of the key>@domain``; the same key always gives
    the same id (the delivery log computes it the same way in SQL)."""
    digest = hashlib.md5(idempotency_key.encode(), usedforsecurity=False).hexdigest()
    return f"<{digest}@{domain}>"


def channel_domain(spec: object) -> str:
    """The Message-ID domain of a channel: the From domain of e-mail, else segmint.local."""
    if isinstance(spec, EmailChannelSpec):
        address = parseaddr(spec.from_address)[1]
        if "@" in address:
            return address.rsplit("@", 1)[1]
    return "segmint.local"


class Channel(ABC):
    """Base class: override :meth:`send` (and :meth:`open` / :meth:`close` if the channel
    holds a connection or a file)."""

    name: str = "channel"
    rate_per_second: float | None = None
    #: True when :meth:`send` calls :attr:`on_handover` just before the last piece of the
    #: message (see ``segmint.campaigns._journal``): a killed run then never resends a
    #: message the receiver has, and safely resends one it does not
    supports_handover: bool = False
    on_handover: Callable[[Message], None] | None = None

    def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Prepare to send (connect, open a file). Raise ChannelUnavailable on failure."""

    def preflight(self) -> list[SegmintError]:
        """Check, before the first message of a run, that the channel can deliver; return
        every problem found (empty when ready) and leave the channel open when ready.

        The default opens the channel (:meth:`open`); channels override it to check more
        (secrets, reachability) and to report several problems at once.
        """
        try:
            self.open()
        except SegmintError as exc:
            return [exc]
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what :meth:`open` took; make everything sent durable."""

    @abstractmethod
    def send(self, message: Message) -> DeliveryResult:
        """Deliver one message."""

    def __enter__(self) -> Channel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _secret_from_env(env: str | None, what: str) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"{what}: environment variable {env} is not set; export it first")
    return value


class EmailChannel(Channel):
    """E-mail over SMTP: one connection per run, STARTTLS or SSL, optional login.

    Parameters
    ----------
    spec : EmailChannelSpec
        Host, port, security, credentials (password from the env var ``password_env``).
    name : str, default 'email'
        The channel's name in the playbook.
    """

    def __init__(self, spec: EmailChannelSpec, name: str = "email") -> None:
        self.spec = spec
        self.name = name
        self.rate_per_second = spec.rate_per_second
        self.supports_handover = True
        self._smtp: smtplib.SMTP | None = None
        self._sender = parseaddr(spec.from_address)[1] or spec.from_address
        name = parseaddr(spec.from_address)[0]
        self._from_header = (
            spec.from_address
            if spec.from_address.isascii()
            else formataddr((name, self._sender), "utf-8")
        )
        self.domain = self._sender.rsplit("@", 1)[-1] if "@" in self._sender else "segmint.local"

    def _connect(self, *, login: bool = True) -> smtplib.SMTP:
        s = self.spec
        where = f"SMTP server {s.host}:{s.port}"
        password = (
            _secret_from_env(s.password_env, f"channel {self.name!r}")
            if login and s.username
            else None
        )
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            # the end-of-data line is a second small write after the body: without
            # TCP_NODELAY, Nagle's algorithm holds it for the server's delayed ACK (~40 ms)
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if login and s.username:
                smtp.login(s.username, password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            raise ChannelUnavailable(
                f"{where} refused the login of {s.username!r}: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}; check username and {s.password_env}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            raise ChannelUnavailable(
                f"cannot connect to {where}: {exc or type(exc).__name__}; check "
                f"playbook.channels.{self.name} (host, port, security) and that the server runs"
            ) from None
        return smtp

    def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        if self._smtp is None:
            self._smtp = self._connect()

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None

    def preflight(self) -> list[SegmintError]:
        """The password is set (when there is a username) and the server answers EHLO
        (with STARTTLS and the login when configured); the connection stays open."""
        s = self.spec
        if s.username and s.password_env and not os.environ.get(s.password_env):
            problems: list[SegmintError] = [
                ConfigError(
                    f"channel {self.name!r}: environment variable {s.password_env} (the SMTP "
                    f"password of {s.username!r}) is not set; export it first"
                )
            ]
            try:  # is the server there at all? (no login without the password)
                _close_quietly(self._connect(login=False))
            except ChannelUnavailable as exc:
                problems.append(exc)
            return problems
        try:
            self.open()
        except ChannelUnavailable as exc:
            return [exc]
        return []

    def build(self, message: Message) -> Any:
        """The e-mail for one message (headers included), as a ``compat32`` MIME message:
        several times faster to build than ``EmailMessage`` and the same on the wire."""
        if message.html is None:
            msg: Any = MIMEText(message.body, "plain", "utf-8")
        else:
            msg = MIMEMultipart("alternative")
            msg.attach(MIMEText(message.body, "plain", "utf-8"))
            msg.attach(MIMEText(message.html, "html", "utf-8"))
        msg["From"] = self.spec.from_address
        msg["To"] = message.to or ""
        msg["Subject"] = (
            message.subject if message.subject.isascii() else Header(message.subject, "utf-8")
        )
        msg["Message-ID"] = message.message_id
        msg["Date"] = formatdate(usegmt=True)
        if self.spec.reply_to:
            msg["Reply-To"] = self.spec.reply_to
        msg["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Segmint-Campaign"] = message.campaign
        if message.payload.get("arm"):
            msg["X-Segmint-Arm"] = message.payload["arm"]
        return msg

    def raw(self, message: Message) -> bytes:
        """The bytes on the wire (what :meth:`build` gives, built without the email package's
        header folding, which costs more than the SMTP exchange itself)."""
        if message.html is not None:
            return bytes(self.build(message).as_bytes(policy=_WIRE))
        subject = message.subject
        if not subject.isascii():
            subject = Header(subject, "utf-8").encode(linesep="\r\n")
        lines = [
            f"From: {self._from_header}",
            f"To: {message.to or ''}",
            f"Subject: {subject}",
            f"Message-ID: {message.message_id}",
            f"Date: {formatdate(usegmt=True)}",
        ]
        if self.spec.reply_to:
            lines.append(f"Reply-To: {self.spec.reply_to}")
        lines += [
            f"List-Unsubscribe: <{message.unsubscribe_url}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            f"X-Segmint-Campaign: {message.campaign}",
            *_arm_header(message),
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: base64",
            "",
            "",
        ]
        body = base64.encodebytes(message.body.encode("utf-8")).replace(b"\n", b"\r\n")
        return "\r\n".join(lines).encode("ascii", errors="replace") + body

    def send(self, message: Message) -> DeliveryResult:
        to = message.to or ""
        if not _EMAIL.match(to):
            return DeliveryResult("rejected", "invalid e-mail address")
        data = _dot_stuffed(self.raw(message))
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                return self._transaction(self._smtp, to, data, message)
            except _LostBeforeEnd as exc:
                # the server never got the end of data, so it dropped the message (RFC 5321
                # 3.8): reconnect and send it again, a safe resend
                self._smtp = None
                if attempt == 2:
                    raise ChannelUnavailable(
                        f"SMTP server {self.spec.host}:{self.spec.port} dropped the "
                        f"connection twice: {exc}"
                    ) from None
            except _LostAfterEnd as exc:
                # the server has the whole message; its answer was lost. Sending it again
                # could duplicate it: it counts as sent, flagged unconfirmed
                self._smtp = None
                return DeliveryResult(
                    "sent",
                    f"unconfirmed: the connection was lost after the end of data ({exc})",
                    ambiguous=True,
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(
        self, smtp: smtplib.SMTP, to: str, data: bytes, message: Message
    ) -> DeliveryResult:
        """MAIL, RCPT, DATA and the body; then the hand-over hook; then the end of data."""
        try:
            smtp.ehlo_or_helo_if_needed()
            options = []
            if not (self._sender + to).isascii() and smtp.has_extn("smtputf8"):
                options.append("SMTPUTF8")
            steps = (
                ("MAIL", lambda: smtp.mail(self._sender, options), (250,), "sender refused"),
                ("RCPT", lambda: smtp.rcpt(to), (250, 251), "recipient refused"),
                ("DATA", lambda: smtp.docmd("data"), (354,), "DATA refused"),
            )
            for command, step, ok, what in steps:
                code, text = step()
                if code not in ok:
                    if code == -1:  # smtplib's "no answer": the connection is gone
                        raise smtplib.SMTPServerDisconnected(f"no answer to {command}")
                    with contextlib.suppress(OSError, smtplib.SMTPException):
                        smtp.rset()
                    status: Literal["failed", "rejected"] = (
                        "failed" if 400 <= code < 500 else "rejected"
                    )
                    return DeliveryResult(status, f"{what}: {code} {_text(text)}")
            smtp.send(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _LostBeforeEnd(str(exc) or type(exc).__name__) from None
        if self.on_handover is not None:
            self.on_handover(message)
        try:
            smtp.send(b".\r\n")
            code, text = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _LostAfterEnd(str(exc) or type(exc).__name__) from None
        if code == 250:
            return DeliveryResult("sent")
        status = "failed" if 400 <= code < 500 else "rejected"
        return DeliveryResult(status, f"SMTP {code} {_text(text)}")


class _LostBeforeEnd(Exception):
    """The connection broke before the end-of-data line was written."""


class _LostAfterEnd(Exception):
    """The connection broke after the end-of-data line, before the server's answer."""


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA section without its end line: leading dots doubled, ending in CRLF."""
    data = re.sub(rb"(?m)^\.", b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class WebhookChannel(Channel):
    """A signed JSON POST per message (for push providers and your own services).

    The body is the message as JSON; headers carry ``X-Segmint-Signature:
    sha256=<hex HMAC-SHA256 of the body>`` (key from the env var ``secret_env``),
    ``Idempotency-Key`` and ``X-Segmint-Message-Id``. 5xx answers, 429 and timeouts are
    retried ``max_retries`` times with exponential backoff (``backoff``, doubled each
    time); other 4xx answers reject the message. A refused connection after every retry
    raises :class:`ChannelUnavailable`. The last byte of the body is written after the
    hand-over hook (see ``_journal.py``); a retry after a failure that came once the
    receiver had the whole body is flagged ``ambiguous`` (same Idempotency-Key).
    """

    def __init__(self, spec: WebhookChannelSpec, name: str = "webhook") -> None:
        self.spec = spec
        self.name = name
        self.rate_per_second = spec.rate_per_second
        self._key: bytes | None = None
        self.supports_handover = True
        self.sleep = time.sleep  # tests may replace it

    def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        secret = _secret_from_env(self.spec.secret_env, f"channel {self.name!r}")
        self._key = secret.encode() if secret else None

    def preflight(self) -> list[SegmintError]:
        """The signing secret is set, and the URL's host resolves and accepts a TCP
        connection."""
        problems: list[SegmintError] = []
        env = self.spec.secret_env
        if env is not None and not os.environ.get(env):
            problems.append(
                ConfigError(
                    f"channel {self.name!r}: environment variable {env} (the webhook signing "
                    "secret) is not set; export it first"
                )
            )
        url = urllib.parse.urlsplit(self.spec.url)
        host = url.hostname or ""
        where = f"webhook {self.spec.url}"
        fix = f"check playbook.channels.{self.name}.url and that the receiver runs"
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except ValueError as exc:  # a port out of range
            problems.append(ChannelUnavailable(f"{where}: bad URL ({exc}); {fix}"))
            return problems
        except OSError as exc:
            problems.append(ChannelUnavailable(f"{where}: cannot resolve {host!r} ({exc}); {fix}"))
            return problems
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(self.spec.timeout)
                    sock.connect(address)
                last = None
                break
            except OSError as exc:
                last = exc
        if last is not None:
            problems.append(
                ChannelUnavailable(f"{where}: cannot connect to {host}:{port} ({last}); {fix}")
            )
        if not problems:
            self.open()
        return problems

    @staticmethod
    def body_of(message: Message) -> bytes:
        """The JSON body posted for a message."""
        doc = {
            "idempotency_key": message.idempotency_key,
            "message_id": message.message_id,
            "campaign": message.campaign,
            "user_id": message.user_id,
            "subject": message.subject,
            "body": message.body,
            "unsubscribe_url": message.unsubscribe_url,
            **message.payload,
        }
        return json.dumps(doc, sort_keys=True, default=str).encode()

    def sign(self, body: bytes) -> str | None:
        """``sha256=<hex>`` of the body, or None without a key."""
        if self._key is None:
            return None
        return "sha256=" + hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def _post(
        self, body: bytes, headers: dict[str, str], message: Message, stage: list[str]
    ) -> tuple[int, str]:
        """One POST; ``stage[0]`` tells how far it got when it raises (``connect``,
        ``sending``, ``handed over``). The last byte of the body goes after the hand-over
        hook: an HTTP server does not act on a body shorter than its Content-Length."""
        url = urllib.parse.urlsplit(self.spec.url)
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(
                url.hostname or "",
                url.port,
                timeout=self.spec.timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                url.hostname or "", url.port, timeout=self.spec.timeout
            )
        try:
            conn.connect()
            stage[0] = "sending"
            conn.putrequest("POST", (url.path or "/") + (f"?{url.query}" if url.query else ""))
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[:-1])
            if self.on_handover is not None:
                self.on_handover(message)
            stage[0] = "handed over"
            conn.send(body[-1:])
            response = conn.getresponse()
            response.read()
            return response.status, response.reason
        finally:
            conn.close()

    def send(self, message: Message) -> DeliveryResult:
        body = self.body_of(message)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "segmint",
            "Idempotency-Key": message.idempotency_key,
            "X-Segmint-Message-Id": message.message_id,
        }
        signature = self.sign(body)
        if signature:
            headers["X-Segmint-Signature"] = signature
        last = ""
        refused = False
        unclear = False  # an attempt failed after the receiver had the whole body
        for attempt in range(self.spec.max_retries + 1):
            if attempt:
                self.sleep(self.spec.backoff * 2 ** (attempt - 1))
            stage = ["connect"]
            try:
                code, reason = self._post(body, headers, message, stage)
            except TimeoutError as exc:
                last, refused = f"timed out after {self.spec.timeout:g} s ({exc})", False
                unclear = unclear or stage[0] == "handed over"
                continue
            except ConnectionRefusedError as exc:
                last, refused = f"cannot connect: {exc}", True
                continue
            except (OSError, http.client.HTTPException) as exc:
                if stage[0] == "connect":
                    last, refused = f"cannot connect: {exc}", True
                else:  # reset mid-request or mid-response
                    last, refused = f"connection error: {exc or type(exc).__name__}", False
                    unclear = unclear or stage[0] == "handed over"
                continue
            if code < 300:
                return DeliveryResult("sent", ambiguous=unclear)
            if code >= 500 or code == 429:
                last, refused = f"HTTP {code} {reason}", False
                continue
            return DeliveryResult("rejected", f"HTTP {code} {reason}")
        tries = self.spec.max_retries + 1
        if refused:
            raise ChannelUnavailable(
                f"webhook {self.spec.url} unreachable after {tries} tries: {last}; check "
                f"playbook.channels.{self.name}.url"
            )
        return DeliveryResult("failed", f"{last} (after {tries} tries)")


class FileChannel(Channel):
    """One CSV row per message (an Excel copy is written when the run closes).

    The file is the delivery a user configured (for a mail house, a printer, another
    tool), so it holds the messages as sent, addresses included; each send that writes to
    it registers it in the ``exports`` table (contacts, the campaign's purpose) and the
    audit log, where erasure and access requests find it.

    Rows are appended and flushed one by one, so a killed run loses nothing; a resumed run
    appends to the same file. ``idempotency_key`` is the first column, and the channel
    reads the keys already in the file when it opens: a message written just before a
    crash (and so sent again by the resumed run) is not written twice.
    """

    COLUMNS = (
        "idempotency_key",
        "message_id",
        "campaign",
        "user_id",
        "to",
        "subject",
        "body",
        "segment",
        "offer",
        "recommendations",
        "unsubscribe_url",
        "arm",
        "ui",
    )

    def __init__(self, spec: FileChannelSpec, path: str | Path, name: str = "file") -> None:
        self.spec = spec
        self.name = name
        self.rate_per_second = spec.rate_per_second
        self.path = Path(path)
        self.csv_path = self.path.with_suffix(".csv")
        self._file: Any = None
        self._writer: Any = None
        self._written: set[str] = set()
        self.n_new = 0  # rows this run wrote (the send registers the file as an export)

    def preflight(self) -> list[SegmintError]:
        """The folder exists (or can be made) and takes a new file, and an existing export
        file can be appended to. Nothing is written: the file is opened by the first
        message."""
        folder = self.csv_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
            if self.csv_path.exists() and (
                self.csv_path.is_dir() or not os.access(self.csv_path, os.W_OK)
            ):
                raise PermissionError(f"{self.csv_path} is not a writable file")
        except OSError as exc:
            return [
                ChannelUnavailable(
                    f"channel {self.name!r} cannot write to {folder}: {exc}; check "
                    f"playbook.channels.{self.name}.path and the folder's permissions"
                )
            ]
        return []

    def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        try:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
            if not new:
                with self.csv_path.open(newline="", encoding="utf-8-sig") as f:
                    rows = csv.reader(f)
                    next(rows, None)
                    self._written = {restore(row[0]) for row in rows if row}
            # a byte order mark at the start (Python writes it only at offset 0), without
            # which Excel reads UTF-8 as the legacy code page and garbles names
            self._file = self.csv_path.open("a", newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise ChannelUnavailable(f"cannot write {self.csv_path}: {exc}") from None
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.COLUMNS)

    def send(self, message: Message) -> DeliveryResult:
        if self._writer is None:
            self.open()
        if message.idempotency_key in self._written:  # written by a run that was killed
            return DeliveryResult("sent")
        p = message.payload
        # text starting like a spreadsheet formula is written as text (OWASP)
        self._writer.writerow(
            neutralise_row(
                (
                    message.idempotency_key,
                    message.message_id,
                    message.campaign,
                    message.user_id,
                    message.to or "",
                    message.subject,
                    message.body,
                    p.get("segment", ""),
                    json.dumps(p.get("offer", {}), sort_keys=True),
                    json.dumps(p.get("recommendations", []), sort_keys=True, default=str),
                    message.unsubscribe_url,
                    p.get("arm", ""),
                    p.get("ui") or "",
                )
            )
        )
        self._file.flush()
        self._written.add(message.idempotency_key)
        self.n_new += 1
        return DeliveryResult("sent")

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = self._writer = None
        if self.spec.format == "xlsx":
            import pandas as pd

            rows = pd.read_csv(
                self.csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
            rows = rows.drop_duplicates("idempotency_key", keep="last")
            # the CSV's text, as written to it (string cells, never formulas)
            write_xlsx({"Sheet1": restore_frame(rows)}, self.path.with_suffix(".xlsx"))
