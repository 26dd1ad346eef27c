"""Key rotation: a new data key, every sealed value re-sealed with it, in one transaction.

:func:`rotate_key` (``segmint privacy rotate-key``) makes a data key, retires the ones in
use, and re-seals every value listed in :data:`~segmint.store.SEALED_COLUMNS` (whole
values) and :data:`~segmint.store.SEALED_JSON_COLUMNS` (the personal keys of JSON
objects). Values still in clear (stored before encryption was on) are sealed too, and the
users' blind indexes missing are computed from the opened values. Each column's rows and
non-empty values are counted before and after: a difference rolls everything back. A
value that does not open (altered, or sealed by a key the store lost) stops the rotation
before anything changed. Retired keys no value uses any more are then deleted (a copy of
the store taken before the rotation needs them: keep its keys with it).

How: per column, the values to re-seal are read once (the stored key columns and the
value), each distinct value is opened and sealed once in Python (AES-SIV is
deterministic), and the new values go back through a temporary table and one
``UPDATE ... FROM`` — the same SQL on DuckDB and PostgreSQL (COPY there).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.errors import ConfigError, StoreError
from segmint.store import (
    INDEX_COLUMNS,
    SEALED_COLUMNS,
    SEALED_JSON_COLUMNS,
    append_audit,
    is_sealed,
    key_wrapper,
    lit,
    new_data_key,
    open_vault,
)

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store import KeyWrapper, Store, Vault

log = logging.getLogger(__name__)

__all__ = ["ColumnRotation", "RotationReport", "rotate_key"]

SCRATCH = "_segmint_rotate"
"""The temporary table the new values pass through (created and dropped in the rotation's
transaction)."""

KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "users": (("user_id", "VARCHAR"),),
    "events": (("event_id", "VARCHAR"),),
    "quarantine": (("load_id", "VARCHAR"), ("row", "BIGINT"), ("rule", "VARCHAR"),
                   ("field", "VARCHAR")),
}  # fmt: skip
"""The key of each table holding sealed values (how a new value finds its row)."""


@dataclass(frozen=True)
class ColumnRotation:
    """One column's figures: rows and non-empty values before and after (equal, or the
    rotation rolled back), values re-sealed, values that were in clear and got sealed."""

    table: str
    column: str
    rows_before: int
    rows_after: int
    values_before: int
    values_after: int
    resealed: int
    sealed_from_clear: int


@dataclass(frozen=True)
class RotationReport:
    """What :func:`rotate_key` did."""

    new_key: str
    retired: list[str]
    removed: list[str]
    columns: list[ColumnRotation]
    indexes_filled: int
    seconds: float
    audit_seq: int
    kept: list[str] = field(default_factory=list)  # retired keys still used (none, normally)
    master: str | None = None  # the new master key's id, when the keys were re-wrapped

    @property
    def n_resealed(self) -> int:
        return sum(c.resealed for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_resealed"] = self.n_resealed
        return out


def _counts(store: Store, table: str, column: str) -> tuple[int, int]:
    n, v = store.query(f'SELECT count(*) AS n, count("{column}") AS v FROM {table}').iloc[0]
    return int(n), int(v)


def _json_keys(store: Store, table: str, column: str) -> list[str]:
    """The distinct top-level keys of the JSON objects in ``table.column``."""
    if store.capabilities.engine_is_store:  # DuckDB
        sql = (f'SELECT DISTINCT unnest(json_keys(CAST("{column}" AS JSON))) AS k FROM {table} '
               f"WHERE json_type(CAST(\"{column}\" AS JSON)) = 'OBJECT'")  # fmt: skip
    else:  # PostgreSQL: JSONB
        sql = (f'SELECT DISTINCT jsonb_object_keys("{column}") AS k FROM {table} '
               f"WHERE jsonb_typeof(\"{column}\") = 'object'")  # fmt: skip
    return [str(k) for k in store.query(sql)["k"]]


def _index_of(table: str, column: str) -> tuple[str, str] | None:
    """(blind index column, normalisation) of ``table.column`` when it has one."""
    if table != "users":
        return None
    return next(((c, k) for c, (src, k) in INDEX_COLUMNS.items() if src == column), None)


def _candidates(
    store: Store, vault: Vault, table: str, column: str, *, is_json: bool
) -> pd.DataFrame:
    """The stored key columns, the value (as text) and, for a value with a blind index,
    whether that index is missing (``need``), of every row that may need work."""
    keys = ", ".join(f'"{k}"' for k, _ in KEYS[table])
    where = f'"{column}" IS NOT NULL'
    if is_json and table != "quarantine":
        personal = [k for k in _json_keys(store, table, column) if vault.is_personal(k)]
        likes = [f"CAST(\"{column}\" AS VARCHAR) LIKE '%enc1:%'"]
        likes += [f'CAST("{column}" AS VARCHAR) LIKE {lit(f"%{json.dumps(k)}%")}' for k in personal]
        where += f" AND ({' OR '.join(likes)})"
    index = _index_of(table, column)
    need = f", {index[0]} IS NULL AS need" if index else ""
    return store.query(
        f'SELECT {keys}, CAST("{column}" AS VARCHAR) AS v{need} FROM {table} WHERE {where}'
    )


def _reseal_one(vault: Vault, table: str, column: str, text: str) -> tuple[str, str | None]:
    """``text`` (a stored value) opened and sealed with the current key; and the clear
    value (whole values only: what a blind index hashes)."""
    f = f"{table}.{column}"
    if (table, column) == ("quarantine", "raw"):  # a JSON string holding the sealed text
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        clear = vault.open(obj, f) if is_sealed(obj) else text
        return json.dumps(vault.seal(clear, f)), None
    if (table, column) in SEALED_JSON_COLUMNS:
        return str(vault.seal_json_text(vault.open_json_text(text, f), f)), None
    clear = vault.open(text, f)
    return str(vault.seal(clear, f)), clear


def _new_values(
    vault: Vault, table: str, column: str, frame: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """The rows whose value changes, with ``new`` (and ``idx``, the blind index of users'
    e-mail and phone where it is missing); and how many were in clear. Each distinct value
    is opened and sealed once."""
    index = _index_of(table, column)
    done: dict[str, tuple[str, str | None]] = {}
    values: list[str] = frame["v"].tolist()
    new, idx = [], []
    needs = frame["need"].tolist() if index else [False] * len(values)
    for v, need in zip(values, needs, strict=True):
        pair = done.get(v)
        if pair is None:
            pair = done[v] = _reseal_one(vault, table, column, v)
        new.append(pair[0])
        idx.append(vault.index(pair[1], index[1]) if need and index else None)
    out = frame.assign(new=new)
    if index:
        out = out.assign(idx=pd.Series(idx, index=frame.index, dtype=object))
    n_clear = int((~frame["v"].astype(object).str.contains("enc1:", regex=False)).sum())
    out = out[(out["new"] != out["v"]) | (out["idx"].notna() if index else False)]
    return out.drop(columns=["v", "need"], errors="ignore"), n_clear


def _write_back(
    store: Store, table: str, column: str, changed: pd.DataFrame, *, is_json: bool
) -> int:
    """Put ``changed`` (keys, new[, idx]) into ``table`` through the scratch table; returns
    the blind indexes filled."""
    keys = KEYS[table]
    has_idx = "idx" in changed
    cols = [f'"{k}" {t}' for k, t in keys] + ["new VARCHAR"] + (["idx VARCHAR"] if has_idx else [])
    store.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
    store.execute(f"CREATE TEMP TABLE {SCRATCH} ({', '.join(cols)})")
    store.insert(SCRATCH, changed)
    value = "CAST(s.new AS JSON)" if is_json else "s.new"
    sets = [f'"{column}" = {value}']
    n_idx = 0
    if has_idx:
        icol = next(c for c, (src, _) in INDEX_COLUMNS.items() if src == column)
        n_idx = int(changed["idx"].notna().sum())
        sets.append(f"{icol} = coalesce({table}.{icol}, s.idx)")
    join = " AND ".join(f'{table}."{k}" = s."{k}"' for k, _ in keys)
    store.execute(f"UPDATE {table} SET {', '.join(sets)} FROM {SCRATCH} s WHERE {join}")
    store.execute(f"DROP TABLE {SCRATCH}")
    return n_idx


def _rotate_column(
    store: Store, vault: Vault, table: str, column: str, *, is_json: bool
) -> tuple[ColumnRotation, int]:
    rows_before, values_before = _counts(store, table, column)
    frame = _candidates(store, vault, table, column, is_json=is_json)
    changed, n_clear = _new_values(vault, table, column, frame)
    n_idx = _write_back(store, table, column, changed, is_json=is_json) if len(changed) else 0
    rows_after, values_after = _counts(store, table, column)
    if (rows_before, values_before) != (rows_after, values_after):
        raise StoreError(
            f"rotating the key would change {table}.{column} ({rows_before} rows, "
            f"{values_before} values before; {rows_after}, {values_after} after): rolled "
            "back, nothing changed"
        )
    col = ColumnRotation(table, column, rows_before, rows_after, values_before, values_after,
                         len(changed), n_clear)  # fmt: skip
    return col, n_idx


def _uses(store: Store, key_id: str) -> int:
    """How many stored values are sealed with ``key_id``."""
    n = 0
    for table, column in (*SEALED_COLUMNS, *SEALED_JSON_COLUMNS):
        n += int(store.scalar(
            f"SELECT count(*) FROM {table} WHERE CAST(\"{column}\" AS VARCHAR) "
            f"LIKE {lit('%enc1:' + key_id + ':%')}"
        ))  # fmt: skip
    return n


def _retire(store: Store, new_key: str) -> list[str]:
    old = store.query(
        "SELECT key_id FROM privacy_keys WHERE kind = 'data' AND key_id <> ? "
        "AND retired_at IS NULL ORDER BY created_at",
        [new_key],
    )["key_id"].tolist()
    store.execute(
        "UPDATE privacy_keys SET retired_at = ? WHERE kind = 'data' AND key_id <> ? "
        "AND retired_at IS NULL",
        [datetime.now(UTC), new_key],
    )
    return [str(k) for k in old]


def rotate_key(
    store: Store, config: Config, *, actor: str = "segmint", new_master: KeyWrapper | None = None
) -> RotationReport:
    """Seal every personal value with a new data key; delete the keys no value uses.

    One transaction: a value that does not open, or a count that differs afterwards,
    rolls back everything (the store is as before, under its old key).

    Parameters
    ----------
    store : Store
        A writable store (DuckDB or PostgreSQL).
    config : Config
        The project's configuration (its ``privacy`` section: the master key).
    actor : str
        Who rotates (the audit log's ``actor``).
    new_master : KeyWrapper, optional
        Also re-wrap every key (data and index) under this wrapper (a new master key,
        :class:`~segmint.store.MasterKeyWrapper`, or a KMS), in the same transaction.
        Afterwards the store opens only with the new master key: set it in
        ``privacy.master_key_env`` (or the key file) before the next command.

    Raises
    ------
    segmint.errors.ConfigError
        ``privacy.encrypt`` is false (there is nothing to seal with).
    segmint.errors.StoreError
        A value does not open, or a count changed; nothing was changed.
    """
    if not config.privacy.encrypt:
        raise ConfigError(
            "privacy.encrypt is false in segmint.yaml: values are stored in clear, there is "
            "no key to rotate. Set it to true first (rotate-key then seals what is in clear)"
        )
    started = time.monotonic()
    before = open_vault(store, config, refresh=True)
    wrapper = key_wrapper(config)
    try:
        with store.transaction():
            new_key, _ = new_data_key(store, wrapper)
            retired = _retire(store, new_key)
            vault = open_vault(store, config, refresh=True)
            columns, n_idx = _reseal_all(store, vault)
            removed, kept = _drop_unused(store, retired)
            master = _rewrap(store, wrapper, new_master) if new_master is not None else None
            seq = append_audit(store, actor, "privacy.rotate_key", new_key,
                               retired=retired, removed=removed, master=master,
                               n_resealed=sum(c.resealed for c in columns))  # fmt: skip
    except BaseException:
        store._segmint_vault = before  # type: ignore[attr-defined]
        raise
    report = RotationReport(new_key, retired, removed, columns, n_idx,
                            round(time.monotonic() - started, 3), seq, kept, master)  # fmt: skip
    log.info("rotate-key: new data key %s, %d values re-sealed, %d old keys removed in %.1f s",
             new_key, report.n_resealed, len(removed), report.seconds)  # fmt: skip
    return report


def _rewrap(store: Store, old: KeyWrapper, new: KeyWrapper) -> str:
    """Wrap every key anew under ``new`` (unwrapped with ``old``); returns its key id."""
    rows = store.query("SELECT key_id, wrapped FROM privacy_keys ORDER BY key_id")
    for key_id, wrapped in rows.itertuples(index=False):
        key = old.unwrap(base64.b64decode(wrapped))
        store.execute(
            "UPDATE privacy_keys SET wrapped = ?, wrapper = ? WHERE key_id = ?",
            [base64.b64encode(new.wrap(key)).decode(), new.key_id, key_id],
        )
    return new.key_id


def _reseal_all(store: Store, vault: Vault) -> tuple[list[ColumnRotation], int]:
    columns: list[ColumnRotation] = []
    n_idx = 0
    for table, column in SEALED_COLUMNS:
        col, n = _rotate_column(
            store, vault, table, column, is_json=(table, column) == ("quarantine", "raw")
        )
        columns.append(col)
        n_idx += n
    for table, column in SEALED_JSON_COLUMNS:
        col, _ = _rotate_column(store, vault, table, column, is_json=True)
        columns.append(col)
    return columns, n_idx


def _drop_unused(store: Store, retired: list[str]) -> tuple[list[str], list[str]]:
    removed, kept = [], []
    for key_id in retired:
        if _uses(store, key_id):
            kept.append(key_id)
        else:
            store.execute("DELETE FROM privacy_keys WHERE key_id = ?", [key_id])
            removed.append(key_id)
    return removed, kept
