"""The workspace's people: names with a hashed password and a role, and their sessions.

- Passwords are hashed with scrypt (``hashlib.scrypt``, N=2**14, r=8, p=1, a 16-byte random
  salt); the stored form is ``scrypt$N$r$p$salt$hash`` (base64), checked in constant time.
- A session is a random 256-bit token in a cookie; the store keeps only its SHA-256, the
  person's name, a CSRF token and an expiry (12 hours). Signing out deletes the row.
- Roles: ``viewer`` reads every page; ``editor`` may also change things (edit the
  configuration, export contact lists, plan and send campaigns, run jobs).

Everything here takes a store; :mod:`segmint.web._auth` wires it to requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from segmint.errors import ConfigError, NotFoundError

__all__ = [
    "ROLES",
    "SESSION_HOURS",
    "Session",
    "add_person",
    "end_session",
    "find_session",
    "hash_password",
    "people",
    "remove_person",
    "set_password",
    "sign_in",
    "start_session",
    "verify_password",
]

ROLES = ("viewer", "editor")
SESSION_HOURS = 12
MIN_PASSWORD = 10

_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"[\w.@-]{1,64}")


def hash_password(password: str) -> str:
    """The stored form of ``password`` (scrypt with a random salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _now() -> datetime:
    return datetime.now(UTC)


def _check(name: str, password: str, role: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"name {name!r}: use 1 to 64 letters, digits, '.', '-', '_' or '@'")
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password needs at least {MIN_PASSWORD} characters")


def add_person(store: Any, name: str, password: str, role: str) -> None:
    """Add (or re-enable, with a new password and role) a person of the workspace."""
    _check(name, password, role)
    with store.transaction():
        store.execute("DELETE FROM workspace_users WHERE name = ?", [name])
        store.execute(
            "INSERT INTO workspace_users (name, password_hash, role, created_at) "
            "VALUES (?, ?, ?, ?)",
            [name, hash_password(password), role, _now()],
        )


def set_password(store: Any, name: str, password: str) -> None:
    """A new password for ``name``; their open sessions end."""
    row = _person(store, name)
    _check(name, password, row["role"])
    with store.transaction():
        store.execute(
            "UPDATE workspace_users SET password_hash = ? WHERE name = ?",
            [hash_password(password), name],
        )
        store.execute("DELETE FROM workspace_sessions WHERE name = ?", [name])


def remove_person(store: Any, name: str) -> None:
    """Disable ``name`` (kept for the audit log's sake) and end their sessions."""
    _person(store, name)
    with store.transaction():
        store.execute("UPDATE workspace_users SET disabled_at = ? WHERE name = ?", [_now(), name])
        store.execute("DELETE FROM workspace_sessions WHERE name = ?", [name])


def people(store: Any) -> list[dict[str, Any]]:
    """Every person: name, role, created_at, disabled_at (never the hash)."""
    frame = store.query(
        "SELECT name, role, created_at, disabled_at FROM workspace_users ORDER BY name"
    )
    return [
        {k: (None if v is None or v != v else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _person(store: Any, name: str) -> dict[str, Any]:
    frame = store.query(
        "SELECT name, role, password_hash FROM workspace_users "
        "WHERE name = ? AND disabled_at IS NULL",
        [name],
    )
    if frame.empty:
        raise NotFoundError(f"no workspace user {name!r} (segmint users list shows them)")
    return dict(frame.iloc[0])


@dataclass(frozen=True)
class Session:
    """A signed-in person: their name, role and the session's CSRF token."""

    name: str
    role: str
    csrf: str
    expires_at: datetime
    token_hash: str

    @property
    def can_edit(self) -> bool:
        return self.role == "editor"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(store: Any, name: str, password: str) -> str | None:
    """A new session token if ``password`` is ``name``'s, else None (same work either
    way, so a wrong name and a wrong password take as long)."""
    frame = store.query(
        "SELECT password_hash FROM workspace_users WHERE name = ? AND disabled_at IS NULL",
        [name],
    )
    stored = str(frame.iloc[0, 0]) if not frame.empty else _DUMMY
    ok = verify_password(password, stored) and not frame.empty
    return start_session(store, name) if ok else None


_DUMMY = hash_password(secrets.token_urlsafe(16))


def start_session(store: Any, name: str) -> str:
    """Open a session for ``name``; returns the token (set as the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    with store.transaction():
        store.execute("DELETE FROM workspace_sessions WHERE expires_at < ?", [now])
        store.execute(
            "INSERT INTO workspace_sessions (session_hash, name, csrf, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                _token_hash(token),
                name,
                secrets.token_urlsafe(24),
                now,
                now + timedelta(hours=SESSION_HOURS),
            ],
        )
    return token


def find_session(store: Any, token: str) -> Session | None:
    """The live session of ``token`` (with the person's current role), or None."""
    frame = store.query(
        "SELECT s.name, u.role, s.csrf, s.expires_at, s.session_hash "
        "FROM workspace_sessions s JOIN workspace_users u ON u.name = s.name "
        "WHERE s.session_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL",
        [_token_hash(token), _now()],
    )
    if frame.empty:
        return None
    row = frame.iloc[0]
    return Session(
        name=str(row["name"]),
        role=str(row["role"]),
        csrf=str(row["csrf"]),
        expires_at=row["expires_at"].to_pydatetime(),
        token_hash=str(row["session_hash"]),
    )


def end_session(store: Any, token_hash: str) -> None:
    """Sign out: the session's row is deleted."""
    with store.transaction():
        store.execute("DELETE FROM workspace_sessions WHERE session_hash = ?", [token_hash])
