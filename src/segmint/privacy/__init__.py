"""Privacy in depth (issue 21): erasure, access requests, retention, key rotation, audit.

The sealing of personal fields itself lives in the store (:mod:`segmint.store._vault`:
every layer reads and writes through it); this package holds the operations a data
protection request or policy needs, each reaching every table and file of a project:

* :func:`forget` — erase a person (``segmint privacy forget``; the admin API);
* :func:`access_export` — everything held about a person, JSON and CSV;
* :func:`apply_retention` — purge rows past their period (``privacy.retention``);
* :func:`do_not_sell` — a CCPA "do not sell or share" request (consent ``sale_or_share``);
* :func:`rotate_key` — a new data key, every sealed value re-sealed;
* :func:`verify_audit` — the audit log's hash chain checked.
"""

from __future__ import annotations

from segmint.privacy._access import AccessExport, access_export
from segmint.privacy._do_not_sell import DoNotSell, do_not_sell
from segmint.privacy._forget import ErasureReport, compact, forget
from segmint.privacy._retention import (
    RetentionPurge,
    RetentionReport,
    apply_retention,
    retention_cutoff,
)
from segmint.privacy._rotate import ColumnRotation, RotationReport, rotate_key
from segmint.privacy._scan import ScanHit, ScanReport, scan_for

__all__ = [
    "AccessExport",
    "ColumnRotation",
    "DoNotSell",
    "ErasureReport",
    "RetentionPurge",
    "RetentionReport",
    "RotationReport",
    "ScanHit",
    "ScanReport",
    "access_export",
    "apply_retention",
    "compact",
    "do_not_sell",
    "forget",
    "retention_cutoff",
    "rotate_key",
    "scan_for",
]
