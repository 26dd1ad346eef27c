"""Sources: readers for CSV, Parquet, JSON Lines, PostgreSQL and DuckDB queries, the column
map, validation and quarantine; tracking messages through the same validation."""

from segmint.sources._checked import check_source_sql
from segmint.sources._ingest import LoadResult, ingest_source
from segmint.sources._readers import check_files, prefetch_checksums
from segmint.sources._seal import open_quarantine
from segmint.sources._tracking import TrackingLoad, load_messages

__all__ = [
    "LoadResult",
    "TrackingLoad",
    "check_files",
    "check_source_sql",
    "ingest_source",
    "load_messages",
    "open_quarantine",
    "prefetch_checksums",
]
