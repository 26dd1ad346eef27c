"""Personal data sealed at load time (issue 21): the accepted rows as they are stored.

Validation reads clear values in the load's staging area (temporary: dropped when the
load ends); what reaches the store is sealed (:mod:`segmint.store._vault`):

* ``users``: ``email`` and ``phone`` sealed (each value once, a batch at a time:
  :meth:`Vault.seal_sql`), ``birthday`` as its ISO text ``YYYY-MM-DD`` sealed (the distinct
  birthdays only, joined back: a few tens of thousands for a million people), the blind
  indexes ``email_index`` and ``phone_index`` computed in SQL, and the personal keys of
  ``traits`` sealed one by one (field ``users.traits.<key>``, distinct values only);
* ``events``: the personal keys of ``properties`` (``events.properties.<key>``).

With ``privacy.encrypt: false`` only the indexes and the birthday's text are made. Sealing is
deterministic (AES-SIV), so a reload of the same file compares equal to what it stored.

The quarantine's ``raw`` (the source row as JSON, stored as a JSON string holding the sealed
text) and ``raw_value`` are sealed by :func:`quarantine_sql`; :func:`open_raw_sql` reads them
back (a row stored before encryption passes through).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from segmint.store import PREFIX, Table, is_sealed, open_vault
from segmint.store import ident as _q

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.sources._area import Area
    from segmint.store import Store, Vault

__all__ = ["engine_vault", "open_quarantine", "open_raw_sql", "seal_accepted", "seal_raw_sql"]

_SEALED_JSON = {"users": "traits", "events": "properties"}


def engine_vault(store: Store, config: Config, area: Area) -> Vault:
    """The store's vault, its SQL functions registered on the load's engine."""
    cached: Vault | None = area.__dict__.get("_vault")
    if cached is not None:  # registered for this load already
        return cached
    vault = open_vault(store, config)
    vault.register(area.stage.connection)
    area.__dict__["_vault"] = vault
    return vault


def seal_accepted(store: Store, config: Config, area: Area, table: Table) -> None:
    """Replace the view ``accepted`` by the rows as they are stored (table ``sealed``):
    personal values sealed, the users' blind indexes and birthday text computed."""
    if table.name not in _SEALED_JSON:
        return
    vault = engine_vault(store, config, area)
    area.execute(f"CREATE OR REPLACE TEMP TABLE {area.sealed_in} AS SELECT * FROM {area.accepted}")
    src = area.sealed_in
    replace: list[str] = []
    joins: list[str] = []
    json_col = _SEALED_JSON[table.name]
    patched = _sealed_json(area, vault, src, f"{table.name}.{json_col}", json_col, joins)
    if patched is not None:
        replace.append(f"{patched} AS {_q(json_col)}")
    if table.name == "users":
        email, phone = _sealed_columns(area, vault, src, ["email", "phone"], joins)
        replace += [
            f"{email} AS email",
            f"{phone} AS phone",
            f"{_birthday(area, vault, src, joins)} AS birthday",
            f"{vault.index_sql('a.email', 'email')} AS email_index",
            f"{vault.index_sql('a.phone', 'phone')} AS phone_index",
        ]
    if not replace:
        area.drop(area.sealed_in)
        return
    joins.sort(key=lambda j: not j.startswith("POSITIONAL"))  # the positional join first
    area.execute(
        f"CREATE OR REPLACE TEMP TABLE {area.sealed} AS "
        f"SELECT a.* REPLACE ({', '.join(replace)}) FROM {src} a {' '.join(joins)}"
    )
    area.drop(area.sealed_in)
    area.execute(f"CREATE OR REPLACE TEMP VIEW {area.accepted} AS SELECT * FROM {area.sealed}")


_BATCH = 16384
"""Values sealed per call of :meth:`Vault.seal_arrow` (larger batches cost more per value:
their arrays leave the CPU caches)."""


def _sealed_columns(
    area: Area, vault: Vault, src: str, columns: list[str], joins: list[str]
) -> list[str]:
    """SQL of ``columns`` (mostly distinct values: e-mails, phones) sealed: read out of the
    engine as Arrow, sealed a batch at a time, joined back by position (``src`` is a table:
    its scans keep the rows' order)."""
    if not vault.encrypt:
        return [f"a.{_q(c)}" for c in columns]
    batch = area.stage.arrow(f"SELECT {', '.join(_q(c) for c in columns)} FROM {src}")
    sealed = {}
    for c in columns:
        values = batch.column(c)
        sealed[f"_sealed_{c}"] = pa.chunked_array(
            [
                vault.seal_arrow(values.slice(i, _BATCH), f"users.{c}")
                for i in range(0, len(values), _BATCH)
            ]
            or [pa.array([], pa.large_binary())],
            pa.large_binary(),
        )
    frame = area.frame("sealed_columns", pa.table(sealed))
    joins.append(f"POSITIONAL JOIN {frame} s")
    return [
        f"CASE WHEN starts_with(a.{_q(c)}, '{PREFIX}') THEN a.{_q(c)} "
        f"ELSE {vault.sealed_text_sql(f's._sealed_{c}')} END"
        for c in columns
    ]


def _birthday(area: Area, vault: Vault, src: str, joins: list[str]) -> str:
    """The birthday as ISO text, sealed: the distinct birthdays sealed once each, joined."""
    text = "strftime(a.birthday, '%Y-%m-%d')"
    if not vault.encrypt:
        return text
    days = area.stage.table(
        "birthdays",
        f"SELECT clear, {vault.seal_sql('clear', 'users.birthday')} AS sealed FROM ("
        f"SELECT DISTINCT strftime(birthday, '%Y-%m-%d') AS clear FROM {src} "
        "WHERE birthday IS NOT NULL)",
    )
    joins.append(f"LEFT JOIN {days} bd ON bd.clear = {text}")
    return "bd.sealed"


def _json_value(col: str, key: str) -> str:
    """SQL: the value of ``key`` in JSON column ``col`` as the text sealed (a string as it
    is, another value as ``\\x00json:`` + its JSON text, as :meth:`Vault.seal_json`)."""
    path = "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"
    return (
        f"CASE json_type({col}, {path}) WHEN 'VARCHAR' THEN json_extract_string({col}, {path}) "
        f"WHEN 'NULL' THEN NULL "
        f"ELSE chr(0) || 'json:' || CAST(json_extract({col}, {path}) AS VARCHAR) END"
    )


def _sealed_json(
    area: Area, vault: Vault, src: str, field: str, col: str, joins: list[str]
) -> str | None:
    """SQL: JSON column ``col`` with its personal keys sealed (the distinct values of each
    sealed once, joined back), or None when no key of the batch is personal."""
    if not vault.encrypt:
        return None
    keys = [
        k
        for (k,) in area.rows(
            f"SELECT DISTINCT unnest(json_keys({_q(col)})) FROM {src} "
            f"WHERE json_type({_q(col)}) = 'OBJECT'"
        )
        if vault.is_personal(str(k))
    ]
    if not keys:
        return None
    out = f"a.{_q(col)}"
    for i, key in enumerate(sorted(keys)):
        value = _json_value(_q(col), key)
        sealed = area.stage.table(
            "sealed_values",
            f"SELECT clear, {vault.seal_sql('clear', f'{field}.{key}')} AS sealed "
            f"FROM (SELECT DISTINCT {value} AS clear FROM {src}) WHERE clear IS NOT NULL",
        )
        joins.append(f"LEFT JOIN {sealed} j{i} ON j{i}.clear = {_json_value('a.' + _q(col), key)}")
        key_lit = "'" + key.replace("'", "''") + "'"
        out = (
            f"CASE WHEN j{i}.sealed IS NULL THEN {out} "
            f"ELSE json_merge_patch({out}, json_object({key_lit}, j{i}.sealed)) END"
        )
    return f"CASE WHEN json_type(a.{_q(col)}) = 'OBJECT' THEN {out} ELSE a.{_q(col)} END"


def seal_raw_sql(vault: Vault, raw: str) -> str:
    """SQL: the quarantine's ``raw`` (JSON) as stored: a JSON string holding the row's JSON
    text sealed (``raw`` itself when encryption is off)."""
    if not vault.encrypt:
        return raw
    return f"to_json({vault.seal_sql(f'CAST({raw} AS VARCHAR)', 'quarantine.raw')})"


def open_raw_sql(vault: Vault, raw: str) -> str:
    """SQL: the quarantine's stored ``raw`` (JSON) opened: the row's JSON as text."""
    opened = vault.open_sql(f"json_extract_string({raw}, '$')", "quarantine.raw")
    return (
        f"CASE WHEN json_type({raw}) = 'VARCHAR' AND starts_with(json_extract_string({raw}, '$'), "
        f"'enc1:') THEN {opened} ELSE CAST({raw} AS VARCHAR) END"
    )


def _open_raw_value(vault: Vault, value: Any) -> Any:
    """A stored quarantine ``raw`` opened: JSON text (DuckDB) or the parsed JSON (a
    PostgreSQL driver's), as it came, with the sealed text replaced by the row."""
    if isinstance(value, str):
        text = value
        if text.startswith('"' + PREFIX):
            text = json.loads(text)
        if is_sealed(text):
            return vault.open(text, "quarantine.raw")
        return value
    if is_sealed(value):
        return json.loads(vault.open(value, "quarantine.raw") or "null")
    return value


def open_quarantine(vault: Vault, frame: Any) -> Any:
    """A DataFrame of quarantine rows with ``raw`` and ``raw_value`` opened (a reader's
    view: call it only for rows shown to someone)."""
    frame = frame.copy()
    if "raw" in frame.columns:
        frame["raw"] = [_open_raw_value(vault, v) for v in frame["raw"]]
    if "raw_value" in frame.columns:
        frame["raw_value"] = [
            vault.open(v, "quarantine.raw_value") if isinstance(v, str) else v
            for v in frame["raw_value"]
        ]
    return frame
