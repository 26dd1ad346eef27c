from __future__ import annotations

import time

from segmint.errors import StoreBusyError, StoreError
from segmint.store._base import Store
from segmint.store._schema import SCHEMA_VERSION


def open_store(url: str, *, read_only: bool = False, wait: float = 0.0) -> Store:
    """Open (and create or migrate) the store at ``url``: a DuckDB path or postgresql://.

    ``read_only`` (DuckDB): open the file read-only, which several processes may do at once
    but never beside a writer; the schema is checked, not created or migrated. ``wait``:
    seconds to keep trying while another process holds a DuckDB file's lock
    (:class:`~segmint.errors.StoreBusyError` after that).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from segmint.store._postgres import PostgresStore

        store: Store = PostgresStore(url)
    else:
        store = _open_duckdb(url, read_only=read_only, wait=wait)
    try:
        if store.read_only:
            _check_version(store)
        else:
            store.ensure_schema()
    except BaseException:  # e.g. a failed migration: do not keep the store open (locked)
        store.close()
        raise
    return store


def _open_duckdb(path: str, *, read_only: bool, wait: float) -> Store:
    deadline = time.monotonic() + wait
    pause = 0.02
    while True:
        try:
            return Store(path, read_only=read_only)
        except StoreBusyError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)


def _check_version(store: Store) -> None:
    """A store opened read-only must already be at this segmint's schema version."""
    try:
        version = store.schema_version()
    except Exception:  # no schema_version table: never initialised
        raise StoreError(
            f"the store {store.location} has no segmint schema yet: run a command that "
            "writes (such as `segmint ingest`) first"
        ) from None
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise StoreError(
            f"the store {store.location} is at schema version {version}, this segmint "
            f"needs {SCHEMA_VERSION}: "
            + (
                "upgrade segmint"
                if newer
                else "a command that writes (or `segmint serve` when it starts) migrates it"
            )
        )
