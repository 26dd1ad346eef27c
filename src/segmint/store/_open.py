from __future__ import annotations

from segmint.store._base import Store


def open_store(url: str) -> Store:
    """Open (and create or migrate) the store at ``url``: a DuckDB path or postgresql://."""
    if url.startswith(("postgresql://", "postgres://")):
        from segmint.store._postgres import PostgresStore

        store: Store = PostgresStore(url)
    else:
        store = Store(url)
    try:
        store.ensure_schema()
    except BaseException:  # e.g. a failed migration: do not keep the store open (locked)
        store.close()
        raise
    return store
