"""Signed unsubscribe tokens and their processing.

A token names (user, channel, purpose) and carries an HMAC-SHA256 tag keyed by the project
secret: the environment variable ``playbook.secret_env`` (``SEGMINT_SECRET``) when set,
else a random key generated once and kept in the store's ``campaign_secrets`` table.
Processing a token appends a ``consents`` row (granted = false, source = 'unsubscribe'):
the consent history keeps everything, and every later audience leaves the user out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from segmint.campaigns._tables import ensure_campaign_tables, lit, ts_lit
from segmint.errors import NotFoundError, SegmintError
from segmint.store import Store, latest_consent_sql

__all__ = ["UnsubscribeResult", "make_token", "signing_key", "unsubscribe", "verify_token"]

log = logging.getLogger(__name__)

_SEP = "\x1f"
_KEY_NAME = "unsubscribe"
DEFAULT_SECRET_ENV = "SEGMINT_SECRET"


class InvalidTokenError(SegmintError):
    """The unsubscribe token is malformed or its signature does not match."""

    exit_code = 2


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(store: Store, secret_env: str = DEFAULT_SECRET_ENV) -> bytes:
    """The key that signs unsubscribe tokens.

    The value of the environment variable ``secret_env`` when set; otherwise a 256-bit key
    generated on first use and kept in the store (so links stay valid across runs).
    """
    value = os.environ.get(secret_env)
    if value:
        return value.encode()
    ensure_campaign_tables(store)
    key = store.scalar(f"SELECT value FROM campaign_secrets WHERE name = {lit(_KEY_NAME)}")
    if key is None:
        fresh = secrets.token_hex(32)
        store.execute(
            "INSERT INTO campaign_secrets (name, value, created_at) "
            f"VALUES ({lit(_KEY_NAME)}, {lit(fresh)}, {ts_lit(datetime.now(UTC))}) "
            "ON CONFLICT DO NOTHING"
        )
        key = store.scalar(f"SELECT value FROM campaign_secrets WHERE name = {lit(_KEY_NAME)}")
    return str(key).encode()


def make_token(key: bytes, user_id: str, channel: str = "email", purpose: str = "marketing") -> str:
    """A URL-safe token for (user, channel, purpose), signed with ``key``."""
    payload = f"{user_id}{_SEP}{channel}{_SEP}{purpose}".encode()
    tag = hmac.digest(key, payload, "sha256")[:16]
    return (
        base64.urlsafe_b64encode(payload).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(tag).rstrip(b"=")
    ).decode("ascii")


def verify_token(key: bytes, token: str) -> tuple[str, str, str]:
    """(user_id, channel, purpose) of a valid token.

    Raises
    ------
    InvalidTokenError
        When the token is malformed or was not signed with ``key``.
    """
    try:
        body, tag = token.strip().split(".", 1)
        payload = _unb64(body)
        given = _unb64(tag)
    except (ValueError, TypeError):
        raise InvalidTokenError(
            "unsubscribe token is malformed (expected <payload>.<signature>)"
        ) from None
    expected = hmac.digest(key, payload, "sha256")[:16]
    if not hmac.compare_digest(expected, given):
        raise InvalidTokenError(
            "unsubscribe token signature does not match: it was not issued by this project "
            "(or the signing key changed)"
        )
    parts = payload.decode("utf-8", errors="replace").split(_SEP)
    if len(parts) != 3:
        raise InvalidTokenError("unsubscribe token payload is malformed")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class UnsubscribeResult:
    """What one processed token did."""

    user_id: str
    channel: str
    purpose: str
    recorded_at: datetime
    already_unsubscribed: bool


def unsubscribe(
    store: Store,
    token: str,
    *,
    secret_env: str = DEFAULT_SECRET_ENV,
    now: datetime | None = None,
) -> UnsubscribeResult:
    """Verify an unsubscribe token and record the opt-out in the consent history.

    Parameters
    ----------
    store : segmint.store.Store
        The project's store.
    token : str
        The token from the link or the List-Unsubscribe header.
    secret_env : str, default 'SEGMINT_SECRET'
        The environment variable holding the signing key (``playbook.secret_env``).
    now : datetime, optional
        When the opt-out happened (now by default).

    Returns
    -------
    UnsubscribeResult
        The user, channel and purpose; ``already_unsubscribed`` when the latest consent
        row was already an opt-out (no new row is written then).

    Raises
    ------
    segmint.campaigns.InvalidTokenError
        For a forged or malformed token.
    segmint.errors.NotFoundError
        When the token's user is not in the store (e.g. erased since).
    """
    user_id, channel, purpose = verify_token(signing_key(store, secret_env), token)
    if not store.scalar(f"SELECT count(*) FROM users WHERE user_id = {lit(user_id)}"):
        raise NotFoundError("the unsubscribe token names a user who is not in the store")
    when = now or datetime.now(UTC)
    latest = store.query(
        f"SELECT granted, source FROM ({latest_consent_sql(lit(user_id))}) l "
        f"WHERE channel = {lit(channel)} AND purpose = {lit(purpose)}"
    )
    already = (
        not latest.empty
        and not bool(latest["granted"].iloc[0])
        and latest["source"].iloc[0] == "unsubscribe"
    )
    if not already:
        store.execute(
            "INSERT INTO consents (user_id, channel, purpose, ts, granted, source, recorded_at) "
            f"VALUES ({lit(user_id)}, {lit(channel)}, {lit(purpose)}, {ts_lit(when)}, FALSE, "
            f"'unsubscribe', {ts_lit(when)})"
        )
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    log.info("unsubscribe: user #%s from %s/%s", digest, channel, purpose)
    return UnsubscribeResult(user_id, channel, purpose, when, already)
