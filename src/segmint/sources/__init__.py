"""Sources: readers for CSV, Parquet, JSON Lines, PostgreSQL and DuckDB queries, the column
map, validation and quarantine."""

from segmint.sources._checked import check_source_sql
from segmint.sources._ingest import LoadResult, ingest_source
from segmint.sources._readers import check_files, prefetch_checksums

__all__ = ["LoadResult", "check_files", "check_source_sql", "ingest_source", "prefetch_checksums"]
