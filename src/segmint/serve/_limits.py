"""Rate limits: a token bucket per API key, and one per client address on public pages.

A key may send ``rate_per_second`` requests a second on average and ``burst`` at once
(``serve.rate_per_second`` / ``serve.burst`` in segmint.yaml; a key's own
``api_keys.rate_per_second``, set with ``segmint keys create --rate``, overrides the rate).
Over the limit the answer is a 429 problem with ``Retry-After`` (whole seconds).

The unsubscribe and preference pages need no key (their signed token is the credential),
so they are limited per client address instead (:data:`PUBLIC_RATE` a second, bursts of
:data:`PUBLIC_BURST`): enough for a person and a mail client's one-click request, far too
few to guess tokens. Behind a reverse proxy the client address is the proxy's unless
``segmint serve --proxy-headers`` trusts its ``X-Forwarded-For``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from segmint.errors import RequestError

__all__ = ["PUBLIC_BURST", "PUBLIC_RATE", "PublicPageLimit", "RateLimits", "TokenBucket"]

PUBLIC_RATE = 20.0
"""Requests a second one client address may make to the public pages."""

PUBLIC_BURST = 40
"""Requests one client address may make to the public pages at once."""

PUBLIC_PREFIXES = ("/u/", "/unsubscribe")

_MAX_TRACKED = 100_000  # buckets kept before the idle ones are dropped


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; :meth:`take` spends one."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, 1.0))
        self.tokens = self.burst
        self.updated = time.monotonic()

    def take(self, now: float) -> float:
        """Spend a token: 0.0 when allowed, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimits:
    """Token buckets by name (a key id, a client address), thread-safe."""

    def __init__(self, rate_per_second: float, burst: float) -> None:
        self.rate_per_second = float(rate_per_second)
        self.burst = float(burst)
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def wait_for(self, name: str, rate: float | None = None) -> float:
        """Spend one request of ``name`` (at ``rate`` a second, default the limits' own):
        0.0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(name)
            wanted = self.rate_per_second if rate is None else float(rate)
            if bucket is None or bucket.rate != wanted:
                if len(self._buckets) >= _MAX_TRACKED:
                    self._forget_idle(now)
                burst = (
                    self.burst
                    if rate is None
                    else max(self.burst * wanted / self.rate_per_second, 1.0)
                )
                bucket = self._buckets[name] = TokenBucket(wanted, min(burst, self.burst))
            return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if (now - b.updated) * b.rate >= b.burst]
        for k in full:  # a bucket that has refilled holds no state worth keeping
            del self._buckets[k]

    def check(self, name: str, rate: float | None = None, *, who: str) -> None:
        """Raise a 429 :class:`~segmint.errors.RequestError` when ``name`` is over its limit."""
        wait = self.wait_for(name, rate)
        if wait > 0:
            limit = self.rate_per_second if rate is None else rate
            raise RequestError(
                429,
                f"too many requests from {who} (limit {limit:g} a second); retry after "
                f"{math.ceil(wait)} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )


class PublicPageLimit:
    """ASGI middleware: the per-address limit of the public pages (unsubscribe, preferences)."""

    def __init__(
        self, app: Any, *, rate_per_second: float = PUBLIC_RATE, burst: int = PUBLIC_BURST
    ) -> None:
        self.app = app
        self.limits = RateLimits(rate_per_second, burst)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PUBLIC_PREFIXES):
            client = scope.get("client") or ("unknown", 0)
            wait = self.limits.wait_for(str(client[0]))
            if wait > 0:
                from segmint.serve._problems import problem

                response = problem(
                    429,
                    f"too many requests from your address (limit "
                    f"{self.limits.rate_per_second:g} a second); retry after {math.ceil(wait)} s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
