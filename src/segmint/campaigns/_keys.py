"""The key ring that signs unsubscribe tokens: kept outside the store, with key ids, so
read access to the store never lets anyone forge an opt-out and rotation keeps the links
already sent working.

Where the keys are
------------------
* The environment variable ``playbook.secret_env`` (``SEGMINT_SECRET``), when set, holds
  the **active** key (the one that signs). Its id is ``env-`` and 8 hex digits of a hash
  of the value. Use it when several machines sign or verify (the same value everywhere).
* Otherwise the active key is in the project's key file
  ``<project>/.segmint/keys/unsubscribe.json`` (created on first use with mode 0600, in a
  folder of mode 0700), which also keeps older keys for verification::

      {"active": "3f9a1c2e",
       "keys": [{"id": "legacy", "secret": "...", "created_at": "...", "note": "..."},
                {"id": "3f9a1c2e", "secret": "...", "created_at": "..."}]}

Every key of the file, and the environment's key, verifies tokens. A token names the key
that signed it; tokens of earlier versions name none and are tried against every key.

Rotation: :func:`rotate_key` (``segmint campaign rotate-key``) adds a new active key and
keeps the others; with the environment variable set it keeps the variable's key in the
file instead, and you then set the variable to a new value. ``retire_key`` drops a key:
the links it signed stop working.

A store written by earlier versions keeps a key in its ``campaign_secrets`` table: the
first use of the ring moves it into the file (id ``legacy``, verification only) and
deletes it from the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmint.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from segmint.store import Store

__all__ = ["KeyRing", "key_ring", "key_ring_path", "retire_key", "rotate_key"]

log = logging.getLogger(__name__)

DEFAULT_SECRET_ENV = "SEGMINT_SECRET"
LEGACY_ID = "legacy"
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def key_ring_path(root: Path | str) -> Path:
    """The project's key file: ``<root>/.segmint/keys/unsubscribe.json``."""
    return Path(root) / ".segmint" / "keys" / "unsubscribe.json"


def env_key_id(value: str) -> str:
    """The id of the key held by the environment variable (from a hash of its value)."""
    digest = hashlib.sha256(b"segmint unsubscribe key id\x00" + value.encode()).hexdigest()
    return f"env-{digest[:8]}"


@dataclass(frozen=True)
class KeyRing:
    """Signing keys by id: ``active`` signs, every key verifies.

    Parameters
    ----------
    keys : mapping of str to bytes
        Key id -> secret.
    active : str
        The id of the key that signs new tokens (one of ``keys``).
    created : mapping of str to str, optional
        Key id -> ISO creation time (for listings).
    path : Path, optional
        The file the ring was read from, if any.
    env_id : str, optional
        The id of the key read from the environment variable, if any.
    """

    keys: Mapping[str, bytes]
    active: str
    created: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    env_id: str | None = None

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ConfigError(f"key ring: the active key {self.active!r} is not in the ring")

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active]

    def describe(self) -> list[dict[str, Any]]:
        """One row per key (never the secret): id, created_at, active, where."""
        return [
            {
                "id": kid,
                "created_at": self.created.get(kid),
                "active": kid == self.active,
                "where": "environment" if kid == self.env_id else "key file",
            }
            for kid in self.keys
        ]


# -- the file ---------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"active": None, "keys": []}
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc}") from None
    try:
        doc = json.loads(text)
        keys = doc["keys"]
        if not isinstance(keys, list) or not all(
            isinstance(k, dict) and KEY_ID.match(str(k.get("id", ""))) and k.get("secret")
            for k in keys
        ):
            raise ValueError("keys must be a list of {id, secret, created_at}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the key file {path} is damaged ({exc}); restore it from a backup (links signed "
            "with its keys cannot be verified without it)"
        ) from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "the key file %s can be read by other users (mode %o); run: chmod 600 %s",
            path,
            mode,
            path,
        )
    return dict(doc)


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file atomically, mode 0600 from the start."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".unsubscribe-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the key folder (two processes creating the first key at once
    must end with one key)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        fd = os.open(path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the unsubscribe key file {path}: {exc}; make the project folder "
            "writable, or set the key in the environment variable playbook.secret_env"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _entry(kid: str, secret: str, note: str | None = None, created: str | None = None) -> dict:
    entry = {"id": kid, "secret": secret, "created_at": created or datetime.now(UTC).isoformat()}
    if note:
        entry["note"] = note
    return entry


def _legacy_key(store: Store) -> tuple[str, str] | None:
    """(secret, created_at) of the key earlier versions kept in the store, if any."""
    from segmint.store import table_exists

    if not table_exists(store, "campaign_secrets"):
        return None
    frame = store.query(
        "SELECT value, CAST(created_at AS VARCHAR) AS created_at FROM campaign_secrets "
        "WHERE name = 'unsubscribe'"
    )
    if frame.empty:
        return None
    return str(frame["value"].iloc[0]), str(frame["created_at"].iloc[0])


def _ring(doc: dict[str, Any], env_value: str | None, path: Path) -> KeyRing:
    keys = {str(k["id"]): str(k["secret"]).encode() for k in doc["keys"]}
    created = {str(k["id"]): str(k.get("created_at") or "") for k in doc["keys"]}
    active = doc.get("active")
    env_id = None
    if env_value:
        active = env_id = env_key_id(env_value)
        keys[active] = env_value.encode()
        created.setdefault(active, "")
    return KeyRing(keys=keys, active=str(active), created=created, path=path, env_id=env_id)


def key_ring(
    root: Path | str,
    store: Store | None = None,
    *,
    secret_env: str = DEFAULT_SECRET_ENV,
) -> KeyRing:
    """The project's key ring, created on first use.

    Parameters
    ----------
    root : Path
        The project folder (its ``.segmint/keys/unsubscribe.json``).
    store : segmint.store.Store, optional
        The project's store: a key that earlier versions kept there is moved into the key
        file (verification only) and deleted from the store.
    secret_env : str, default 'SEGMINT_SECRET'
        The environment variable holding the active key, when set.

    Raises
    ------
    segmint.errors.ConfigError
        When the key file is damaged or cannot be written.
    """
    path = key_ring_path(root)
    env_value = os.environ.get(secret_env) or None
    legacy = _legacy_key(store) if store is not None else None
    doc = _read(path)
    needs_key = not env_value and not doc.get("active")
    if legacy is not None or needs_key:
        with _locked(path):
            doc = _read(path)  # again, under the lock
            changed = False
            if legacy is not None and not any(k["id"] == LEGACY_ID for k in doc["keys"]):
                doc["keys"].insert(
                    0,
                    _entry(
                        LEGACY_ID,
                        legacy[0],
                        "moved from the store (campaign_secrets); verification only",
                        legacy[1],
                    ),
                )
                changed = True
            if not env_value and not doc.get("active"):
                kid = secrets.token_hex(4)
                doc["keys"].append(_entry(kid, secrets.token_hex(32)))
                doc["active"] = kid
                changed = True
            if changed:
                _write(path, doc)
        if legacy is not None and store is not None:
            # the file holds it now (fsynced): the store forgets it
            store.execute("DELETE FROM campaign_secrets WHERE name = 'unsubscribe'")
            if not store.scalar("SELECT count(*) FROM campaign_secrets"):
                store.execute("DROP TABLE campaign_secrets")
            log.warning(
                "the unsubscribe signing key was moved out of the store into %s (id %r, "
                "verification only); a new key signs from now on",
                path,
                LEGACY_ID,
            )
    return _ring(doc, env_value, path)


def rotate_key(
    root: Path | str, store: Store | None = None, *, secret_env: str = DEFAULT_SECRET_ENV
) -> KeyRing:
    """Add a new active key; the others stay in the ring and still verify.

    With the environment variable set, its key is kept in the key file (verification
    only) and no key is generated: set the variable to a new value next.
    """
    key_ring(root, store, secret_env=secret_env)  # creates it, moves a legacy key
    path = key_ring_path(root)
    env_value = os.environ.get(secret_env) or None
    with _locked(path):
        doc = _read(path)
        known = {k["id"] for k in doc["keys"]}
        if env_value:
            kid = env_key_id(env_value)
            if kid not in known:
                doc["keys"].append(
                    _entry(kid, env_value, f"kept from {secret_env}; verification only")
                )
        else:
            kid = secrets.token_hex(4)
            while kid in known:  # pragma: no cover - 1 in 4 billion
                kid = secrets.token_hex(4)
            doc["keys"].append(_entry(kid, secrets.token_hex(32)))
            doc["active"] = kid
        _write(path, doc)
    log.info("unsubscribe key ring %s: rotated (key %s)", path, kid)
    return _ring(doc, env_value, path)


def retire_key(root: Path | str, key_id: str, *, secret_env: str = DEFAULT_SECRET_ENV) -> KeyRing:
    """Drop a key from the key file: links it signed stop working.

    Raises
    ------
    segmint.errors.NotFoundError
        When the file has no key ``key_id``.
    segmint.errors.ConfigError
        When ``key_id`` is the active key (rotate first).
    """
    import difflib

    path = key_ring_path(root)
    env_value = os.environ.get(secret_env) or None
    with _locked(path):
        doc = _read(path)
        ids = [str(k["id"]) for k in doc["keys"]]
        if key_id not in ids:
            close = difflib.get_close_matches(key_id, ids, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise NotFoundError(
                f"no key {key_id!r} in {path}{hint}; its keys: {', '.join(ids) or 'none'}"
            )
        if key_id == doc.get("active") and not env_value:
            raise ConfigError(
                f"key {key_id!r} is the active key: run `segmint campaign rotate-key` first, "
                "then retire it"
            )
        if env_value and key_id == env_key_id(env_value):
            raise ConfigError(
                f"key {key_id!r} is the one in {secret_env}, the active key: set {secret_env} "
                "to a new value first, then retire it"
            )
        doc["keys"] = [k for k in doc["keys"] if k["id"] != key_id]
        if doc.get("active") == key_id:
            doc["active"] = None
        _write(path, doc)
    log.warning("unsubscribe key %s retired from %s: links it signed stop working", key_id, path)
    return _ring(doc, env_value, path)


# -- the pseudonym key --------------------------------------------------------------------

PSEUDONYM_ENV = "SEGMINT_PSEUDONYM_KEY"


def pseudonym_key_path(root: Path | str) -> Path:
    """The project's pseudonym key file: ``<root>/.segmint/keys/pseudonym.json``."""
    return Path(root) / ".segmint" / "keys" / "pseudonym.json"


def pseudonym_key(root: Path | str, *, env: str = PSEUDONYM_ENV) -> bytes:
    """The secret that keys the pseudonymous ids of member exports (HMAC-SHA256 of the
    user id), created on first use.

    It is separate from the unsubscribe keys and never rotated: the same user gets the
    same pseudonym in every export of the project, so lists exported on different days
    can be joined by other tools, while nobody without the key can compute a pseudonym
    from a known user id. Several machines exporting for one store share it through the
    environment variable ``env`` (``SEGMINT_PSEUDONYM_KEY``), which wins over the file.
    Replacing the key changes every pseudonym.
    """
    value = os.environ.get(env)
    if value:
        return value.encode()
    path = pseudonym_key_path(root)
    doc = _read(path)
    if not doc.get("active"):
        with _locked(path):
            doc = _read(path)
            if not doc.get("active"):
                doc = {"active": "pseudonym", "keys": [_entry("pseudonym", secrets.token_hex(32))]}
                _write(path, doc)
    keys = {str(k["id"]): str(k["secret"]) for k in doc["keys"]}
    return keys[str(doc["active"])].encode()
