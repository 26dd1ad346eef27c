"""Storage limitation: purge the rows older than their table's period (``privacy.retention``).

``segmint.yaml``::

    privacy:
      retention:
        events: 13mo
        quarantine: 90d
        exposures: 26w

Each table's age is measured from one time column (:data:`segmint.config.RETENTION_TABLES`):
``events.ts``, the quarantine's load's ``loads.started_at``, ``deliveries.created_at``,
``exposures.served_at``, ``tracked_messages.received_at``, ``job_runs.started_at``,
``workspace_sessions.created_at``. A row strictly older than the cutoff (now minus the
period; months and years are calendar months) is deleted: one ``DELETE`` per table, every
table in one transaction, each table's count logged to ``retention_purges`` and the whole
purge to the audit log (``privacy.retention``). The audit log, orders and consents are
refused in the configuration (:data:`segmint.config.RETENTION_REFUSED` says why).

With an ``events`` period, the tracking spool files older than the cutoff that are fully
loaded (their offset in ``tracking_spool`` is their size) and whose writer is gone (their
``flock`` is free) are deleted too: the raw messages do not outlive the events.
"""

from __future__ import annotations

import calendar
import fcntl
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from segmint.config import Config, parse_period
from segmint.store import Store, append_audit, lit, table_exists, ts_lit

__all__ = ["RetentionPurge", "RetentionReport", "apply_retention", "retention_cutoff"]

log = logging.getLogger(__name__)

_WHERE = {
    "events": "ts < {cutoff}",
    "quarantine": "load_id IN (SELECT load_id FROM loads WHERE started_at < {cutoff})",
    "deliveries": "created_at < {cutoff}",
    "exposures": "served_at < {cutoff}",
    "tracked_messages": "received_at < {cutoff}",
    "job_runs": "started_at < {cutoff} AND status <> 'running'",
    "workspace_sessions": "created_at < {cutoff}",
}
"""Per table: which rows are past the cutoff (a running job's row is never purged)."""


@dataclass(frozen=True)
class RetentionPurge:
    """One table's purge: its period, the cutoff it gave and the rows deleted (or, in a dry
    run, that would be)."""

    table: str
    period: str
    cutoff: datetime
    n_rows: int


@dataclass
class RetentionReport:
    """What :func:`apply_retention` purged: per table, and the spool files deleted."""

    purge_id: str
    ts: datetime
    actor: str
    dry_run: bool
    tables: list[RetentionPurge] = field(default_factory=list)
    n_spool_files: int = 0

    @property
    def n_rows(self) -> int:
        """Rows purged over every table."""
        return sum(t.n_rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO text)."""
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        out["tables"] = [{**asdict(t), "cutoff": t.cutoff.isoformat()} for t in self.tables]
        out["n_rows"] = self.n_rows
        return out


def retention_cutoff(period: str, now: datetime) -> datetime:
    """``now`` minus ``period`` (``90d``, ``26w``, ``13mo``, ``2y``); a month back from the
    31st lands on the month's last day."""
    number, unit = parse_period(period)
    if unit == "d":
        return now - timedelta(days=number)
    if unit == "w":
        return now - timedelta(weeks=number)
    months = number * (12 if unit == "y" else 1)
    total = now.year * 12 + now.month - 1 - months
    year, month = divmod(total, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def apply_retention(
    store: Store,
    config: Config,
    *,
    now: datetime | None = None,
    actor: str,
    dry_run: bool = False,
) -> RetentionReport:
    """Delete every row older than its table's ``privacy.retention`` period.

    Parameters
    ----------
    store : Store
        The project's store.
    config : Config
        The project's configuration (``privacy.retention``, ``tracking.spool``, ``root``).
    now : datetime, optional
        "Now" (tests); the current time by default.
    actor : str
        Who purges (recorded in ``retention_purges`` and the audit log).
    dry_run : bool, default False
        Count the rows that would go; delete and record nothing.

    Returns
    -------
    RetentionReport
        Per table: the period, the cutoff and the rows purged.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = RetentionReport(f"purge-{uuid.uuid4().hex[:12]}", now, actor, dry_run)
    periods = config.privacy.retention
    with store.transaction():
        for table, period in periods.items():
            cutoff = retention_cutoff(period, now)
            n = _purge(store, table, cutoff, dry_run=dry_run)
            report.tables.append(RetentionPurge(table, period, cutoff, n))
        if not dry_run and report.tables:
            _record(store, report)
    if "events" in periods:
        cutoff = retention_cutoff(periods["events"], now)
        report.n_spool_files = _purge_spool(store, config, cutoff, dry_run=dry_run)
    log.info(
        "retention %s%s: %d rows over %d tables, %d spool files",
        report.purge_id,
        " (dry run)" if dry_run else "",
        report.n_rows,
        len(report.tables),
        report.n_spool_files,
    )
    return report


def _purge(store: Store, table: str, cutoff: datetime, *, dry_run: bool) -> int:
    """Rows of ``table`` past ``cutoff``: counted, then deleted unless ``dry_run``."""
    if not table_exists(store, table):
        return 0
    where = _WHERE[table].format(cutoff=ts_lit(cutoff))
    n = int(store.scalar(f"SELECT count(*) FROM {table} WHERE {where}") or 0)
    if n and not dry_run:
        store.execute(f"DELETE FROM {table} WHERE {where}")
    return n


def _record(store: Store, report: RetentionReport) -> None:
    """One ``retention_purges`` row per table, and one audit entry (inside the purge's
    transaction: they land with it or not at all)."""
    values = ", ".join(
        f"({lit(report.purge_id)}, {ts_lit(report.ts)}, {lit(t.table)}, {lit(t.period)}, "
        f"{ts_lit(t.cutoff)}, {int(t.n_rows)}, {lit(report.actor)})"
        for t in report.tables
    )
    store.execute(
        "INSERT INTO retention_purges (purge_id, ts, table_name, period, cutoff, n_rows, actor) "
        f"VALUES {values}"
    )
    append_audit(
        store,
        report.actor,
        "privacy.retention",
        report.purge_id,
        tables={t.table: t.n_rows for t in report.tables},
        periods={t.table: t.period for t in report.tables},
    )


def _purge_spool(store: Store, config: Config, cutoff: datetime, *, dry_run: bool) -> int:
    """Delete the spool files past ``cutoff`` that are fully loaded and whose writer is
    gone; their ``tracking_spool`` row goes with them. Returns how many."""
    folder = Path(config.root) / config.tracking.spool
    if not folder.is_dir() or not table_exists(store, "tracking_spool"):
        return 0
    rows = store.query("SELECT spool_file, loaded_bytes FROM tracking_spool")
    loaded = dict(
        zip(rows["spool_file"].astype(str), rows["loaded_bytes"].astype(int), strict=True)
    )
    n = 0
    for path in sorted(folder.glob("spool-*.jsonl")):
        stat = path.stat()
        old = datetime.fromtimestamp(stat.st_mtime, UTC) < cutoff
        if not old or loaded.get(path.name, -1) < stat.st_size or not _writer_gone(path):
            continue
        n += 1
        if not dry_run:
            path.unlink(missing_ok=True)
            store.execute(f"DELETE FROM tracking_spool WHERE spool_file = {lit(path.name)}")
    return n


def _writer_gone(path: Path) -> bool:
    """True when no process holds the file's ``flock`` (its writer is gone)."""
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return True
    except FileNotFoundError:
        return False
