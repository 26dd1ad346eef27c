"""Time helpers every layer shares (no heavy imports)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from segmint.errors import ConfigError

__all__ = ["to_utc"]


def to_utc(as_of: datetime | date) -> datetime:
    """An as-of value as an aware UTC datetime (a date means its midnight UTC)."""
    if isinstance(as_of, datetime):
        if as_of.tzinfo is None:
            return as_of.replace(tzinfo=UTC)
        return as_of.astimezone(UTC)
    if isinstance(as_of, date):
        return datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    raise ConfigError(f"as_of must be a datetime or a date, got {type(as_of).__name__} ({as_of!r})")
