"""API keys: who may call what.

A key is a random secret shown once when it is created (``segmint keys create``); the
store keeps only its SHA-256 (``api_keys.key_hash``) and its public prefix
(``api_keys.key_id``, shown in listings and logs). Three scopes:

- ``write``: a tracking source's write key; may only send events (``/v1/track`` ...).
  Segment's libraries send it as the HTTP Basic user name with an empty password.
- ``decide``: may read personalization decisions (``/v1/decide``); safe to ship in a page.
- ``admin``: everything (jobs, keys, loads).

A request names its key either way: ``Authorization: Basic base64(key:)`` or
``Authorization: Bearer key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.security.base import SecurityBase

from segmint.errors import RequestError
from segmint.serve._limits import PUBLIC_PREFIXES
from segmint.serve._problems import PROBLEM_SCHEMA, problem_response

__all__ = [
    "SCOPES",
    "ApiKey",
    "KeyRing",
    "create_key",
    "hash_key",
    "install_auth_docs",
    "list_keys",
    "require",
    "revoke_key",
]

SCOPES = ("write", "decide", "admin")

_PREFIX = {"write": "wk", "decide": "dk", "admin": "ak"}


def hash_key(secret: str) -> str:
    """What the store keeps of a key: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str  # for a write key, the tracking source's name
    scope: str
    rate_per_second: float | None = None


def create_key(store: Any, name: str, scope: str, *, rate_per_second: float | None = None) -> str:
    """Create a key, store its hash and return the secret (the only time it is seen)."""
    if scope not in SCOPES:
        raise RequestError(400, f"unknown scope {scope!r}; one of {', '.join(SCOPES)}")
    secret = f"{_PREFIX[scope]}_{secrets.token_urlsafe(24)}"
    key_id = secret[:11]
    from segmint.store import lit

    rate = "NULL" if rate_per_second is None else repr(float(rate_per_second))
    store.execute(
        "INSERT INTO api_keys (key_id, name, scope, key_hash, created_at, revoked_at, "
        f"rate_per_second) VALUES ({lit(key_id)}, {lit(name)}, {lit(scope)}, "
        f"{lit(hash_key(secret))}, now(), NULL, {rate})"
    )
    return secret


def list_keys(store: Any) -> list[dict[str, Any]]:
    """Every key, newest first: key_id (the public prefix), name, scope, created, revoked,
    rate_per_second. Never the secret (not stored) nor its hash."""
    frame = store.query(
        "SELECT key_id, name, scope, created_at AS created, revoked_at AS revoked, "
        "rate_per_second FROM api_keys ORDER BY created_at DESC, key_id"
    )
    return [
        {k: (None if v is None or (isinstance(v, float) and v != v) or v is pd.NaT else v)
         for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]  # fmt: skip


def revoke_key(store: Any, key_id: str) -> bool:
    """Revoke the key ``key_id`` (its public prefix); False if it was already revoked.
    Raises :class:`~segmint.errors.NotFoundError` for an unknown key."""
    from segmint.errors import NotFoundError

    with store.transaction():
        row = store.query("SELECT revoked_at FROM api_keys WHERE key_id = ?", [key_id])
        if row.empty:
            known = store.query("SELECT key_id FROM api_keys ORDER BY key_id")["key_id"].tolist()
            raise NotFoundError(
                f"no API key {key_id!r}; keys: {', '.join(known) or '(none)'} "
                "(`segmint keys list` shows them)"
            )
        if row["revoked_at"].notna().iloc[0]:
            return False
        store.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = ?", [key_id])
    return True


class KeyRing:
    """The live keys by hash, read from the store and refreshed every ``ttl`` seconds (a
    revoked key stops working within that time)."""

    def __init__(self, load: Callable[[], list[tuple[Any, ...]]], ttl: float = 5.0) -> None:
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._loaded = 0.0

    def lookup(self, secret: str) -> ApiKey | None:
        with self._lock:
            if time.monotonic() - self._loaded > self._ttl:
                self._keys = {
                    str(h): ApiKey(str(k), str(n), str(s), None if r is None else float(r))
                    for k, n, s, h, r in self._load()
                }
                self._loaded = time.monotonic()
            return self._keys.get(hash_key(secret))


def presented_key(request: Request) -> str | None:
    """The key a request carries (Basic user name or Bearer token), or None."""
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    value = value.strip()
    if kind.lower() == "bearer" and value:
        return value
    if kind.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = decoded.partition(":")[0]
        return user or None
    return None


class _Declared(SecurityBase):
    """A security scheme FastAPI writes into the OpenAPI document; it checks nothing
    (:func:`require` does), so a request without it still gets segmint's own 401."""

    def __init__(self, scheme: str, name: str, description: str) -> None:
        self.model = HTTPBaseModel(scheme=scheme, description=description)
        self.scheme_name = name

    async def __call__(self, request: Request) -> None:
        return None


_BASIC = _Declared("basic", "basicKey", "the key as user name, empty password (Segment style)")
_BEARER = _Declared("bearer", "bearerKey", "Authorization: Bearer KEY")
_DECLARED_BASIC = Depends(_BASIC)
_DECLARED_BEARER = Depends(_BEARER)


def require(*scopes: str) -> Callable[..., ApiKey]:
    """A FastAPI dependency: the request's key, which must have one of ``scopes`` (an
    admin key has every scope). 401 without a usable key, 403 with the wrong one, 429 over
    the key's rate."""

    def dependency(
        request: Request, _basic: None = _DECLARED_BASIC, _bearer: None = _DECLARED_BEARER
    ) -> ApiKey:
        secret = presented_key(request)
        if secret is None:
            raise RequestError(
                401,
                "this endpoint needs a key: HTTP Basic with the key as user name, or "
                "'Authorization: Bearer KEY' (create one with 'segmint keys create')",
                headers={"WWW-Authenticate": 'Basic realm="segmint"'},
            )
        key = request.app.state.keys.lookup(secret)
        if key is None:
            raise RequestError(
                401,
                "unknown or revoked key",
                headers={"WWW-Authenticate": 'Basic realm="segmint"'},
            )
        if key.scope != "admin" and key.scope not in scopes:
            raise RequestError(
                403, f"a {key.scope} key cannot call this endpoint (needs {' or '.join(scopes)})"
            )
        limits = getattr(request.app.state, "rates", None)
        if limits is not None:
            limits.check(key.key_id, key.rate_per_second, who=f"key {key.key_id}")
        request.state.api_key = key
        return key

    return dependency


_AUTH_RESPONSES = {
    "401": "No key, or an unknown or revoked one",
    "403": "The key's scope does not allow this endpoint",
    "429": "The key is over its rate limit (see Retry-After)",
}


_problem_response = problem_response


_PAGE_LIMITED = _problem_response("Too many requests from this address (see Retry-After)")


def install_auth_docs(app: Any) -> None:
    """Declare, in ``app``'s OpenAPI document, the 401/403/429 problem details of every
    operation that needs a key (FastAPI marks them with the key's security schemes), and
    the 429 of the public pages (limited per client address)."""
    previous = app.openapi  # FastAPI's, or another step's: this adds to what it makes

    def openapi() -> dict[str, Any]:
        if app.openapi_schema and "Problem" in app.openapi_schema.get("components", {}).get(
            "schemas", {}
        ):
            return dict(app.openapi_schema)
        doc = previous()
        doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for path, item in doc.get("paths", {}).items():
            for op in item.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                keyed = any("basicKey" in req for req in op.get("security", ()))
                if keyed:
                    for status, text in _AUTH_RESPONSES.items():
                        op["responses"].setdefault(status, _problem_response(text))
                elif path.startswith(PUBLIC_PREFIXES):
                    op["responses"].setdefault("429", _PAGE_LIMITED)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
