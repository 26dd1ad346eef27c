"""Project: a folder with ``segmint.yaml`` and its store; the one entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from segmint.config import Config, load_config
from segmint.errors import NotFoundError
from segmint.sources._ingest import LoadResult, ingest_source
from segmint.store._base import Store
from segmint.store._open import open_store
from segmint.store._schema import LOAD_ORDER


class Project:
    """A segmint project: its configuration and (lazily) its store.

    Parameters
    ----------
    config : Config
        The loaded configuration. Use :func:`open_project` to load it from a folder.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Store | None = None

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def store(self) -> Store:
        """The store, opened (and its schema created or migrated) on first use."""
        if self._store is None:
            self._store = open_store(self.config.store_url)
        return self._store

    def ingest(
        self,
        sources: Iterable[str] | None = None,
        *,
        force: bool = False,
        now: datetime | None = None,
        callback: Callable[[str, str], None] | None = None,
    ) -> list[LoadResult]:
        """Load the named sources (default: all), in an order that satisfies references.

        Each source is its own transaction: a failure leaves the store as it was before
        that source, and raises.
        """
        names = list(sources) if sources is not None else list(self.config.sources)
        for n in names:
            if n not in self.config.sources:
                known = ", ".join(self.config.sources) or "(none)"
                raise NotFoundError(f"no source named {n!r} in segmint.yaml; known: {known}")
        names.sort(key=lambda n: LOAD_ORDER.index(self.config.sources[n].table))
        results = []
        for n in names:
            cb = (lambda stage, _n=n: callback(_n, stage)) if callback else None
            results.append(
                ingest_source(self.store, self.config, n, force=force, now=now, callback=cb)
            )
        return results

    def status(self) -> dict[str, Any]:
        """The data-quality report of the store (see :func:`segmint.clean.quality_report`)."""
        from segmint.clean._report import quality_report

        return quality_report(self.store)

    def quarantine(self, source: str | None = None) -> Any:
        """Rejected rows with their reasons, as a DataFrame."""
        where = "WHERE source = ?" if source else ""
        return self.store.query(
            f'SELECT * FROM quarantine {where} ORDER BY load_id, "row"',
            [source] if source else None,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, store={self.config.store!r})"


def open_project(path: str | Path = ".") -> Project:
    """Open the project in ``path`` (a folder holding ``segmint.yaml``, or the file)."""
    return Project(load_config(path))
