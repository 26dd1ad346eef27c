from __future__ import annotations

from segmint.store._base import Store


def open_store(url: str) -> Store:
    """Open (and create or migrate) the store at ``url``: a DuckDB path or postgresql://."""
    if url.startswith(("postgresql://", "postgres://")):
        from segmint.store._postgres import PostgresStore

        store: Store = PostgresStore(url)
    else:
        store = Store(url)
    store.ensure_schema()
    return store
