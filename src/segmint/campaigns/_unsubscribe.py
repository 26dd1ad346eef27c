"""Signed unsubscribe tokens and their processing.

A token names (user, channel, purpose) and the id of the key that signed it, and carries an
HMAC-SHA256 tag over both: ``base64url(payload) . base64url(tag) . key id``. The keys are
the project's key ring (:mod:`segmint.campaigns._keys`): the environment variable
``playbook.secret_env`` (``SEGMINT_SECRET``) when set, else a key file in the project
folder, never the store. Tokens of earlier versions (no key id) are tried against every
key of the ring. Processing a token appends a ``consents`` row (granted = false, source =
'unsubscribe'): the consent history keeps everything, and every later audience leaves the
user out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from segmint.campaigns._keys import KEY_ID, KeyRing
from segmint.errors import InvalidTokenError, NotFoundError
from segmint.store import Store, latest_consent_sql, lit, ts_lit

__all__ = ["UnsubscribeResult", "make_token", "unsubscribe", "verify_token"]

log = logging.getLogger(__name__)

_SEP = "\x1f"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, key_id: str | None, payload: bytes) -> bytes:
    signed = payload if key_id is None else key_id.encode() + b"\x1f" + payload
    return hmac.digest(key, signed, "sha256")[:16]


def make_token(
    keys: KeyRing, user_id: str, channel: str = "email", purpose: str = "marketing"
) -> str:
    """A URL-safe token for (user, channel, purpose), signed with the ring's active key and
    naming it."""
    payload = f"{user_id}{_SEP}{channel}{_SEP}{purpose}".encode()
    tag = _tag(keys.active_key, keys.active, payload)
    return f"{_b64(payload)}.{_b64(tag)}.{keys.active}"


def token_of(text: str) -> str:
    """The token in ``text``: the text itself, or the token of an unsubscribe link pasted
    whole (``https://shop.example/u/TOKEN``, or the older
    ``https://shop.example/unsubscribe?token=TOKEN``)."""
    text = text.strip()
    if text.startswith(("http://", "https://")) and "/u/" in text:
        from urllib.parse import unquote, urlsplit

        found_in_path = urlsplit(text).path.rsplit("/u/", 1)[-1].split("/")[0]
        if found_in_path:
            return unquote(found_in_path)
    if "token=" in text and ("?" in text or "&" in text):
        from urllib.parse import parse_qs, urlsplit

        query = urlsplit(text).query or text.split("?", 1)[-1]
        found = parse_qs(query).get("token")
        if found:
            return found[0].strip()
    return text


def verify_token(keys: KeyRing, token: str) -> tuple[str, str, str]:
    """(user_id, channel, purpose) of a valid token (or of the unsubscribe link holding it).

    A token naming a key is checked with that key; a token of an earlier version (no key
    id) with every key of the ring.

    Raises
    ------
    InvalidTokenError
        When the token is malformed, names a key the ring does not have, or was not signed
        with the ring's keys.
    """
    parts = token_of(token).split(".")
    try:
        if len(parts) not in (2, 3):
            raise ValueError("wrong number of parts")
        payload, given = _unb64(parts[0]), _unb64(parts[1])
        key_id = parts[2] if len(parts) == 3 else None
        if key_id is not None and not KEY_ID.match(key_id):
            raise ValueError("bad key id")
    except (ValueError, TypeError):
        raise InvalidTokenError(
            "unsubscribe token is malformed (expected <payload>.<signature>.<key id>)"
        ) from None
    if key_id is not None and key_id not in keys.keys:
        raise InvalidTokenError(
            f"unsubscribe token names key {key_id[:40]!r}, which is not in the project's key "
            "ring: it was retired, or the token was not issued by this project"
        )
    candidates = [keys.keys[key_id]] if key_id is not None else list(keys.keys.values())
    # every candidate is computed and compared: the time does not tell which one matched
    matched = False
    for key in candidates:
        matched |= hmac.compare_digest(_tag(key, key_id, payload), given)
    if not matched:
        raise InvalidTokenError(
            "unsubscribe token signature does not match: it was not issued by this project "
            "(or the signing key changed)"
        )
    fields = payload.decode("utf-8", errors="replace").split(_SEP)
    if len(fields) != 3:
        raise InvalidTokenError("unsubscribe token payload is malformed")
    return fields[0], fields[1], fields[2]


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
    keys: KeyRing,
    now: datetime | None = None,
) -> UnsubscribeResult:
    """Verify an unsubscribe token and record the opt-out in the consent history.

    Parameters
    ----------
    store : segmint.store.Store
        The project's store.
    token : str
        The token from the link or the List-Unsubscribe header.
    keys : KeyRing
        The project's key ring (:func:`segmint.campaigns.key_ring`).
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
    user_id, channel, purpose = verify_token(keys, token)
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
