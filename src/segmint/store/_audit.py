"""The audit log: who read personal data, exported it or erased it, and why; chained.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's own fields
(sequence number, time, actor, action, target, why, detail), so changing, removing or
re-ordering an entry breaks every hash after it; :func:`verify_audit` recomputes the chain
and names the first entry that does not match. Entries are appended under the store's
transaction with the next sequence number, under the store's ``audit`` lock (PostgreSQL:
an advisory lock, so two processes never read the same head); a UNIQUE index on ``seq``
refuses a duplicate that got past it.

What is written (``action``): ``personal.read`` (decrypted values shown or used: a person's
page, a contact export, a send), ``export`` (a file of personal data written),
``privacy.forget``, ``privacy.access_export``, ``privacy.rotate_key``,
``privacy.retention`` and the workspace's changes (``config.save``, ``campaign.send``...).
Details never hold personal data: ids, counts, file names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segmint.store._base import Store

__all__ = ["AuditCheck", "append_audit", "audit_hash", "verify_audit"]

GENESIS = "0" * 64


def _ts_text(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_hash(
    prev: str,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str | None,
    why: str | None,
    detail: str | None,
) -> str:
    """The chain hash of one entry (``detail`` as the JSON text stored)."""
    body = json.dumps(
        [prev, int(seq), _ts_text(ts), actor, action, target, why, detail],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append_audit(
    store: Store,
    actor: str,
    action: str,
    target: str | None = None,
    *,
    why: str | None = None,
    **detail: Any,
) -> int:
    """Append one entry (who, what, to what, why, details without personal data); returns
    its sequence number. Call inside the transaction of the change it records where there
    is one, so the two land together."""
    detail_text = canonical_json(json.dumps(detail, default=str))
    ts = datetime.now(UTC)
    # one appender at a time per store (PostgreSQL: a transaction-level advisory lock,
    # held until the caller's transaction ends): reading the head and inserting the next
    # entry are one step. A retry on a duplicate sequence number could not work inside a
    # PostgreSQL transaction (the failed INSERT aborts it), so the lock is the guard; the
    # UNIQUE index on ``seq`` is the backstop.
    with store.lock("audit"):
        last = store.query(
            "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        seq = int(last["seq"].iat[0]) + 1 if len(last) else 1  # type: ignore[arg-type]
        prev = str(last["hash"].iat[0]) if len(last) else GENESIS
        digest = audit_hash(prev, seq, ts, actor, action, target, why, detail_text)
        store.execute(
            "INSERT INTO audit_log (id, seq, ts, actor, action, target, why, detail, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [f"a{seq:012d}", seq, ts, actor, action, target, why, detail_text, prev, digest],
        )
    return seq


@dataclass(frozen=True)
class AuditCheck:
    """The result of :func:`verify_audit`: entries checked, whether the chain holds, and
    the first entry that breaks it (with why)."""

    entries: int
    ok: bool
    first_bad: int | None = None
    problem: str | None = None
    head: str | None = None  # the last entry's hash: note it to detect a truncated tail


def verify_audit(store: Store) -> AuditCheck:
    """Recompute the chain over every entry, in sequence order."""
    rows = store.query(
        "SELECT seq, ts, actor, action, target, why, CAST(detail AS VARCHAR) AS detail, "
        "prev_hash, hash FROM audit_log ORDER BY seq NULLS FIRST"
    )
    prev = GENESIS
    expected_seq = 1
    n = 0
    entries: list[dict[str, Any]] = rows.to_dict("records")  # type: ignore[assignment]
    for r in entries:
        n += 1
        if _none(r["seq"]) is None:
            return AuditCheck(n, False, None, "an entry without a sequence number (added "
                              "outside segmint, or before schema 9)")  # fmt: skip
        seq = int(r["seq"])
        if seq != expected_seq:
            return AuditCheck(n, False, seq, f"entry {expected_seq} is missing")
        if r["prev_hash"] != prev:
            return AuditCheck(n, False, seq, "its link to the entry before does not match")
        ts = r["ts"].to_pydatetime() if hasattr(r["ts"], "to_pydatetime") else r["ts"]
        digest = audit_hash(prev, seq, ts, r["actor"], r["action"], _none(r["target"]),
                            _none(r["why"]), canonical_json(_none(r["detail"])))  # fmt: skip
        if digest != r["hash"]:
            return AuditCheck(n, False, seq, "its content was changed after it was written")
        prev = digest
        expected_seq += 1
    return AuditCheck(n, True, head=prev if n else None)


def canonical_json(text: str | None) -> str | None:
    """JSON text in one form (sorted keys, no spaces): what the chain hashes, whatever form
    the store hands the text back in (PostgreSQL's JSONB re-orders keys)."""
    if text is None:
        return None
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _none(value: Any) -> Any:
    return None if value is None or value != value else value
