"""Local sinks for demos, tests and benchmarks: an SMTP server (aiosmtpd) and a webhook
endpoint (http.server) on 127.0.0.1 that count what they receive. Never for production."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections import Counter
from email import message_from_bytes
from typing import Any

__all__ = ["SmtpSink", "WebhookSink"]

# aiosmtpd logs the SMTP conversation (every recipient's address) at INFO and DEBUG on
# "mail.log": warnings only, so no verbosity puts an address in the output
logging.getLogger("mail.log").setLevel(logging.WARNING)


class SmtpSink:
    """A real SMTP server on loopback counting messages per recipient and Message-ID.

    ``with SmtpSink() as sink:`` starts it on a free port (``sink.port``). ``pause_after``
    makes the server hold its answer to the n-th message (it has the message, the client
    does not know yet) until ``release()`` - how tests put a sender in the ambiguous window.
    ``drop_after`` makes it take the n-th message and close the connection without an
    answer; ``drop_at_rcpt`` closes the connection at the n-th RCPT (before any data).
    ``login=(user, password)`` requires SMTP AUTH (without TLS: loopback only).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_messages: bool = True,
        pause_after: int | None = None,
        drop_after: int | None = None,
        drop_at_rcpt: int | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # pragma: no cover - a test/demo dependency
            raise ImportError(
                "the local SMTP sink needs aiosmtpd: pip install 'segmint[test]' or aiosmtpd"
            ) from exc
        self.host = host
        self.keep_messages = keep_messages
        self.by_recipient: Counter[str] = Counter()
        self.by_message_id: Counter[str] = Counter()
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.by_campaign: Counter[tuple[str, str]] = Counter()  # (X-Segmint-Campaign, rcpt)
        self.messages: list[Any] = []
        self.n_received = 0
        self.pause_after = pause_after
        self.drop_after = drop_after
        self.drop_at_rcpt = drop_at_rcpt
        self.n_rcpt = 0
        self.paused = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        if port == 0:
            import socket

            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.port = port
        extra: dict[str, Any] = {}
        if login is not None:
            from aiosmtpd.smtp import AuthResult

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> Any:
                ok = (
                    getattr(data, "login", b"") == login[0].encode()
                    and getattr(data, "password", b"") == login[1].encode()
                )
                return AuthResult(success=ok, handled=False)

            # plain-text login without TLS: only ever on loopback, for tests
            extra = {
                "authenticator": authenticate,
                "auth_require_tls": False,
                "auth_exclude_mechanism": ["LOGIN"],
            }
        self._controller = Controller(self, hostname=host, port=port, ready_timeout=10, **extra)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        msg = message_from_bytes(raw)
        mid = str(msg.get("Message-ID", ""))
        with self._lock:
            self.n_received += 1
            n = self.n_received
            for rcpt in envelope.rcpt_tos:
                self.by_recipient[rcpt.lower()] += 1
                self.pairs[(rcpt.lower(), mid)] += 1
                self.by_campaign[(str(msg.get("X-Segmint-Campaign", "")), rcpt.lower())] += 1
            self.by_message_id[mid] += 1
            if self.keep_messages:
                self.messages.append(msg)
        if self.pause_after is not None and n == self.pause_after:
            self.paused.set()
            self._release.wait(30)
        if self.drop_after is not None and n == self.drop_after:
            server.transport.close()  # the message is taken; its answer never leaves
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self.n_rcpt += 1
            n = self.n_rcpt
        if self.drop_at_rcpt is not None and n == self.drop_at_rcpt:
            server.transport.close()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def release(self) -> None:
        """Let a paused server answer."""
        self._release.set()

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        """Wait until ``n`` messages arrived."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.n_received >= n:
                return True
            time.sleep(0.01)
        return False

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebhookSink:
    """An HTTP server on loopback that answers POSTs with ``status`` (200 by default),
    optionally after ``delay`` seconds, and keeps every request (headers and JSON)."""

    def __init__(self, status: int = 200, *, delay: float = 0.0, host: str = "127.0.0.1") -> None:
        self.status = status
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.incomplete = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the client went away mid-body: not a request
                    sink.incomplete += 1
                    return
                sink.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                if sink.delay:
                    time.sleep(sink.delay)
                payload = json.dumps({"ok": sink.status < 400}).encode()
                try:
                    self.send_response(sink.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
