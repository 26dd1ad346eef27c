"""Access requests (GDPR art. 15 and 20, CCPA 1798.110): everything held about a person.

:func:`access_export` writes one folder, ``segmint-access-<subject>-<date>/``, holding

* ``person.json``: every section nested under the person, with an ``about`` part saying
  which tables each section comes from, what it means, and as of when;
* one CSV per section (UTF-8 with a byte-order mark so Excel reads accents; text cells
  that start like a formula are written as text, see :mod:`segmint._spreadsheet`);
* ``manifest.json``: every file with its row count and SHA-256.

Personal fields are opened with the vault (the export is the person's own data, so their
e-mail appears in clear); the export is recorded in ``exports`` (kind ``access``, contact)
and in the audit log (``privacy.access_export``) under the person's *subject* (the HMAC of
their user id), never the user id itself, so the entry outlives an erasure harmlessly.
The folder name holds the first 8 hex digits of the subject, not the user id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint._spreadsheet import write_csv
from segmint.errors import NotFoundError
from segmint.predict import PREDICTION_COLUMNS
from segmint.profiles import ExportRecord, new_record, record_export
from segmint.store import (
    append_audit,
    latest_run_sql,
    latest_runs_sql,
    open_vault,
)

if TYPE_CHECKING:
    from segmint.project import Project
    from segmint.store import Store, Vault

log = logging.getLogger(__name__)

__all__ = ["SECTIONS", "AccessExport", "access_export"]

_ANON = "SELECT anonymous_id FROM identities WHERE user_id = ?"


@dataclass(frozen=True)
class Section:
    """One part of an access export: its name, the tables it reads, what it means, and
    the SELECT (``?`` parameters: the user id, repeated ``n_params`` times)."""

    name: str
    tables: tuple[str, ...]
    meaning: str
    sql: str
    n_params: int = 1


# long on purpose: one table of the export's parts (a Section each, its SQL and meaning)
def _sections() -> tuple[Section, ...]:
    latest_seg = f"SELECT run_id FROM ({latest_runs_sql()}) l"
    latest_predict = ", ".join(
        f"({latest_run_sql('prediction', kind=kind)})" for kind in ("clv", "churn")
    )
    return (
        Section("profile", ("users",), "The customer record: contact details (opened from "
                "their encrypted form), demographics, traits, and the blind indexes "
                "(keyed hashes of the e-mail and phone) used to look them up.",
                "SELECT * FROM users WHERE user_id = ?"),
        Section("identities", ("identities",), "Anonymous ids (devices, browsers) linked to "
                "this person by the tracking service.",
                "SELECT * FROM identities WHERE user_id = ? ORDER BY linked_at"),
        Section("orders", ("orders",), "Every order.",
                "SELECT * FROM orders WHERE user_id = ? ORDER BY ts, order_id"),
        Section("order_lines", ("order_items", "items"), "The lines of those orders, with "
                "the item's title and category.",
                "SELECT oi.*, i.title, i.category FROM order_items oi "
                "JOIN orders o ON o.order_id = oi.order_id "
                "LEFT JOIN items i ON i.item_id = oi.item_id "
                "WHERE o.user_id = ? ORDER BY oi.order_id, oi.line"),
        Section("events", ("events",), "Every tracked event (visits, views, clicks, "
                "opens), signed in or under a linked anonymous id.",
                f"SELECT * FROM events WHERE user_id = ? OR anonymous_id IN ({_ANON}) "
                "ORDER BY ts, event_id", 2),
        Section("consents", ("consents",), "The full consent history: every grant and "
                "withdrawal per channel and purpose, with its source.",
                "SELECT * FROM consents WHERE user_id = ? ORDER BY ts, channel, purpose"),
        Section("segments", ("segment_assignments", "segment_runs"), "The segment of every "
                "segmentation run (history), with the model's probability or score where it "
                "gives one; `latest` marks each segmentation's current run.",
                "SELECT r.segmentation, r.method, a.run_id, r.created_at AS run_created_at, "
                f"a.segment, a.probability, a.detail, a.run_id IN ({latest_seg}) AS latest "
                "FROM segment_assignments a JOIN segment_runs r ON r.run_id = a.run_id "
                "WHERE a.user_id = ? ORDER BY r.segmentation, r.created_at DESC"),
        Section("features", ("features", "feature_runs"), "The behavioural features "
                "computed for this person in the latest feature run (recency, frequency, "
                "spend, ...): what segmentations and models use.",
                f"SELECT * FROM features WHERE run_id = ({latest_run_sql('feature')}) "
                "AND user_id = ?"),
        Section("recommendations", ("recommendations", "items"), "The items recommended in "
                "the latest recommendation batch, with score and reason.",
                "SELECT r.run_id, r.rank, r.item_id, i.title, r.score, r.model, r.reason "
                "FROM recommendations r LEFT JOIN items i ON i.item_id = r.item_id "
                f"WHERE r.run_id = ({latest_run_sql('recommendation', kind='batch')}) "
                "AND r.user_id = ? ORDER BY r.rank"),
        Section("predictions", ("predictions", "predict_runs"), "Predicted value and "
                "churn risk from every prediction run (history): P(alive), expected purchases "
                "and order value, lifetime value with its interval (clv runs), churn risk "
                "(churn runs), with the run's kind and as-of date; `latest` marks each kind's "
                "current run.",
                "SELECT r.kind, p.run_id, r.as_of, r.created_at AS run_created_at, "
                + ", ".join(f"p.{c}" for c in PREDICTION_COLUMNS)
                + f", coalesce(p.run_id IN ({latest_predict}), false) AS latest "
                "FROM predictions p JOIN predict_runs r ON r.run_id = p.run_id "
                "WHERE p.user_id = ? ORDER BY r.kind, r.created_at DESC"),
        Section("campaign_assignments", ("campaign_assignments",), "The arm (treatment or "
                "control) drawn for this person in each campaign.",
                "SELECT * FROM campaign_assignments WHERE user_id = ? ORDER BY assigned_at"),
        Section("campaign_audiences", ("campaign_audiences",), "Every campaign plan that "
                "included this person: segment, channel, step, arm.",
                "SELECT * FROM campaign_audiences WHERE user_id = ? ORDER BY run_id, step"),
        Section("messages", ("deliveries",), "Every message sent or attempted: campaign, "
                "channel, status and times.",
                "SELECT campaign, run_id, step, channel, status, attempts, message_id, "
                "created_at, sent_at, updated_at FROM deliveries WHERE user_id = ? "
                "ORDER BY created_at, idempotency_key"),
        Section("campaign_outcomes", ("campaign_outcomes",), "Imported outcomes of "
                "experiments (converted, revenue, visited).",
                "SELECT * FROM campaign_outcomes WHERE user_id = ? ORDER BY campaign"),
        Section("exposures", ("exposures",), "Personalised decisions served on the web "
                "site or app (campaign, arm, variant, offer).",
                f"SELECT * FROM exposures WHERE user_id = ? OR anonymous_id IN ({_ANON}) "
                "ORDER BY served_at, exposure_id", 2),
        Section("suppressions", ("suppressions",), "Do-not-contact entries (unsubscribes, "
                "bounces, complaints).",
                "SELECT user_id, channel, reason, created_at FROM suppressions "
                "WHERE user_id = ? ORDER BY created_at"),
        Section("audit", ("audit_log",), "Who opened, exported or changed this person's "
                "data, when and why.",
                "SELECT seq, ts, actor, action, target, why, detail FROM audit_log "
                "WHERE target = ? OR target = ? ORDER BY seq", 2),
    )  # fmt: skip


SECTIONS: tuple[Section, ...] = _sections()
"""The parts of an access export, in the order they are written."""


@dataclass(frozen=True)
class AccessExport:
    """What :func:`access_export` wrote: the folder, each file's rows, the record ids."""

    subject: str
    folder: Path
    rows: dict[str, int]  # section -> rows
    files: dict[str, dict[str, Any]]  # file name -> {"rows", "bytes", "sha256"}
    export_id: str
    audit_seq: int
    as_of: datetime
    sections: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["folder"] = str(self.folder)
        out["as_of"] = self.as_of.isoformat()
        return out


def _subject_rows(
    store: Store, vault: Vault, user_id: str, subject: str
) -> dict[str, pd.DataFrame]:
    """Every section's rows about ``user_id``, personal fields opened."""
    out: dict[str, pd.DataFrame] = {}
    for s in SECTIONS:
        params = [subject, user_id] if s.name == "audit" else [user_id] * s.n_params
        out[s.name] = store.query(s.sql, params)
    _open_profile(out["profile"], vault)
    events = out["events"]
    if "properties" in events and len(events):
        events["properties"] = [
            vault.open_json_text(_text(v), "events.properties") for v in events["properties"]
        ]
    return out


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _open_profile(frame: pd.DataFrame, vault: Vault) -> None:
    for col in ("email", "phone", "birthday"):
        if col in frame:
            frame[col] = vault.open_many([_text(v) for v in frame[col]], f"users.{col}")
    if "traits" in frame:
        frame["traits"] = [vault.open_json_text(_text(v), "users.traits") for v in frame["traits"]]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (times ISO 8601 UTC, NaN as null, JSON text parsed)."""
    if frame.empty:
        return []
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    json_cols = [c for c in ("traits", "properties", "detail") if c in frame]
    for r in rows:
        for c in json_cols:
            if isinstance(r[c], str) and r[c][:1] in "{[":
                with contextlib.suppress(ValueError):
                    r[c] = json.loads(r[c])
    return rows


def _about(user_id: str, as_of: datetime, rows: dict[str, int]) -> dict[str, Any]:
    return {
        "what": "Everything this organisation's segmint project holds about one person, "
        "derived data included (segments, scores, predictions, features, recommendations, messages).",
        "user_id": user_id,
        "as_of": as_of.isoformat(),
        "files": "person.json holds every part; each part is also a CSV (UTF-8, opens in "
        "a spreadsheet); manifest.json lists the files with their SHA-256.",
        "sections": {
            s.name: {"tables": list(s.tables), "meaning": s.meaning, "rows": rows[s.name]}
            for s in SECTIONS
        },
        "not_included": "Totals computed over many people (a campaign's evaluation), which "
        "hold nothing about one person; rows rejected at load time (the quarantine) are "
        "not matched to a person.",
    }


def _write_folder(
    folder: Path, user_id: str, as_of: datetime, data: dict[str, pd.DataFrame]
) -> dict[str, dict[str, Any]]:
    """Write person.json, one CSV per section and manifest.json into ``folder``."""
    rows = {name: len(frame) for name, frame in data.items()}
    person: dict[str, Any] = {"about": _about(user_id, as_of, rows)}
    for name, frame in data.items():
        recs = _records(frame)
        person[name] = (recs[0] if recs else None) if name == "profile" else recs
    files: dict[str, dict[str, Any]] = {}
    text = json.dumps(person, indent=2, ensure_ascii=False, default=str)
    (folder / "person.json").write_text(text + "\n", encoding="utf-8")
    files["person.json"] = {"rows": sum(rows.values())}
    for name, frame in data.items():
        out = frame.copy()
        for c in ("traits", "properties", "detail"):
            if c in out:
                out[c] = [_text(v) for v in out[c]]
        write_csv(out, folder / f"{name}.csv", bom=True)
        files[f"{name}.csv"] = {"rows": rows[name]}
    for name, meta in files.items():
        blob = (folder / name).read_bytes()
        meta["bytes"] = len(blob)
        meta["sha256"] = hashlib.sha256(blob).hexdigest()
    manifest = {"as_of": as_of.isoformat(), "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


def access_export(
    project: Project,
    user_id: str,
    out_dir: str | Path = ".",
    *,
    actor: str | None = None,
    why: str | None = None,
) -> AccessExport:
    """Write everything held about ``user_id`` into a new folder under ``out_dir``.

    Parameters
    ----------
    project : Project
        The open project (its store is written: the export and the audit entry).
    user_id : str
        The person (a ``users.user_id``).
    out_dir : str or Path
        Where the folder ``segmint-access-<subject8>-<YYYYMMDD>/`` is created.
    actor : str, optional
        Who asked (default: the login name); recorded in ``exports`` and the audit log.
    why : str, optional
        The reason (a request reference); recorded with the audit entry.

    Raises
    ------
    segmint.errors.NotFoundError
        No user ``user_id`` in the store.
    """
    store = project.store
    vault = open_vault(store, project.config)
    if not len(store.query("SELECT 1 FROM users WHERE user_id = ?", [user_id])):
        raise NotFoundError(
            "there is no user with that id in the store; check the id (segmint profile "
            "USER shows a user) — nothing was written"
        )
    subject = str(vault.index(user_id, "user"))
    as_of = datetime.now(UTC)
    data = _subject_rows(store, vault, user_id, subject)
    folder = Path(out_dir) / f"segmint-access-{subject[:8]}-{as_of:%Y%m%d}"
    if folder.exists():
        folder = folder.with_name(f"{folder.name}-{as_of:%H%M%S}")
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True)
    try:
        files = _write_folder(partial, user_id, as_of, data)
        partial.rename(folder)
        rows = {name: len(frame) for name, frame in data.items()}
        record = new_record("access", folder, "json+csv", sum(rows.values()), contact=True,
                            purpose=why, command="privacy export", actor=actor)  # fmt: skip
        with store.transaction():
            record_export(store, record)
            seq = append_audit(store, record.actor or "unknown", "privacy.access_export",
                               subject, why=why, export_id=record.export_id,
                               n_rows=record.n_rows, n_files=len(files) + 1)  # fmt: skip
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    log.info("access export %s: subject %s, %d rows", record.export_id, subject[:8], record.n_rows)
    return _result(subject, folder, rows, files, record, seq, as_of)


def _result(subject: str, folder: Path, rows: dict[str, int], files: dict[str, dict[str, Any]],
            record: ExportRecord, seq: int, as_of: datetime) -> AccessExport:  # fmt: skip
    listed = dict(files)
    manifest = (folder / "manifest.json").read_bytes()
    listed["manifest.json"] = {"rows": len(files), "bytes": len(manifest),
                               "sha256": hashlib.sha256(manifest).hexdigest()}  # fmt: skip
    return AccessExport(subject, folder, rows, listed, record.export_id, seq, as_of,
                        tuple(s.name for s in SECTIONS))  # fmt: skip
