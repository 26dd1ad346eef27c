"""Personal data at rest: sealed values, the keys that seal them, blind indexes.

A *sealed* value is text ``enc1:<key id>:<base64>`` (standard base64 with padding, which
DuckDB's ``to_base64`` writes set-based; :meth:`Vault.open` also reads the URL-safe
alphabet without padding, the first form): the value encrypted with AES-SIV
(RFC 5297, ``cryptography``'s ``AESSIV``), an authenticated cipher whose associated data is
the field's name, so a value copied into another field does not open. AES-SIV is
deterministic: the same value under the same key seals to the same text. That is what lets a
reload tell an unchanged row from a changed one and what a blind index reveals anyway
(equal e-mails look equal); nothing else about a value shows.

Keys. A random 512-bit *data key* seals values; a random 256-bit *index key* computes the
blind indexes (HMAC-SHA256 of a normalised value: e-mail trimmed and lower-cased, phone
digits). Both are stored in the table ``privacy_keys`` only *wrapped* (RFC 3394 AES key
wrap) by the master key, which is never in the store: it comes from the environment
variable ``privacy.master_key_env``, else the file ``privacy.master_key_file``, else
``.segmint/master.key`` (created on first use, mode 0600: fine for a laptop, not for
production). A cloud KMS plugs in as ``privacy.key_wrapper: module:attribute``, an object
with ``key_id``, ``wrap(bytes) -> bytes`` and ``unwrap(bytes) -> bytes`` (see
:class:`KeyWrapper`). ``segmint privacy rotate-key`` adds a data key and re-seals every
value with it; the index key never rotates, as erasure records hold indexes that could not
be recomputed (their values are gone).

Where sealed values live is listed once, in :data:`SEALED_COLUMNS` and
:data:`SEALED_JSON_COLUMNS`; rotation, erasure and the tests that grep a store read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from segmint._expressions import is_personal_key
from segmint.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store._base import Store

log = logging.getLogger(__name__)

__all__ = [
    "PREFIX",
    "SEALED_COLUMNS",
    "SEALED_JSON_COLUMNS",
    "SEALED_PATTERN",
    "KeyWrapper",
    "MasterKeyWrapper",
    "Vault",
    "is_sealed",
    "open_vault",
]

PREFIX = "enc1:"
"""Every sealed value starts with this (a value that does not is stored in clear)."""

SEALED_PATTERN = re.compile(r"enc1:[A-Za-z0-9]+:[A-Za-z0-9_\-+/]+=*")
"""A sealed text where it may stand inside other text (a JSON document, a file's bytes
decoded): the key id, then standard or URL-safe base64."""

SEALED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("users", "email"),
    ("users", "phone"),
    ("users", "birthday"),
    ("quarantine", "raw"),  # the row as the source held it: the whole JSON sealed
    ("quarantine", "raw_value"),
)
"""(table, column) whose whole value is sealed (text ``enc1:...``; ``raw`` as a JSON
string). The field name given to :meth:`Vault.seal` is ``table.column``."""

SEALED_JSON_COLUMNS: tuple[tuple[str, str], ...] = (
    ("users", "traits"),
    ("events", "properties"),
)
"""(table, column) of JSON objects whose personal keys are sealed one by one (field name
``table.column.key``); the other keys stay readable (``traits.zip_code`` in a feature)."""

INDEX_COLUMNS: dict[str, tuple[str, str]] = {
    "email_index": ("email", "email"),
    "phone_index": ("phone", "phone"),
}
"""Blind index column of ``users`` -> (the column it indexes, the normalisation)."""

_DATA_KEY_BYTES = 64  # AES-SIV with AES-256
_INDEX_KEY_BYTES = 32
_INDEX_HEX = 32  # 128 bits of the HMAC kept


class KeyWrapper(Protocol):
    """What wraps the data keys: the master key (default) or a cloud KMS.

    ``key_id`` names the wrapping key (stored beside each wrapped key, so a wrong master key
    is reported as such); ``wrap`` and ``unwrap`` turn a data key into bytes safe to store
    and back, raising on a key that was not wrapped by this wrapper.
    """

    @property
    def key_id(self) -> str: ...

    def wrap(self, key: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes) -> bytes: ...


@dataclass(frozen=True)
class MasterKeyWrapper:
    """RFC 3394 AES key wrap under a 256-bit master key."""

    master: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return "mk-" + hashlib.sha256(b"segmint-master:" + self.master).hexdigest()[:12]

    def wrap(self, key: bytes) -> bytes:
        return aes_key_wrap(self.master, key)

    def unwrap(self, wrapped: bytes) -> bytes:
        return aes_key_unwrap(self.master, wrapped)


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed text (``enc1:...``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


_SPACES = " \t\n\r\f\v"
"""What a blind index trims (the same set in Python and in SQL's ``trim``)."""


def normalise(value: str, kind: str) -> str:
    """The form a blind index hashes: e-mail trimmed and lower-cased; phone the digits
    (with a leading ``+`` kept); anything else trimmed."""
    text = value.strip(_SPACES)
    if kind == "email":
        return text.lower()
    if kind == "phone":
        digits = re.sub(r"[^0-9]", "", text)
        return ("+" + digits) if text.startswith("+") else digits
    return text


class Vault:
    """Seals and opens personal values, computes blind indexes.

    Get one with :func:`open_vault` (cached per store). ``encrypt=False`` (``privacy.encrypt:
    false``): :meth:`seal` returns values as they are and :meth:`open` passes clear values
    through; blind indexes are computed either way.
    """

    def __init__(
        self,
        data_keys: dict[str, bytes],
        current: str,
        index_key: bytes,
        *,
        encrypt: bool = True,
        sealed_traits: Iterable[str] = (),
    ) -> None:
        self._ciphers = {kid: AESSIV(key) for kid, key in data_keys.items()}
        self._keys = dict(data_keys)
        self._uid = uuid.uuid4().hex[:12]  # names this vault's SQL functions
        self._n_registered = 0
        self._fn_bin = self._fn_open = ""  # their names, once registered
        self.current = current
        self._index_key = index_key
        self.encrypt = encrypt
        self._traits = frozenset(k.lower() for k in sealed_traits)

    # -- sealing -----------------------------------------------------------------------

    def seal(self, value: str | None, field: str) -> str | None:
        """``value`` sealed for ``field`` (``users.email``); None stays None, a sealed value
        stays as it is."""
        if value is None or not self.encrypt or is_sealed(value):
            return value
        ct = self._ciphers[self.current].encrypt(str(value).encode(), [field.encode()])
        return f"{PREFIX}{self.current}:{base64.b64encode(ct).decode()}"

    def seal_many(self, values: Sequence[str | None], field: str) -> list[str | None]:
        """:meth:`seal` of each value; equal values are sealed once."""
        if not self.encrypt:
            return list(values)
        done: dict[str, str | None] = {}
        out: list[str | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            s = done.get(v)
            if s is None:
                s = done[v] = self.seal(v, field)
            out.append(s)
        return out

    def open(self, value: str | None, field: str) -> str | None:
        """The clear value of ``value`` (sealed for ``field``); a clear value is returned as
        it is (stored before encryption was on). Raises
        :class:`~segmint.errors.StoreError` for a value that does not open (tampered, or
        sealed by a key this store does not hold)."""
        if value is None or not is_sealed(value):
            return value
        try:
            _, kid, body = value.split(":", 2)
            cipher = self._ciphers[kid]
            pad = "=" * (-len(body) % 4)
            clear = cipher.decrypt(base64.urlsafe_b64decode(body + pad), [field.encode()])
        except KeyError:
            raise StoreError(
                f"a sealed {field} value uses data key {value.split(':')[1]!r}, which this "
                "store does not hold"
            ) from None
        except Exception:
            raise StoreError(f"a sealed {field} value does not open: it was altered") from None
        return clear.decode()

    def seal_arrow(self, values: Any, field: str) -> Any:
        """The sealed bytes (AES-SIV: IV then ciphertext) of each text of an Arrow array, as
        an Arrow binary array, a batch at a time (:mod:`segmint.store._siv`: the same bytes
        as :meth:`seal`, about 3x faster); the text :meth:`seal` makes is
        :meth:`sealed_text_sql` of them."""
        from segmint.store._siv import siv_encrypt_many

        key = self._keys[self.current]
        sealed = siv_encrypt_many(key, field.encode(), values)
        _check_batch(self._ciphers[self.current], field, values, sealed)
        return sealed

    def sealed_text_sql(self, blob: str) -> str:
        """DuckDB SQL: the sealed text ``enc1:<key>:<base64>`` of sealed bytes ``blob``
        (NULL stays NULL)."""
        return f"('{PREFIX}{self.current}:' || to_base64({blob}))"

    def seal_sql(self, expr: str, field: str) -> str:
        """DuckDB SQL sealing the text ``expr`` for ``field`` set-based (through the UDF
        ``segmint_seal_bin`` of :meth:`register`; a sealed value stays as it is); ``expr``
        itself when encryption is off."""
        if not self.encrypt:
            return expr
        sealed = self.sealed_text_sql(f"{self._fn_bin}({_sql_text(field)}, {expr})")
        return f"(CASE WHEN starts_with({expr}, '{PREFIX}') THEN {expr} ELSE {sealed} END)"

    def open_sql(self, expr: str, field: str) -> str:
        """DuckDB SQL opening the text ``expr`` (through the UDF ``segmint_open``; clear
        text passes through)."""
        return (
            f"(CASE WHEN starts_with({expr}, '{PREFIX}') "
            f"THEN {self._fn_open}({_sql_text(field)}, {expr}) ELSE {expr} END)"
        )

    def open_many(self, values: Iterable[str | None], field: str) -> list[str | None]:
        return [self.open(v, field) for v in values]

    def is_personal(self, key: str) -> bool:
        """Whether a trait/property key is sealed: declared (``privacy.personal_traits`` and
        the defaults) or named like personal data (``home_address``, ``phoneNumber``)."""
        return key.lower() in self._traits or is_personal_key(key)

    def seal_json(self, obj: Any, field: str) -> Any:
        """A JSON object with its personal keys sealed (each as ``field.key``; a non-text
        value is sealed as its JSON text). Anything but an object is returned as it is."""
        if not isinstance(obj, dict) or not self.encrypt:
            return obj
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if v is not None and self.is_personal(str(k)) and not is_sealed(v):
                text = v if isinstance(v, str) else "\x00json:" + json.dumps(v, sort_keys=True)
                out[k] = self.seal(text, f"{field}.{k}")
            else:
                out[k] = v
        return out

    def open_json(self, obj: Any, field: str) -> Any:
        """The inverse of :meth:`seal_json`."""
        if not isinstance(obj, dict):
            return obj
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if is_sealed(v):
                clear = self.open(v, f"{field}.{k}")
                if clear is not None and clear.startswith("\x00json:"):
                    out[k] = json.loads(clear[6:])
                else:
                    out[k] = clear
            else:
                out[k] = v
        return out

    def seal_json_text(self, text: str | None, field: str) -> str | None:
        """:meth:`seal_json` on JSON text (text that is not a JSON object is returned as it
        is)."""
        if text is None or not self.encrypt:
            return text
        try:
            obj = json.loads(text)
        except ValueError:
            return text
        if not isinstance(obj, dict) or not any(self.is_personal(str(k)) for k in obj):
            return text
        return json.dumps(self.seal_json(obj, field), ensure_ascii=False)

    def open_json_text(self, text: str | None, field: str) -> str | None:
        if text is None or PREFIX not in text:
            return text
        return json.dumps(self.open_json(json.loads(text), field), ensure_ascii=False)

    # -- blind indexes -------------------------------------------------------------------

    def index(self, value: str | None, kind: str) -> str | None:
        """The blind index of ``value``: HMAC-SHA256 under the index key of
        ``kind:normalised value``, 32 hex digits. ``kind``: ``email``, ``phone`` or
        ``user`` (a user id: erasure records)."""
        if value is None:
            return None
        text = normalise(str(value), kind)
        if not text:
            return None
        mac = hmac.new(self._index_key, f"{kind}:{text}".encode(), hashlib.sha256)
        return mac.hexdigest()[:_INDEX_HEX]

    def index_sql(self, expr: str, kind: str) -> str:
        """DuckDB SQL computing :meth:`index` of the text ``expr`` set-based (HMAC built from
        ``sha256``: the same 32 hex digits as :meth:`index`, tested)."""
        block = self._index_key.ljust(64, b"\x00")
        ipad = bytes(b ^ 0x36 for b in block).hex()
        opad = bytes(b ^ 0x5C for b in block).hex()
        spaces = "' ' || chr(9) || chr(10) || chr(13) || chr(12) || chr(11)"
        if kind == "email":
            norm = f"lower(trim({expr}, {spaces}))"
        elif kind == "phone":
            norm = (
                f"(CASE WHEN starts_with(trim({expr}, {spaces}), '+') THEN '+' ELSE '' END "
                f"|| regexp_replace({expr}, '[^0-9]', '', 'g'))"
            )
        else:
            norm = f"trim(CAST({expr} AS VARCHAR), {spaces})"
        inner = f"unhex(sha256(unhex('{ipad}') || encode('{kind}:' || {norm})))"
        mac = f"left(sha256(unhex('{opad}') || {inner}), {_INDEX_HEX})"
        return f"(CASE WHEN nullif({norm}, '') IS NULL THEN NULL ELSE {mac} END)"

    # -- DuckDB ----------------------------------------------------------------------------

    def register(self, con: Any) -> None:
        """Register ``segmint_seal(field, value)``, ``segmint_open(field, value)``,
        ``segmint_seal_json(field, json_text)`` on a DuckDB connection (vectorised: one
        Python call per chunk), and the functions :meth:`seal_sql` and :meth:`open_sql`
        call (named for this vault). Idempotent; a name registered already is kept."""
        import duckdb
        import pyarrow as pa

        def seal(fields, values):  # type: ignore[no-untyped-def]  # DuckDB reads annotations
            f = fields[0].as_py() if len(fields) else ""
            return pa.array(self.seal_many(values.to_pylist(), f), pa.string())

        def open_(fields, values):  # type: ignore[no-untyped-def]
            f = fields[0].as_py() if len(fields) else ""
            return pa.array(self.open_many(values.to_pylist(), f), pa.string())

        def seal_bin(fields, values):  # type: ignore[no-untyped-def]
            f = fields[0].as_py() if len(fields) else ""
            return self.seal_arrow(values, f)

        def seal_json(fields, values):  # type: ignore[no-untyped-def]
            f = fields[0].as_py() if len(fields) else ""
            return pa.array([self.seal_json_text(v, f) for v in values.to_pylist()], pa.string())

        names = {n for (n,) in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_name LIKE 'segmint%'"
        ).fetchall()}  # fmt: skip
        if self._fn_bin not in names or self._fn_open not in names:
            # fresh names: a function registered inside a transaction that rolled back is
            # gone from the catalog, yet its name stays taken on the connection
            self._n_registered += 1
            suffix = f"{self._uid}_{self._n_registered}"
            self._fn_bin, self._fn_open = f"segmint_seal_bin_{suffix}", f"segmint_open_{suffix}"
        public = (
            ("segmint_seal", seal, "VARCHAR"),
            ("segmint_open", open_, "VARCHAR"),
            ("segmint_seal_json", seal_json, "VARCHAR"),
        )
        for name, fn, out in ((self._fn_bin, seal_bin, "BLOB"), (self._fn_open, open_, "VARCHAR"),
                              *public):  # fmt: skip
            if name in names:
                continue  # never removed: a statement failing in a transaction aborts it
            try:
                con.create_function(
                    name,
                    fn,
                    [duckdb.sqltype("VARCHAR"), duckdb.sqltype("VARCHAR")],
                    duckdb.sqltype(out),
                    type="arrow",
                    side_effects=False,
                )
            except duckdb.NotImplementedException:  # a public name taken (see above)
                log.debug("%s is registered already on this connection", name)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_batch(cipher: AESSIV, field: str, values: Any, sealed: Any) -> None:
    """Open one sealed value of every length in a batch with ``cryptography``'s own AES-SIV
    and compare: the batch code works a length at a time, so each of its paths is checked
    against the reference on every batch (a few dozen calls per 16,384 values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
    import numpy as np

    _, firsts = np.unique(np.nan_to_num(lengths.astype(float), nan=-1.0), return_index=True)
    for i in firsts.tolist():
        clear, blob = values[i].as_py(), sealed[i].as_py()
        if clear is None:
            continue
        try:
            ok = cipher.decrypt(blob, [field.encode()]) == str(clear).encode()
        except Exception:
            ok = False
        if not ok:
            raise StoreError(
                f"sealing {field}: a batch's value did not open with the reference AES-SIV; "
                "nothing was written (this is a bug in segmint: please report it)"
            )


# -- keys --------------------------------------------------------------------------------

_lock = threading.Lock()


def parse_master_key(text: str, where: str) -> bytes:
    """A 256-bit master key from 64 hex digits or base64 (standard or URL-safe)."""
    t = text.strip()
    try:
        if re.fullmatch(r"[0-9a-fA-F]{64}", t):
            return bytes.fromhex(t)
        key = base64.b64decode(
            t + "=" * (-len(t) % 4), altchars=b"-_" if "-" in t or "_" in t else None
        )
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"the master key in {where} is not 32 bytes as 64 hex digits or base64; make one "
            'with: python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key


def _wrapper(config: Config) -> KeyWrapper:
    settings = config.privacy
    if settings.key_wrapper:
        module, _, attr = settings.key_wrapper.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr or "wrapper")
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"privacy.key_wrapper {settings.key_wrapper!r} cannot be loaded: {exc}"
            ) from None
        return obj() if callable(obj) and not hasattr(obj, "wrap") else obj  # type: ignore[no-any-return]
    env = os.environ.get(settings.master_key_env)
    if env:
        return MasterKeyWrapper(parse_master_key(env, f"${settings.master_key_env}"))
    path = Path(settings.master_key_file or ".segmint/master.key")
    if not path.is_absolute():
        path = Path(config.root) / path
    if path.exists():
        return MasterKeyWrapper(parse_master_key(path.read_text(), str(path)))
    if settings.master_key_file:
        raise ConfigError(
            f"privacy.master_key_file {settings.master_key_file!r} does not exist, and "
            f"${settings.master_key_env} is not set"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    log.warning(
        "privacy: created a master key at %s (keep it safe: without it the personal data "
        "cannot be read; in production set %s instead)",
        path,
        settings.master_key_env,
    )
    return MasterKeyWrapper(key)


def key_wrapper(config: Config) -> KeyWrapper:
    """What wraps the data keys under ``config.privacy``: the KMS hook, else the master key
    (environment, key file, or ``.segmint/master.key``, created on first use)."""
    return _wrapper(config)


def _unwrap(wrapper: KeyWrapper, row: tuple[Any, ...], env: str) -> bytes:
    key_id, _kind, wrapped, by = row[0], row[1], row[2], row[3]
    try:
        return wrapper.unwrap(base64.b64decode(wrapped))
    except (InvalidUnwrap, ValueError):
        raise ConfigError(
            f"the store's key {key_id} was wrapped by {by}, and the master key given "
            f"({wrapper.key_id}) does not unwrap it: set ${env} (or the key file) to the "
            "master key this store was created with"
        ) from None


def new_data_key(store: Store, wrapper: KeyWrapper, kind: str = "data") -> tuple[str, bytes]:
    """Make, wrap and store a new key of ``kind``; returns (key id, key)."""
    key = os.urandom(_DATA_KEY_BYTES if kind == "data" else _INDEX_KEY_BYTES)
    key_id = uuid.uuid4().hex[:8]
    store.execute(
        "INSERT INTO privacy_keys (key_id, kind, wrapped, wrapper, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [key_id, kind, base64.b64encode(wrapper.wrap(key)).decode(), wrapper.key_id,
         datetime.now(UTC)],
    )  # fmt: skip
    return key_id, key


def open_vault(store: Store, config: Config, *, refresh: bool = False) -> Vault:
    """The vault of ``store`` under ``config.privacy`` (cached on the store; ``refresh``
    re-reads the keys, after a rotation). Creates the keys on a store that has none (a
    read-only store without keys raises)."""
    cached = getattr(store, "_segmint_vault", None)
    if cached is not None and not refresh:
        return cached  # type: ignore[no-any-return]
    with _lock:
        wrapper = _wrapper(config)
        rows = list(
            store.query(
                "SELECT key_id, kind, wrapped, wrapper, created_at, retired_at FROM privacy_keys "
                "ORDER BY created_at"
            ).itertuples(index=False, name=None)
        )
        if not any(r[1] == "index" for r in rows) or not any(r[1] == "data" for r in rows):
            if store.read_only:
                raise StoreError(
                    f"the store {store.location} has no privacy keys yet: run a command "
                    "that writes (such as `segmint ingest`) first"
                )
            with store.transaction():
                if not any(r[1] == "index" for r in rows):
                    new_data_key(store, wrapper, "index")
                if not any(r[1] == "data" for r in rows):
                    new_data_key(store, wrapper, "data")
            rows = list(
                store.query(
                    "SELECT key_id, kind, wrapped, wrapper, created_at, retired_at "
                    "FROM privacy_keys ORDER BY created_at"
                ).itertuples(index=False, name=None)
            )
        env = config.privacy.master_key_env
        data = {r[0]: _unwrap(wrapper, r, env) for r in rows if r[1] == "data"}
        live = [r[0] for r in rows if r[1] == "data" and (r[5] is None or r[5] != r[5])]
        index_row = next(r for r in rows if r[1] == "index")
        vault = Vault(
            data,
            live[-1] if live else list(data)[-1],
            _unwrap(wrapper, index_row, env),
            encrypt=config.privacy.encrypt,
            sealed_traits=config.privacy.sealed_traits,
        )
        store._segmint_vault = vault  # type: ignore[attr-defined]
        return vault
