"""Privacy in depth (issue 21): erasure, access requests, retention, key rotation, audit.

The sealing of personal fields itself lives in the store (:mod:`segmint.store._vault`:
every layer reads and writes through it); this package holds the operations a data
protection request or policy needs, each reaching every table and file of a project:

* :func:`forget` — erase a person (``segmint privacy forget``; the admin API);
* :func:`access_export` — everything held about a person, JSON and CSV;
* :func:`apply_retention` — purge rows past their period (``privacy.retention``);
* :func:`rotate_key` — a new data key, every sealed value re-sealed;
* :func:`verify_audit` — the audit log's hash chain checked.
"""

from __future__ import annotations

from segmint.privacy._forget import ErasureReport, compact, forget
from segmint.privacy._scan import ScanHit, ScanReport, scan_for

__all__: list[str] = [
    "ErasureReport",
    "ScanHit",
    "ScanReport",
    "compact",
    "forget",
    "scan_for",
]
