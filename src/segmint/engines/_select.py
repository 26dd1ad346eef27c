"""Which engine a project's configuration asks for."""

from __future__ import annotations

from pathlib import Path

from segmint.config import Config
from segmint.engines._spark import SparkEngine


def engine_for(config: Config, root: Path | None = None) -> SparkEngine | None:
    """The engine a project's configuration asks for: None for ``engine: duckdb`` (the
    store computes), a :class:`SparkEngine` for ``engine: spark``."""
    if config.engine != "spark":
        return None
    return SparkEngine(config.spark, root=root or config.root)
