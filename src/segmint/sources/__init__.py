"""Sources: readers for CSV, Parquet, JSON Lines, PostgreSQL and DuckDB queries, the column
map, validation and quarantine."""

from segmint.sources._ingest import LoadResult, ingest_source

__all__ = ["LoadResult", "ingest_source"]
