"""Erasure: forget one person in every table and every file the project wrote.

:func:`forget` finds what names the person (their user id; the e-mail and phone of their
``users`` row, opened with the vault; the anonymous ids linked to them in ``identities``
or carried by their events; their pseudonym in member exports; the idempotency keys of
their messages), then, in **one store transaction**, removes them table by table, rewrites
the files, writes the erasure record, the suppressions and the audit entry. An error
anywhere rolls the store back (files already rewritten stay rewritten: a rerun finishes
the job, it is idempotent).

What happens to each table, and why:

====================  ==============================  ==========================================
table                 what happens                    why
====================  ==============================  ==========================================
users                 row deleted                     the person
events                deleted: by user id, and those  behaviour of the person, signed-in or not;
                      without a user id under one of  another user's events on a shared device
                      their anonymous ids             (same anonymous id) stay
orders                ``user_id`` replaced by         revenue, order counts and item popularity
                      ``erased:<random>``, one        stay true; the token is random, stored
                      token per erasure               nowhere else: nothing (not even the index
                                                      key) leads from the user id to it
order_items           kept                            no user id; only linked to the order
consents              deleted                         the erasure record and the ``erased``
                                                      suppressions stand in for them
suppressions          the person's rows lose          never contacted again, by any address
                      user id and address (the        they had; a re-import of an old file or a
                      address's blind index kept);    new account with the same e-mail is
                      one ``erased`` row per blind    suppressed by the index
                      index (e-mail, phone) added
quarantine            rows whose raw row (opened      raw source rows hold every field
                      with the vault) holds one of
                      their identifiers: deleted
features, segment_    the person's rows deleted       derived per person; the runs' totals
assignments,                                          (``segment_runs.n_users``, metrics,
recommendations,                                      ``predict_runs`` fits and holdout checks,
predictions,                                          ``campaign_runs`` funnels) are aggregates
campaign_audiences,                                   and stay
campaign_assignments,
campaign_outcomes
deliveries            kept for exactly-once           a run's sent/failed counts stay right and
                      accounting: ``user_id`` and     a resumed send does not resend; the
                      the idempotency key carry the   Message-ID (an MD5 of the key: it could be
                      erasure token; ``message_id``   recomputed from the user id) and the error
                      and ``error`` set to NULL       (an SMTP answer may quote the address) go
exposures             deleted (as events)             decisions served to the person
identities            deleted                         links anonymous id -> user id
tracked_messages      kept                            message ids made by the client and a
                                                      source name: no person in them; keeping
                                                      them makes a replay of an erased message
                                                      a duplicate. Pending spool lines of the
                                                      person get their id added here
tracking_spool        kept                            file offsets only
audit_log             entries naming the user id      the log is a record of processing kept
                      (target or detail) get          for accountability; re-chained from the
                      ``erased:<subject>`` instead,   first changed entry so it verifies, and
                      the chain re-hashed from there  the ``privacy.forget`` entry names the
                                                      previous head (an outside copy of it is
                                                      explained by that entry)
exports (table)       kept; ``n_rows`` lowered by     the log of what was written stays true
                      the rows removed from its file
campaign_evaluations  kept                            totals per arm and segment, no user ids
segment_runs,         kept                            aggregates and parameters, no user ids
predict_runs,
campaign_runs, ...
====================  ==============================  ==========================================

Files: every file registered in ``exports`` (csv, xlsx, parquet, json, jsonl; a persona
folder file by file) is rewritten without the person's rows (matched by user id, pseudonym,
e-mail, phone, anonymous id); a file that is gone is listed in the report (a copy made
elsewhere is beyond reach). The file channel's message files of the person's deliveries
(``playbook.channels.<file>.path``) are rewritten the same way. Hand-over journals get the
new idempotency keys. Tracking spool lines of the person are overwritten in place with a
line of the same length holding only the message's source and id (offsets do not move, a
live writer only appends); those not loaded yet get their id in ``tracked_messages``, so
the loader counts them duplicates. ``report.html`` holds aggregates only (no user id: the
erasure test scans it).

The erasure record (``erasures``: the HMAC of the user id, the blind indexes of the e-mail
and phone, when, who, why, the request id, counts per table and file) is what the loader
checks so that a re-import does not bring the person back, and what answers "was this
person forgotten?" without keeping them.

A user id found nowhere (no table, no spool line) raises
:class:`~segmint.errors.NotFoundError` and writes nothing; one known only from a spool line
or a derived table (events of a user never imported) is forgotten all the same. A second
call for a forgotten person returns ``already=True`` and writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.errors import ConfigError, NotFoundError
from segmint.privacy._files import (
    Identifiers,
    SpoolHit,
    blank_spool_lines,
    flat,
    rekey_journal,
    rewrite_table_file,
    spool_files,
    spool_hits,
)
from segmint.store import (
    Store,
    append_audit,
    audit_hash,
    canonical_json,
    lit,
    open_vault,
)

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store import Vault

__all__ = ["ErasureReport", "forget"]

log = logging.getLogger(__name__)

ERASED = "erased:"
"""Prefix of the tokens that take a user id's place where a row is kept."""

#: tables whose rows of the person are deleted by ``user_id``
DELETE_BY_USER = (
    "users",
    "consents",
    "features",
    "segment_assignments",
    "recommendations",
    "predictions",
    "campaign_audiences",
    "campaign_assignments",
    "campaign_outcomes",
    "identities",
)


@dataclass
class ErasureReport:
    """What :func:`forget` did: rows per table, files rewritten, the erasure record's key.

    ``already`` is True when the person had been forgotten before and nothing was left
    (nothing written). ``subject`` is the blind index of the user id (the erasure record's
    key); the user id itself is not in the report."""

    subject: str
    request_id: str
    already: bool = False
    erased_at: datetime | None = None
    tables: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        """Rows deleted or pseudonymised, all tables together."""
        return sum(self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["erased_at"] = None if self.erased_at is None else self.erased_at.isoformat()
        out["n_rows"] = self.n_rows
        return out


@dataclass
class _Person:
    """What names one person, gathered before anything is changed."""

    user_id: str
    subject: str
    token: str  # replaces the user id in kept rows (orders, deliveries)
    in_users: bool = False
    email: str | None = None
    phone: str | None = None
    email_index: str | None = None
    phone_index: str | None = None
    anonymous_ids: list[str] = field(default_factory=list)
    pseudonym: str | None = None
    # set when the deliveries are pseudonymised: old idempotency key -> new (journals)
    delivery_keys: dict[str, str] = field(default_factory=dict)

    def identifiers(self) -> Identifiers:
        exact = {self.user_id, *self.anonymous_ids}
        if self.pseudonym:
            exact.add(self.pseudonym)
        if self.phone:
            exact.add(self.phone.strip())
        emails = {self.email.strip().lower()} if self.email else set()
        digits = "".join(ch for ch in self.phone or "" if ch.isdigit())
        phones = {digits} if len(digits) >= 6 else set()
        return Identifiers(frozenset(exact), frozenset(emails), frozenset(phones))


def _resolve(project: Any, config: Config | None) -> tuple[Store, Config]:
    if isinstance(project, Store):
        if config is None:
            raise ConfigError("forget(store, ...) needs config=: the project's configuration")
        return project, config
    return project.store, config or project.config


def forget(
    project: Any,
    user_id: str,
    *,
    actor: str,
    why: str,
    request_id: str | None = None,
    config: Config | None = None,
) -> ErasureReport:
    """Erase the person ``user_id`` from every table and file of the project.

    Parameters
    ----------
    project : Project or Store
        The open project; or its store, with ``config``.
    user_id : str
        The person's user id.
    actor : str
        Who asks (an operating-system user, a workspace person, ``api:<key id>``): audited.
    why : str
        The reason (a ticket, "GDPR art. 17 request"): audited and recorded.
    request_id : str, optional
        The request's reference in your system (default: a new one).
    config : Config, optional
        The configuration, when ``project`` is a store.

    Returns
    -------
    ErasureReport
        Rows per table, files rewritten, notes; ``already`` when there was nothing left.

    Raises
    ------
    segmint.errors.NotFoundError
        The user id is in no table and no spool line (nothing is written).
    """
    store, config = _resolve(project, config)
    user_id = str(user_id).strip()
    if not user_id or not why or not why.strip():
        raise ConfigError("forget needs a user id and a reason (--why): both are recorded")
    vault = open_vault(store, config)
    subject = str(vault.index(user_id, "user"))
    report = ErasureReport(subject, request_id or f"forget-{uuid.uuid4().hex[:12]}")
    with store.transaction():
        person = _find(store, vault, config, user_id, subject)
        hits = _spool_hits(config, vault, person)
        forgotten = bool(store.scalar("SELECT count(*) FROM erasures WHERE subject = ?", [subject]))
        if not _in_store(store, person) and not hits:
            if forgotten:
                report.already = True
                return report
            raise NotFoundError(
                f"no user {user_id!r} in the store or the tracking spool: nothing to forget "
                "(check the id; `segmint profile USER` shows a person)"
            )
        person.pseudonym = _pseudonym(config.root, user_id)
        channel_files = _channel_files(store, config, person)  # before deliveries change
        known_anonymous = list(person.anonymous_ids)
        report.tables = _erase_tables(store, vault, person)  # learns anonymous ids
        if person.anonymous_ids != known_anonymous:
            hits = _spool_hits(config, vault, person)
        report.files += _erase_export_files(store, person)
        report.files += _erase_channel_files(channel_files, person)
        report.files += _erase_journals(config, person)
        report.tables["tracked_messages"] = _neutralise_spool(store, hits, report)
        report.tables["audit_log"] = _rechain_audit(store, user_id, ERASED + subject, report)
        report.erased_at = datetime.now(UTC)
        _record(store, person, report, actor=actor, why=why.strip(), forgotten=forgotten)
    log.info(
        "privacy.forget %s: %d rows, %d files (request %s)",
        subject,
        report.n_rows,
        len(report.files),
        report.request_id,
    )
    return report


# -- finding the person ----------------------------------------------------------------


def _tables(store: Store) -> set[str]:
    rows = store.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    return {str(t) for t in rows.iloc[:, 0]}


def _find(store: Store, vault: Vault, config: Config, user_id: str, subject: str) -> _Person:
    person = _Person(user_id, subject, ERASED + secrets.token_hex(8))
    row = store.query(
        "SELECT email, phone, email_index, phone_index FROM users WHERE user_id = ? LIMIT 1",
        [user_id],
    )
    if len(row):
        r = row.iloc[0]
        person.in_users = True
        person.email = _none(vault.open(_none(r["email"]), "users.email"))
        person.phone = _none(vault.open(_none(r["phone"]), "users.phone"))
        person.email_index = _none(r["email_index"]) or vault.index(person.email, "email")
        person.phone_index = _none(r["phone_index"]) or vault.index(person.phone, "phone")
    # the anonymous ids their events carry are learnt when those are deleted (one scan)
    anon = store.query("SELECT anonymous_id FROM identities WHERE user_id = ?", [user_id])
    person.anonymous_ids = sorted({str(a) for a in anon["anonymous_id"] if _none(a)})
    return person


def _none(value: Any) -> Any:
    if value is None or (not isinstance(value, list | dict | tuple) and pd.isna(value)):
        return None
    return value


def _in_store(store: Store, person: _Person) -> bool:
    if person.in_users or person.anonymous_ids:
        return True
    present = _tables(store)
    for table in (*DELETE_BY_USER, "events", "exposures", "orders", "deliveries"):
        if table in present and store.scalar(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE user_id = ? LIMIT 1) x",
            [person.user_id],
        ):
            return True
    return False


def _pseudonym(root: Path, user_id: str) -> str:
    """The person's pseudonym in member exports (the project's pseudonym key is made if
    there is none yet: then no export holds one)."""
    from segmint.campaigns import pseudonym_key

    # segmint.profiles.export_list's pseudonym: HMAC-SHA256 under the key, 16 hex digits
    digest = hmac.new(pseudonym_key(root), user_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:16]


def _opener(vault: Vault) -> Any:
    """A function opening a sealed value whatever field sealed it (None if none does)."""
    from segmint.privacy._scan import open_any

    return lambda value: open_any(vault, value)


def _spool_hits(config: Config, vault: Vault, person: _Person) -> list[SpoolHit]:
    """The person's spool lines; anonymous ids that lines link to them (an identify not
    loaded yet) join their identifiers, and the spool is read again with them."""
    files = _spool_files(config)
    hits = spool_hits(files, person.identifiers(), _opener(vault))
    linked = {a for h in hits for a in h.links} - set(person.anonymous_ids)
    if linked:
        person.anonymous_ids = sorted({*person.anonymous_ids, *linked})
        hits = spool_hits(files, person.identifiers(), _opener(vault))
    return hits


def _spool_files(config: Config) -> list[Path]:
    folder = Path(config.tracking.spool)
    return spool_files(folder if folder.is_absolute() else Path(config.root) / folder)


# -- the tables -------------------------------------------------------------------------


def _in_list(values: list[str]) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


def _delete(store: Store, table: str, where: str, params: list[Any]) -> int:
    """``DELETE ... RETURNING 1``: the rows deleted, counted on every backend."""
    return len(store.query(f"DELETE FROM {table} WHERE {where} RETURNING 1", params))


def _erase_tables(store: Store, vault: Vault, person: _Person) -> dict[str, int]:
    present = _tables(store)
    uid = person.user_id
    counts: dict[str, int] = {}
    for table in DELETE_BY_USER:
        if table in present:
            counts[table] = _delete(store, table, "user_id = ?", [uid])
    counts["events"] = _erase_events(store, person)
    if "exposures" in present:
        where = "user_id = ?"
        if person.anonymous_ids:
            where += f" OR (user_id IS NULL AND anonymous_id IN {_in_list(person.anonymous_ids)})"
        counts["exposures"] = _delete(store, "exposures", where, [uid])
    counts["orders"] = len(
        store.query(
            "UPDATE orders SET user_id = ? WHERE user_id = ? RETURNING 1", [person.token, uid]
        )
    )
    if "deliveries" in present:
        counts["deliveries"] = _pseudonymise_deliveries(store, person)
    counts["suppressions"] = _move_suppressions(store, vault, person)
    counts["quarantine"] = _erase_quarantine(store, vault, person)
    return counts


def _erase_events(store: Store, person: _Person) -> int:
    """The person's events: by user id (one scan, the filter pushed into it; the anonymous
    ids those events carry are learnt), then the events without a user id under one of
    their anonymous ids (browsing before they signed in that the loader did not backfill;
    an event of another user on a shared device stays). Two pushed-down predicates: an
    ``OR`` of both is not pushed into the scan and cost three times as much (1M users, 20M
    events); ``user_id IS NULL`` first spares decoding the anonymous ids of the rest."""
    rows = store.query(
        "DELETE FROM events WHERE user_id = ? RETURNING anonymous_id", [person.user_id]
    )
    carried = {str(a) for a in rows["anonymous_id"] if _none(a)}
    person.anonymous_ids = sorted(set(person.anonymous_ids) | carried)
    n = len(rows)
    if person.anonymous_ids:  # not another user's events on a shared device
        anon = f"anonymous_id IN {_in_list(person.anonymous_ids)}"
        n += _delete(store, "events", f"user_id IS NULL AND {anon}", [])
    return n


def _new_key(key: str, person: _Person) -> str:
    """The idempotency key ``campaign|user|step`` with the token for the user id."""
    parts = key.split("|")
    return "|".join(person.token if p == person.user_id else p for p in parts)


def _pseudonymise_deliveries(store: Store, person: _Person) -> int:
    """The person's delivery rows, kept with the token for the user id in ``user_id`` and
    the idempotency key, without Message-ID and error (deleted and inserted again: the key
    is the primary key). Remembers the keys changed, for the journals."""
    rows = store.query("DELETE FROM deliveries WHERE user_id = ? RETURNING *", [person.user_id])
    if rows.empty:
        return 0
    keys = {str(k): _new_key(str(k), person) for k in rows["idempotency_key"]}
    person.delivery_keys = keys
    rows["idempotency_key"] = rows["idempotency_key"].map(keys)
    rows["user_id"] = person.token
    rows["message_id"] = None
    rows["error"] = None
    store.insert("deliveries", rows)
    return len(rows)


def _move_suppressions(store: Store, vault: Vault, person: _Person) -> int:
    """The person's suppressions (by user id, e-mail or phone) keep only the address's
    blind index; returns how many."""
    conds, params = ["user_id = ?"], [person.user_id]
    if person.email:
        conds.append("lower(trim(address)) = ?")
        params.append(person.email.strip().lower())
    if person.phone:
        conds.append("address = ?")
        params.append(person.phone)
    rows = store.query(f"DELETE FROM suppressions WHERE {' OR '.join(conds)} RETURNING *", params)
    if rows.empty:
        return 0

    def index(address: Any, kept: Any) -> Any:
        if _none(kept) or not _none(address):
            return _none(kept) or None
        text = str(address)
        return vault.index(text, "email" if "@" in text else "phone")

    kept = rows["address_index"] if "address_index" in rows else [None] * len(rows)
    rows["address_index"] = [index(a, k) for a, k in zip(rows["address"], kept, strict=True)]
    rows["user_id"] = None
    rows["address"] = None
    store.insert("suppressions", rows)
    return len(rows)


def _erase_quarantine(store: Store, vault: Vault, person: _Person) -> int:
    """Delete the quarantined rows whose raw row holds one of the person's identifiers:
    sealed rows are opened (every sealed row is read: the quarantine is bounded by its
    retention period; about 30 us a row), clear rows are picked by a text search first;
    only rows whose text holds an identifier are parsed and matched exactly."""
    ids = person.identifiers()
    needles = [n.decode().lower() for n in ids.needles()]
    like = " OR ".join("lower(CAST(raw AS VARCHAR)) LIKE ?" for _ in needles)
    rows = store.query(
        'SELECT load_id, "row", rule, field, CAST(raw AS VARCHAR) AS raw, raw_value '
        "FROM quarantine WHERE CAST(raw AS VARCHAR) LIKE ? OR raw_value LIKE ? "
        f"OR {like or 'FALSE'}",
        ["%enc1:%", "enc1:%", *(f"%{n}%" for n in needles)],
    )
    doomed = []
    for key, raw, raw_value in zip(
        zip(rows["load_id"], rows["row"], rows["rule"], rows["field"], strict=True),
        rows["raw"],
        rows["raw_value"],
        strict=True,
    ):
        text = _none(raw)
        if isinstance(text, str) and text.startswith('"enc1:') and text.endswith('"'):
            text = vault.open(text[1:-1], "quarantine.raw")  # a sealed JSON string
        value = _none(raw_value)
        value = vault.open(str(value), "quarantine.raw_value") if value is not None else None
        haystack = f"{text or ''}\n{value or ''}".lower()
        if any(n in haystack for n in needles) and _raw_matches(ids, text, value):
            doomed.append(key)
    for key in doomed:
        store.execute(
            'DELETE FROM quarantine WHERE load_id = ? AND "row" = ? AND rule = ? AND field = ?',
            [str(key[0]), int(key[1]), str(key[2]), str(key[3])],
        )
    return len(doomed)


def _raw_matches(ids: Identifiers, text: str | None, value: str | None) -> bool:
    """Whether a quarantined row (its raw JSON text, opened; its raw value) holds one of
    the identifiers as a whole value."""
    values: list[Any] = [value]
    if text is not None:
        try:
            values += list(flat(json.loads(text)))
        except ValueError:
            values.append(text)
    return ids.any_in(values)


# -- files ----------------------------------------------------------------------------


def _names(folder: Path, user_id: str) -> bool:
    """Whether an access export's folder is this person's (its person.json names them)."""
    person = folder / "person.json"
    try:
        return f'"{user_id}"'.encode() in person.read_bytes()
    except OSError:
        return False


def _erase_export_files(store: Store, person: _Person) -> list[dict[str, Any]]:
    ids = person.identifiers()
    done: list[dict[str, Any]] = []
    exports = store.query("SELECT export_id, kind, path, format FROM exports ORDER BY created_at")
    for r in exports.itertuples(index=False):
        path = Path(str(r.path))
        if r.kind == "access" and path.is_dir():  # an access export: all of it is the person's
            if _names(path, person.user_id):
                shutil.rmtree(path)
                store.execute("UPDATE exports SET n_rows = 0 WHERE export_id = ?", [r.export_id])
                done.append({"kind": "access export", "export_id": r.export_id,
                             "path": str(path), "deleted": True})  # fmt: skip
            continue
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        removed_total = 0
        for f in files:
            removed = rewrite_table_file(f, ids)
            if removed == -1 and not f.exists():
                done.append({"kind": "export", "export_id": r.export_id, "path": str(f),
                             "n_rows_removed": None, "missing": True})  # fmt: skip
            elif removed > 0:
                removed_total += removed
                done.append({"kind": "export", "export_id": r.export_id, "path": str(f),
                             "n_rows_removed": removed})  # fmt: skip
        if removed_total:
            store.execute(
                "UPDATE exports SET n_rows = greatest(n_rows - ?, 0) WHERE export_id = ?",
                [removed_total, r.export_id],
            )
    return done


def _channel_files(store: Store, config: Config, person: _Person) -> list[Path]:
    """The file channel's message files that hold the person's messages (found from their
    deliveries, before those are pseudonymised)."""
    from segmint._playbook import FileChannelSpec

    runs = store.query(
        "SELECT DISTINCT campaign, run_id, channel FROM deliveries WHERE user_id = ?",
        [person.user_id],
    )
    paths: list[Path] = []
    for r in runs.itertuples(index=False):
        spec = config.playbook.channels.get(str(r.channel))
        if not isinstance(spec, FileChannelSpec):
            continue
        base = Path(spec.path.format(campaign=r.campaign, run_id=r.run_id, format=spec.format))
        base = base if base.is_absolute() else Path(config.root) / base
        paths += [base.with_suffix(".csv"), base.with_suffix(".xlsx")]
    return paths


def _erase_channel_files(paths: list[Path], person: _Person) -> list[dict[str, Any]]:
    ids = person.identifiers()
    done: list[dict[str, Any]] = []
    for f in paths:
        removed = rewrite_table_file(f, ids)
        if removed > 0:
            done.append({"kind": "channel file", "path": str(f), "n_rows_removed": removed})
    return done


def _erase_journals(config: Config, person: _Person) -> list[dict[str, Any]]:
    done = []
    folder = Path(config.root) / ".segmint" / "journal"  # segmint.campaigns' journals
    for path in sorted(folder.glob("*.jsonl")) if person.delivery_keys else []:
        n = rekey_journal(path, person.delivery_keys)
        if n:
            done.append({"kind": "journal", "path": str(path), "n_lines_changed": n})
    return done


def _neutralise_spool(store: Store, hits: list[SpoolHit], report: ErasureReport) -> int:
    """Blank the person's spool lines; the ids of those not loaded yet go to
    ``tracked_messages`` (the loader then drops them as duplicates). Returns ids added."""
    if not hits:
        return 0
    added = 0
    for h in hits:
        if h.message_id is None:
            continue
        source = f"tracking:{h.source or 'default'}"  # as segmint.sources.load_messages names it
        known = store.scalar(
            "SELECT count(*) FROM tracked_messages WHERE source = ? AND message_id = ?",
            [source, h.message_id],
        )
        if not known:
            store.execute(
                "INSERT INTO tracked_messages (source, message_id, received_at, load_id) "
                "VALUES (?, ?, ?, NULL)",
                [source, h.message_id, datetime.now(UTC)],
            )
            added += 1
    for path, n in blank_spool_lines(hits).items():
        report.files.append({"kind": "spool", "path": str(path), "n_lines_blanked": n})
    return added


# -- the audit chain and the record ------------------------------------------------------


def _replace_value(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace_value(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_value(v, old, new) for v in value]
    return new if value == old else value


def _rechain_audit(store: Store, user_id: str, replacement: str, report: ErasureReport) -> int:
    """Put ``replacement`` for the user id in the audit entries naming it (target or a
    detail value) and re-hash the chain from the first of them; returns entries changed."""
    pattern = "%" + user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    first = store.scalar(
        "SELECT min(seq) FROM audit_log WHERE target = ? OR CAST(detail AS VARCHAR) LIKE ? "
        "ESCAPE '\\'",
        [user_id, pattern],
    )
    if _none(first) is None:
        return 0
    rows = store.query(
        "SELECT seq, ts, actor, action, target, why, CAST(detail AS VARCHAR) AS detail, hash "
        "FROM audit_log WHERE seq >= ? ORDER BY seq",
        [int(first)],
    )
    prev = store.scalar("SELECT hash FROM audit_log WHERE seq = ?", [int(first) - 1])
    prev = str(prev) if _none(prev) else "0" * 64
    report.notes.append(
        f"audit log re-chained from entry {int(first)} (head was {rows['hash'].iat[-1]})"
    )
    changed = 0
    r: Any
    for r in rows.itertuples(index=False):
        target = replacement if r.target == user_id else _none(r.target)
        detail = canonical_json(_none(r.detail))
        if detail is not None:
            detail = canonical_json(
                json.dumps(_replace_value(json.loads(detail), user_id, replacement))
            )
        changed += int(target != _none(r.target) or detail != canonical_json(_none(r.detail)))
        ts = r.ts.to_pydatetime() if hasattr(r.ts, "to_pydatetime") else r.ts
        digest = audit_hash(prev, int(r.seq), ts, r.actor, r.action, target, _none(r.why), detail)
        store.execute(
            "UPDATE audit_log SET target = ?, detail = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            [target, detail, prev, digest, int(r.seq)],
        )
        prev = digest
    return changed


def _record(
    store: Store, person: _Person, report: ErasureReport, *, actor: str, why: str, forgotten: bool
) -> None:
    """The erasure record, the ``erased`` suppressions and the audit entry."""
    detail = {"tables": report.tables, "files": len(report.files), "notes": report.notes}
    if not forgotten:
        store.execute(
            "INSERT INTO erasures (subject, email_index, phone_index, erased_at, actor, why, "
            "request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [person.subject, person.email_index, person.phone_index, report.erased_at, actor,
             why, report.request_id, json.dumps(detail)],
        )  # fmt: skip
    else:
        report.notes.append("forgotten before: data had come back (a re-import) and was erased")
    for index in (person.email_index, person.phone_index):
        if index and not store.scalar(
            "SELECT count(*) FROM suppressions WHERE address_index = ? AND reason = 'erased'",
            [index],
        ):
            store.execute(
                "INSERT INTO suppressions (user_id, address, channel, reason, created_at, "
                "address_index) VALUES (NULL, NULL, NULL, 'erased', ?, ?)",
                [report.erased_at, index],
            )
    append_audit(
        store,
        actor,
        "privacy.forget",
        person.subject,
        why=why,
        request_id=report.request_id,
        rows=report.tables,
        files=len(report.files),
    )


# -- compaction --------------------------------------------------------------------------


def compact(project: Any, *, config: Config | None = None) -> dict[str, Any]:
    """Rewrite a DuckDB store file so that erased values leave it for good.

    A DELETE in DuckDB marks rows deleted; their bytes stay in the file's blocks (and in
    freed blocks after a checkpoint) until the file is rewritten: this copies the database
    into a new file (``COPY FROM DATABASE``) and moves it over the old one. Run it after a
    batch of erasures, with the store not open elsewhere (``segmint privacy forget
    --compact``). ``project`` is a :class:`~segmint.project.Project` (its store is reopened
    on next use) or a store (closed: open a new one). Other stores: nothing to do here
    (PostgreSQL's ``VACUUM FULL`` rewrites a table; its dead tuples are not readable).

    Returns ``{"compacted": bool, "bytes_before": int, "bytes_after": int}``.
    """
    from segmint.store import ident

    store, _config = _resolve(project, config)
    path = Path(store.location)
    if store.dialect != "duckdb" or not path.is_file():
        return {"compacted": False, "bytes_before": 0, "bytes_after": 0}
    before = path.stat().st_size
    con = store._engine_connection()
    db = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    tmp = path.with_name(path.name + ".compact")
    tmp.unlink(missing_ok=True)
    con.execute(f"ATTACH {lit(str(tmp))} AS segmint_compact")
    try:
        con.execute(f"COPY FROM DATABASE {ident(str(db))} TO segmint_compact")
    finally:
        con.execute("DETACH segmint_compact")
    store.close()
    os.replace(tmp, path)
    if not isinstance(project, Store):
        project._store = None  # the project opens the new file on next use
    log.info("store %s compacted: %d -> %d bytes", path.name, before, path.stat().st_size)
    return {"compacted": True, "bytes_before": before, "bytes_after": path.stat().st_size}
