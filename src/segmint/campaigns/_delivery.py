"""Sending a plan: the delivery log and the hand-over journal, exactly once, resumable.

The guarantee, precisely
------------------------
Every message has an idempotency key ``campaign|user_id|step`` and one row in
``deliveries``. Sending a group of messages (``group_size``, default 100) is:

1. **claim**: the group's rows become ``sending`` (attempts + 1, claimed_at) in one commit,
   which also records the outcomes of the previous group;
2. **send**: each message is handed to its channel once. A channel that supports
   hand-over (e-mail, webhook; see ``_journal.py``) writes everything but the last piece
   of the message, appends ``H key`` to the project's journal file, writes the last piece,
   and the loop appends the answer (``O key status``). The journal is emptied after each
   commit.
3. **mark**: the outcomes are committed with the next claim.

A row that is ``sent`` is never sent again, by this run or any later one, whatever the
plan. A run killed at any point (SIGKILL included) leaves its last group in ``sending``
and the journal says, for each of them, whether the receiver got it whole. The next run
reads the journal first: a message with an answer gets that answer logged; a message
handed over whose answer was not seen is logged ``sent`` with ``ambiguous`` set
("unconfirmed", ``SendReport.unconfirmed``) and not sent again; a message not handed over
is sent again, which is safe because its receiver dropped the incomplete message. So
every treated user receives exactly one message, except in one window of two consecutive
system calls (the journal line and the last piece) where a kill would lose that message
(logged unconfirmed) rather than duplicate it.

Channels without hand-over (file export, custom channels) keep the simpler rule: a row
found ``sending`` is sent again with the same Message-ID / Idempotency-Key, flagged
``ambiguous`` (``SendReport.resent_ambiguous``); at most ``group_size`` of them.

Everything else is exact: a message is either in the log as sent, or it is sent by the
next run; nothing is lost and nothing else is sent twice. Control users have no delivery
rows at all. ``failed`` rows are retried by later runs until ``playbook.max_attempts``;
``rejected`` rows (invalid address, 4xx) never are. Consent, unsubscribes and suppressions
are checked again when a run starts: rows whose user opted out since the plan become
``skipped``. Two processes never send the same campaign at once (the journal's lock).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint._playbook import (
    CampaignSpec,
    EmailChannelSpec,
    FileChannelSpec,
    FrequencyCap,
    PromotionTrigger,
    WebhookChannelSpec,
)
from segmint.campaigns._channels import (
    Channel,
    ChannelUnavailable,
    DeliveryResult,
    EmailChannel,
    FileChannel,
    Message,
    WebhookChannel,
    channel_domain,
)
from segmint.campaigns._journal import DeliveryJournal, JournalBusy, journal_path
from segmint.campaigns._messages import MessageBuilder, PreparedMessage, Recs
from segmint.campaigns._plan import CampaignPlan, _campaign, latest_plan, load_plan, plan_campaign
from segmint.errors import ConfigError, DeliveryError, SegmintError, TemplateError
from segmint.store import Store, latest_consent_sql, lit, ts_lit

if TYPE_CHECKING:
    from segmint.config import Config

__all__ = ["SendReport", "delivery_log", "make_channel", "send_campaign"]

log = logging.getLogger(__name__)

RETRYABLE = ("pending", "sending", "failed")


@dataclass
class SendReport:
    """What one ``send_campaign`` call did, and where the plan stands after it.

    Attributes
    ----------
    sent : int
        Messages sent by this call (``resent_ambiguous`` included).
    resent_ambiguous : int
        Messages found in ``sending`` (a killed run's last message) and sent again with
        the same Message-ID.
    failed, rejected, skipped : int
        Attempts of this call that failed (retryable), were refused for good, or were
        skipped because the user opted out since the plan.
    capped : int
        Messages not sent because the frequency cap was reached at send time: messages of
        other campaigns (or steps) sent or claimed since the plan already fill the user's
        window. Their rows are ``skipped``.
    deferred : int
        Messages left pending because their strategy's ``timing.not_before`` is later
        than today (a later run sends them).
    already_sent : int
        Treatment users whose message was sent before this call (by an earlier run).
    recovered : int
        Messages a killed run had handed over and got an answer for, before it could log
        it: their outcome is taken from the hand-over journal (not sent again).
    unconfirmed : int
        Messages a killed run had handed over in full without seeing the answer: logged
        ``sent`` with ``ambiguous`` set, not sent again (a resend could duplicate them).
    totals : dict
        Rows of the plan's delivery log by status after this call.
    """

    run_id: str
    campaign: str
    n_treatment: int
    n_control: int
    sent: int = 0
    resent_ambiguous: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: int = 0
    capped: int = 0
    deferred: int = 0
    already_sent: int = 0
    recovered: int = 0
    unconfirmed: int = 0
    seconds: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, int] = field(default_factory=dict)
    complete: bool = False

    @property
    def messages_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["messages_per_second"] = round(self.messages_per_second, 1)
        return d


class _RateLimiter:
    """At most ``rate`` calls per second (evenly spaced)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next > now:
            time.sleep(self.next - now)
            now = self.next
        self.next = max(self.next, now) + self.interval


def make_channel(config: Config, name: str, *, campaign: str, run_id: str) -> Channel:
    """The channel object for ``playbook.channels[name]``."""
    spec = config.playbook.channels[name]
    if isinstance(spec, EmailChannelSpec):
        return EmailChannel(spec, name)
    if isinstance(spec, WebhookChannelSpec):
        return WebhookChannel(spec, name)
    assert isinstance(spec, FileChannelSpec)
    path = spec.path.format(campaign=campaign, run_id=run_id, format=spec.format)
    p = Path(path)
    return FileChannel(spec, p if p.is_absolute() else config.root / p, name)


def _counts(store: Store, run_id: str) -> dict[str, int]:
    frame = store.query(
        f"SELECT status, count(*) AS n FROM deliveries WHERE run_id = {lit(run_id)} GROUP BY status"
    )
    return {str(s): int(n) for s, n in zip(frame["status"], frame["n"], strict=True)}


def delivery_log(store: Store, campaign: str | None = None) -> pd.DataFrame:
    """The delivery log (optionally of one campaign), newest first."""
    where = f"WHERE campaign = {lit(campaign)}" if campaign else ""
    return store.query(
        "SELECT idempotency_key, campaign, run_id, user_id, step, channel, status, attempts, "
        "ambiguous, message_id, error, claimed_at, sent_at FROM deliveries "
        f"{where} ORDER BY coalesce(sent_at, claimed_at, created_at) DESC"
    )


def _pick_plan(
    store: Store,
    config: Config,
    name: str,
    resume: bool,
    plan: CampaignPlan | str | None,
    recs: Recs | None,
) -> CampaignPlan:
    if isinstance(plan, CampaignPlan):
        return plan
    if isinstance(plan, str):
        return load_plan(store, plan)
    last = latest_plan(store, name) if resume else None
    if last is not None and last.status in ("planned", "sending"):
        return last
    return plan_campaign(store, config, name, recs=recs)


def _skip_opted_out(store: Store, config: Config, run_id: str, purpose: str) -> int:
    """Rows of the run whose user unsubscribed, lost consent or was suppressed since the
    plan become ``skipped``; returns how many."""
    pieces = []
    for name, spec in config.playbook.channels.items():
        pieces.append(f"({lit(name)}, {lit(spec.consent)})")
    if not pieces:
        return 0
    run_users = f"SELECT user_id FROM deliveries WHERE run_id = {lit(run_id)}"
    cond = f"""
        d.run_id = {lit(run_id)} AND d.status IN ('pending', 'failed') AND (
          EXISTS (SELECT 1 FROM suppressions s WHERE (s.user_id = d.user_id)
                  AND (s.channel IS NULL OR s.channel = d.channel))
          OR EXISTS (SELECT 1 FROM ({latest_consent_sql(run_users)}) l
             WHERE l.user_id = d.user_id AND NOT l.granted AND (l.source = 'unsubscribe' OR (
                   l.purpose = {lit(purpose)} AND l.channel = (
                       SELECT m.consent FROM (VALUES {", ".join(pieces)}) AS m(channel, consent)
                       WHERE m.channel = d.channel)))))"""
    n = int(store.scalar(f"SELECT count(*) FROM deliveries d WHERE {cond}") or 0)
    if n:
        store.execute(
            "UPDATE deliveries SET status = 'skipped', error = 'opted out or suppressed since "
            f"the plan', updated_at = {ts_lit(datetime.now(UTC))} WHERE idempotency_key IN "
            f"(SELECT d.idempotency_key FROM deliveries d WHERE {cond})"
        )
    return n


SEND_LOCK = "campaign-send"
"""The store lock held while a group of messages is checked against the frequency cap and
claimed: two sends of different campaigns never both pass the check for one user."""

CAP_ERROR = "frequency cap reached at send time"


def _capped_at_send_time(
    store: Store, keys: list[str], cap: FrequencyCap, now: datetime
) -> dict[str, int]:
    """The messages among ``keys`` whose user already has ``cap.max_messages`` other
    messages sent or claimed in the cap's window, with that count; they become
    ``skipped``. Run under :data:`SEND_LOCK` in the transaction that claims the others."""
    since = ts_lit(now - timedelta(days=cap.window_days))
    frame = store.query(
        "SELECT c.idempotency_key AS idempotency_key, count(*) AS n FROM deliveries c "
        "JOIN deliveries o ON o.user_id = c.user_id AND o.idempotency_key <> c.idempotency_key "
        f"WHERE c.idempotency_key IN ({', '.join(lit(k) for k in keys)}) "
        f"AND o.status IN ('sent', 'sending') AND coalesce(o.sent_at, o.claimed_at) >= {since} "
        f"GROUP BY c.idempotency_key HAVING count(*) >= {int(cap.max_messages)}"
    )
    capped = {str(k): int(n) for k, n in zip(frame["idempotency_key"], frame["n"], strict=True)}
    by_n: dict[int, list[str]] = {}
    for key, n in capped.items():
        by_n.setdefault(n, []).append(key)
    for n, group in by_n.items():
        error = f"{CAP_ERROR}: {n} messages in the last {cap.window_days} days"
        store.execute(
            f"UPDATE deliveries SET status = 'skipped', error = {lit(error)}, "
            f"updated_at = {ts_lit(now)} WHERE idempotency_key IN "
            f"({', '.join(lit(k) for k in group)})"
        )
    return capped


def _pending_channels(
    store: Store, run_id: str, max_attempts: int, deferred_segments: list[str], control: str
) -> list[str]:
    """The channels with messages of the plan's treated arms still to send (not
    deferred)."""
    later = (
        f"AND a.segment NOT IN ({', '.join(lit(s) for s in deferred_segments)}) "
        if deferred_segments
        else ""
    )
    frame = store.query(
        "SELECT DISTINCT coalesce(d.channel, a.channel) AS channel FROM campaign_audiences a "
        "LEFT JOIN deliveries d ON d.idempotency_key = a.idempotency_key "
        f"WHERE a.run_id = {lit(run_id)} AND a.arm <> {lit(control)} {later}"
        "AND (d.idempotency_key IS NULL OR d.status IN ('pending', 'sending') OR "
        f"(d.status = 'failed' AND d.attempts < {int(max_attempts)}) OR "
        f"(d.status = 'skipped' AND d.error LIKE {lit(CAP_ERROR + '%')})) ORDER BY channel"
    )
    return [str(c) for c in frame["channel"]]


def _preflight(
    name: str,
    run_id: str,
    needed: list[str],
    build: Callable[[str], Channel],
    builder: Callable[[], MessageBuilder],
    report: SendReport,
) -> tuple[dict[str, Channel], MessageBuilder]:
    """Before the first claim: every channel with work pending is checked (secrets set,
    host reachable, folder writable) and left open, and every template the plan needs
    renders on the full field schema and on the first user of each segment. Every
    problem is listed in one error (ConfigError when one is a configuration problem,
    else DeliveryError); nothing is sent and the plan is not touched."""
    problems: list[SegmintError] = []
    ready: dict[str, Channel] = {}
    for ch in needed:
        try:
            obj = build(ch)
            found = obj.preflight()
        except SegmintError as exc:
            found = [exc]
        if found:
            problems += found
        else:
            ready[ch] = obj
    made: MessageBuilder | None = None
    try:
        made = builder()
        if needed:  # nothing left to send: nothing to render
            made.check_templates(made.first_contexts())
    except SegmintError as exc:  # a template that no longer compiles or renders
        problems.append(exc)
    if not problems:
        assert made is not None
        return ready, made
    _close_all(ready)
    listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    message = (
        f"campaign {name!r}, plan {run_id}: nothing was sent and the plan is unchanged; "
        f"fix {'this' if len(problems) == 1 else f'these {len(problems)} problems'} "
        f"first, then run `segmint campaign send {name}` again: {listed}"
    )
    if any(isinstance(p, ConfigError) for p in problems):
        raise ConfigError(message)
    raise DeliveryError(message, report=report)


def _enter_plan(
    store: Store, config: Config, name: str, run_id: str, max_attempts: int, control: str
) -> None:
    """One transaction: a pending delivery row for each message of the plan's treated arms
    (every arm but ``control``) not in the log yet; the unfinished rows of earlier plans
    of the same messages move to this plan; the plan is ``sending``."""
    now_lit = ts_lit(datetime.now(UTC))
    treated = f"a.arm <> {lit(control)}"
    with store.transaction():
        domains = " ".join(
            f"WHEN {lit(ch)} THEN {lit(channel_domain(cs))}"
            for ch, cs in config.playbook.channels.items()
        )
        domain_sql = (
            f"CASE a.channel {domains} ELSE 'segmint.local' END" if domains else "'segmint.local'"
        )
        store.execute(
            "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, channel, "
            "status, attempts, ambiguous, message_id, created_at) SELECT a.idempotency_key, "
            "a.campaign, a.run_id, a.user_id, a.step, a.channel, 'pending', 0, FALSE, "
            f"'<' || md5(a.idempotency_key) || '@' || {domain_sql} || '>', {now_lit} "
            f"FROM campaign_audiences a WHERE a.run_id = {lit(run_id)} AND {treated} "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.idempotency_key = a.idempotency_key) "
            "AND NOT EXISTS (SELECT 1 FROM campaign_assignments x WHERE x.campaign = a.campaign "
            f"AND x.user_id = a.user_id AND x.arm = {lit(control)})"
        )
        # messages an earlier plan skipped at send time for the frequency cap: this plan
        # found the user under the cap again, so they are pending here
        store.execute(
            f"UPDATE deliveries SET status = 'pending', error = NULL, run_id = {lit(run_id)} "
            f"WHERE run_id <> {lit(run_id)} AND campaign = {lit(name)} AND status = 'skipped' "
            f"AND error LIKE {lit(CAP_ERROR + '%')} AND idempotency_key IN "
            "(SELECT a.idempotency_key FROM campaign_audiences a WHERE a.run_id = "
            f"{lit(run_id)} AND {treated})"
        )
        # unfinished rows of an earlier plan of the same messages move to this plan
        store.execute(
            f"UPDATE deliveries SET run_id = {lit(run_id)} WHERE run_id <> {lit(run_id)} "
            f"AND campaign = {lit(name)} AND (status IN ('pending', 'sending') OR "
            f"(status = 'failed' AND attempts < {int(max_attempts)})) AND idempotency_key IN "
            "(SELECT a.idempotency_key FROM campaign_audiences a WHERE a.run_id = "
            f"{lit(run_id)} AND {treated})"
        )
        store.execute(f"UPDATE campaign_runs SET status = 'sending' WHERE run_id = {lit(run_id)}")


def _close_all(channels: Mapping[str, Channel]) -> None:
    for obj in channels.values():
        try:
            obj.close()
        except Exception:  # closing must not hide the real outcome
            log.warning("closing channel %s failed", obj.name, exc_info=True)


def _reconcile(store: Store, journal: DeliveryJournal) -> tuple[int, int]:
    """Apply a killed run's hand-over journal to its ``sending`` rows; returns (outcomes
    recovered, hand-overs without an answer). Rows not in the journal stay ``sending``
    and are sent again: their receiver never got the whole message."""
    entries = journal.read()
    if not entries:
        journal.clear()
        return 0, 0
    keys = list(entries)
    sending = set(
        store.query(
            "SELECT idempotency_key FROM deliveries WHERE status = 'sending' AND "
            f"idempotency_key IN ({', '.join(lit(k) for k in keys)})"
        )["idempotency_key"].astype(str)
    )
    ts = datetime.now(UTC)
    recovered = unconfirmed = 0
    with store.transaction():
        for key in sorted(sending):
            e = entries[key]
            if e.status is not None:
                status, error, amb = e.status, e.error, e.ambiguous
                recovered += 1
            else:
                status, amb = "sent", True
                error = "unconfirmed: handed over in full, the run ended before the answer"
                unconfirmed += 1
            store.execute(
                "UPDATE deliveries SET status = ?, error = ?, ambiguous = ?, sent_at = ?, "
                "updated_at = ? WHERE idempotency_key = ?",
                [status, error, amb, ts if status == "sent" else None, ts, key],
            )
    journal.clear()
    if recovered or unconfirmed:
        log.warning(
            "hand-over journal %s: %d outcome(s) of a killed run recorded, %d message(s) "
            "handed over without an answer logged as sent (unconfirmed), none sent again",
            journal.path,
            recovered,
            unconfirmed,
        )
    return recovered, unconfirmed


# --- the staged sender: claim, render, hand over, record ---------------------------------
#
# A send is a loop over batches (``batch_size`` rows rendered per round trip) and, within
# a batch, over groups (``group_size`` messages claimed per commit). Each step is a named
# stage below; the state they share (outcomes not yet committed, claims not yet sent, the
# open channels and their rate limiters, the failure streak) lives in one ``_Sender``.

Mark = tuple[str, str, DeliveryResult, bool]
"""An outcome not yet committed: key, message_id, result, resent-after-an-unclear-end."""


def _todo_where(run_id: str, max_attempts: int) -> str:
    """The rows of the run still to send (``d`` is ``deliveries``)."""
    return (
        f"d.run_id = {lit(run_id)} AND (d.status IN ('pending', 'sending') OR "
        f"(d.status = 'failed' AND d.attempts < {int(max_attempts)}))"
    )


def _next_batch(store: Store, todo_where: str, after_key: str, batch_size: int) -> pd.DataFrame:
    """The next ``batch_size`` rows to send (key and status), in key order after
    ``after_key``."""
    return store.query(
        "SELECT d.idempotency_key AS idempotency_key, d.status AS status "
        f"FROM deliveries d WHERE {todo_where} AND d.idempotency_key > {lit(after_key)} "
        f"ORDER BY d.idempotency_key LIMIT {int(batch_size)}"
    )


def _render_batch(
    builder: MessageBuilder,
    keys: list[str],
    deferred_segments: list[str],
    *,
    name: str,
    n_sent: int,
) -> tuple[list[PreparedMessage], int]:
    """Render stage: the messages of ``keys``, less those of deferred segments (returned
    as a count). A template error names the campaign and how to resume."""
    rows = builder.rows("a.idempotency_key IN (" + ", ".join(lit(k) for k in keys) + ")")
    n_deferred = 0
    if deferred_segments:
        later = rows["segment"].isin(deferred_segments)
        n_deferred = int(later.sum())
        rows = rows[~later].reset_index(drop=True)
    try:
        return builder.messages(rows), n_deferred
    except TemplateError as exc:  # a user the checks before the send did not try
        raise TemplateError(
            f"campaign {name!r}: {exc}. Nothing of this batch was sent ({n_sent:,} "
            f"sent before it); fix the template and run `segmint campaign send {name}` "
            "to resume"
        ) from None


def _record_outcomes(
    store: Store, marks: list[Mark], unattempted: Mapping[str, str], ts: datetime
) -> None:
    """Record stage, inside the caller's transaction: the outcomes in ``marks`` (one
    statement per kind of outcome; in a group usually all 'sent'), and the claimed but
    never attempted rows back to the status they had (``unattempted``: key -> status)."""
    by_outcome: dict[tuple[str, str | None, bool], list[str]] = {}
    for key, _message_id, result, amb in marks:
        outcome = (result.status, result.error, bool(amb or result.ambiguous))
        by_outcome.setdefault(outcome, []).append(key)
    for (status, error, amb), keys in by_outcome.items():
        store.execute(
            "UPDATE deliveries SET status = ?, error = ?, ambiguous = ?, sent_at = ?, "
            f"updated_at = ? WHERE idempotency_key IN ({', '.join('?' * len(keys))})",
            [status, error, amb, ts if status == "sent" else None, ts, *keys],
        )
    for key, status in unattempted.items():  # back to what they were
        store.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts - 1, updated_at = ? "
            "WHERE idempotency_key = ?",
            [status, ts, key],
        )


def _claim_group(store: Store, keys: list[str], cap: FrequencyCap, ts: datetime) -> dict[str, int]:
    """Claim stage, inside the caller's transaction holding :data:`SEND_LOCK`: the rows of
    ``keys`` become ``sending`` (attempts + 1), less those whose user reached the
    frequency cap since the plan (skipped; returned with their count)."""
    capped = _capped_at_send_time(store, keys, cap, ts)
    keys = [k for k in keys if k not in capped]
    if keys:
        store.execute(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, "
            "claimed_at = ?, updated_at = ? WHERE idempotency_key IN "
            f"({', '.join('?' * len(keys))})",
            [ts, ts, *keys],
        )
    return capped


class _Sender:
    """The state of one send between two commits, and the stages that change it.

    ``marks`` holds the outcomes seen since the last commit, ``unattempted`` the rows
    claimed by the last commit and not handed to their channel yet (key -> the status to
    go back to), ``channels`` the open channels (with their ``limiters``), ``consecutive``
    the failure streak and ``done`` the messages settled (progress)."""

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        run_id: str,
        report: SendReport,
        journal: DeliveryJournal | None,
        channels: dict[str, Channel],
        build: Callable[[str], Channel],
        cap: FrequencyCap,
        todo_where: str,
        started: float,
        max_consecutive_failures: int,
        after_claim: Callable[[PreparedMessage], None] | None = None,
        after_send: Callable[[PreparedMessage, DeliveryResult], None] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.run_id = run_id
        self.report = report
        self.journal = journal
        self.channels = channels
        self.build = build
        self.cap = cap
        self.todo_where = todo_where
        self.started = started
        self.max_consecutive_failures = max_consecutive_failures
        self.after_claim = after_claim
        self.after_send = after_send
        self.limiters: dict[str, _RateLimiter] = {}
        self.marks: list[Mark] = []
        self.unattempted: dict[str, str] = {}
        self.consecutive = 0
        self.done = 0

    def commit(
        self, claims: list[PreparedMessage], prior: dict[str, str], *, settled: bool = True
    ) -> set[str]:
        """One transaction: the outcomes of the messages sent since the last commit, the
        release of claimed-but-unsent rows, and the claims of the next group, less those
        whose user reached the frequency cap since the plan (returned; they are skipped).
        The cap check and the claims hold :data:`SEND_LOCK`. ``settled``: every message
        handed over since the last commit has its outcome in ``marks`` (not so when an
        exception interrupted a send), so the journal can be emptied."""
        ts = datetime.now(UTC)
        capped: dict[str, int] = {}
        with self.store.lock(SEND_LOCK) if claims else self.store.transaction():
            _record_outcomes(self.store, self.marks, self.unattempted, ts)
            if claims:
                keys = [c.message.idempotency_key for c in claims]
                capped = _claim_group(self.store, keys, self.cap, ts)
        if self.journal is not None and settled:
            self.journal.clear()  # its entries are in the log now
        self.marks.clear()
        self.unattempted.clear()
        self.unattempted.update({k: v for k, v in prior.items() if k not in capped})
        self.report.capped += len(capped)
        return set(capped)

    def _handed_over(self, message: Message) -> None:
        assert self.journal is not None
        self.journal.handed_over(message.idempotency_key)

    def channel(self, ch: str) -> Channel:
        """The open channel ``ch`` (opened now if its rows came in after the preflight),
        wired to the journal and given its rate limiter on first use."""
        if ch not in self.channels:  # not in the preflight (its rows came in since)
            obj = self.build(ch)
            obj.open()
            self.channels[ch] = obj
        obj = self.channels[ch]
        if ch not in self.limiters:
            if self.journal is not None and obj.supports_handover:
                obj.on_handover = self._handed_over
            self.limiters[ch] = _RateLimiter(obj.rate_per_second)
        return obj

    def send_batch(
        self, prepared: list[PreparedMessage], status_of: dict[str, str], group: int
    ) -> None:
        """Claim each group of ``prepared`` (committing the previous group's outcomes),
        then hand its messages over one by one and note their outcomes."""
        for start in range(0, len(prepared), group):
            chunk = prepared[start : start + group]
            # mark the previous group, claim this one: one commit
            capped = self.commit(
                chunk,
                {pm.message.idempotency_key: status_of[pm.message.idempotency_key] for pm in chunk},
            )
            self.done += len(capped)
            for pm in chunk:
                if pm.message.idempotency_key in capped:
                    continue
                if self.after_claim is not None:
                    self.after_claim(pm)
                result, was_ambiguous = self.hand_over(pm, status_of[pm.message.idempotency_key])
                self.note(pm, result, was_ambiguous)

    def hand_over(self, pm: PreparedMessage, prior_status: str) -> tuple[DeliveryResult, bool]:
        """Hand-over stage: send one claimed message (rate-limited) and journal its
        answer; returns the result and whether it is a resend after an unclear end. An
        unavailable channel records what was done and stops the send (DeliveryError)."""
        m = pm.message
        try:
            ch = self.channel(pm.channel)
            # a row left 'sending' by a killed run: with the hand-over journal its receiver
            # never got it whole (resending is safe); without, its fate is unknown and the
            # resend is flagged
            journaled = self.journal is not None and ch.supports_handover
            was_ambiguous = prior_status == "sending" and not journaled
            self.limiters[pm.channel].wait()
            # from here on the fate is unknown until marked: no revert
            self.unattempted.pop(m.idempotency_key, None)
            result = ch.send(m)
        except ChannelUnavailable as exc:
            self.unattempted.pop(m.idempotency_key, None)
            self.marks.append(
                (m.idempotency_key, m.message_id, DeliveryResult("failed", str(exc)), False)
            )
            self.commit([], {})
            self.report.failed += 1
            self.finish(False)
            report = self.report
            raise DeliveryError(
                f"campaign {self.name!r}: {exc}. Sent {report.sent:,} now "
                f"({report.already_sent:,} before); the rest stay in the delivery "
                f"log and `segmint campaign send {self.name}` resumes",
                report=report,
            ) from None
        if journaled:
            assert self.journal is not None
            self.journal.outcome(m.idempotency_key, result.status, result.error, result.ambiguous)
        return result, was_ambiguous

    def note(self, pm: PreparedMessage, result: DeliveryResult, was_ambiguous: bool) -> None:
        """Record stage, in memory: the outcome joins ``marks`` (committed with the next
        claim) and the report's counts; too many failures in a row stop the send."""
        if self.after_send is not None:
            self.after_send(pm, result)
        m = pm.message
        self.marks.append((m.idempotency_key, m.message_id, result, was_ambiguous))
        self.done += 1
        report = self.report
        if result.status == "sent":
            report.sent += 1
            report.by_channel[pm.channel] = report.by_channel.get(pm.channel, 0) + 1
            if was_ambiguous:
                report.resent_ambiguous += 1
            self.consecutive = 0
            return
        if result.status == "failed":
            report.failed += 1
        else:
            report.rejected += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive_failures:
            self.commit([], {})
            self.finish(False)
            raise DeliveryError(
                f"campaign {self.name!r}: {self.consecutive} failures in a row, the last: "
                f"{result.error}; stopped. Every attempt is in the delivery log; "
                f"fix the channel and run `segmint campaign send {self.name}` again",
                report=report,
            )

    def finish(self, complete: bool) -> SendReport:
        """The report's totals and time; the plan is ``completed`` when nothing is left."""
        report = self.report
        report.seconds = time.perf_counter() - self.started
        report.totals = _counts(self.store, self.run_id)
        left = int(
            self.store.scalar(f"SELECT count(*) FROM deliveries d WHERE {self.todo_where}") or 0
        )
        report.complete = complete and left == 0
        if report.complete:
            self.store.execute(
                f"UPDATE campaign_runs SET status = 'completed' WHERE run_id = {lit(self.run_id)}"
            )
        return report

    def run(
        self,
        builder: MessageBuilder,
        deferred_segments: list[str],
        *,
        batch_size: int,
        group: int,
        total: int,
        callback: Callable[[int, int], None] | None,
    ) -> SendReport:
        """Every batch: render, then claim/hand over/record group by group. On any
        exception the outcomes so far are recorded first; the channels and the journal
        are closed whatever happens (the journal file goes only on success)."""
        succeeded = False
        last_key = ""
        try:
            while True:
                batch = _next_batch(self.store, self.todo_where, last_key, batch_size)
                if batch.empty:
                    break
                keys = batch["idempotency_key"].astype(str).tolist()
                last_key = keys[-1]
                status_of = dict(zip(keys, batch["status"].astype(str), strict=True))
                prepared, n_deferred = _render_batch(
                    builder, keys, deferred_segments, name=self.name, n_sent=self.report.sent
                )
                self.report.deferred += n_deferred
                self.send_batch(prepared, status_of, group)
                self.commit([], {})
                builder.audit()  # one personal.read entry per batch: the values it opened
                if callback is not None:
                    callback(self.done, total)
            succeeded = True
        except BaseException:
            if self.marks or self.unattempted:  # record the outcomes so far before giving up
                try:
                    self.commit([], {}, settled=False)  # the journal keeps the interrupted one
                except Exception:
                    log.warning("could not record the last deliveries", exc_info=True)
            raise
        finally:
            with contextlib.suppress(Exception):  # values opened by an interrupted batch
                builder.audit()
            _close_all(self.channels)
            if self.journal is not None:
                # on success everything is in the log: the file goes; else it stays for the
                # next run (emptied by the last commit, unless that commit failed)
                self.journal.close(remove=succeeded)
        return self.finish(True)


# --- before the first claim ----------------------------------------------------------------


def _register_files(
    store: Store,
    spec: CampaignSpec,
    plan: CampaignPlan,
    channels: Mapping[str, Channel],
    actor: str | None,
) -> None:
    """Each file channel that wrote messages this run: its file in the ``exports`` table
    (it holds contacts, for the campaign's purpose) and an ``export`` audit entry."""
    from segmint.profiles import new_record, record_export
    from segmint.store import append_audit

    for ch in channels.values():
        if not isinstance(ch, FileChannel) or not ch.n_new:
            continue
        try:
            record = new_record(
                "campaign-file", ch.csv_path, ch.spec.format, ch.n_new, contact=True,
                purpose=spec.purpose, campaign=plan.campaign, run_id=plan.run_id,
                command=f"segmint campaign send {plan.campaign}", actor=actor,
            )  # fmt: skip
            record_export(store, record)
            append_audit(store, record.actor or "cli", "export", record.export_id,
                         why=spec.purpose, kind="campaign-file", path=record.path,
                         n_rows=record.n_rows, channel=ch.name)  # fmt: skip
        except Exception:  # the messages went out; say so rather than hide the send's outcome
            log.warning("could not register the file of channel %s", ch.name, exc_info=True)
        ch.n_new = 0


def _open_journal(
    store: Store, config: Config, name: str, report: SendReport
) -> DeliveryJournal | None:
    """The campaign's hand-over journal (None when it cannot be written), after applying
    a killed run's entries to the log (``report.recovered/unconfirmed``)."""
    try:
        journal = DeliveryJournal.open_or_none(journal_path(config.root, name))
    except JournalBusy as exc:
        raise DeliveryError(
            f"campaign {name!r} is being sent by another process (it holds the lock on {exc}); "
            "wait for it to finish, or stop it and run the send again to resume"
        ) from None
    if journal is None:
        log.warning(
            "cannot write %s: without the hand-over journal a killed run resends its last message",
            journal_path(config.root, name),
        )
    else:
        report.recovered, report.unconfirmed = _reconcile(store, journal)
    return journal


def _deferred_segments(
    config: Config, spec: CampaignSpec, chosen: CampaignPlan, today: date
) -> list[str]:
    """The plan's segments whose strategy's ``timing.not_before`` is after today."""
    deferred = sorted(
        seg
        for seg, strategy in config.playbook.strategies.get(spec.segmentation, {}).items()
        if strategy.timing.not_before is not None and strategy.timing.not_before > today
    )
    if "*" in deferred:  # the catch-all strategy: every segment without its own
        own = set(config.playbook.strategies[spec.segmentation])
        deferred += [s for s in chosen.by_segment["segment"].astype(str) if s not in own]
    return deferred


def _enter_and_count(
    store: Store,
    config: Config,
    name: str,
    spec: CampaignSpec,
    chosen: CampaignPlan,
    report: SendReport,
) -> int:
    """Enter the plan in the log, skip users who opted out since, count what an earlier
    run sent (in ``report``); returns the number of messages to send."""
    run_id = chosen.run_id
    max_attempts = config.playbook.max_attempts
    _enter_plan(store, config, name, run_id, max_attempts, chosen.control)
    report.skipped = _skip_opted_out(store, config, run_id, spec.purpose)
    report.already_sent = int(
        store.scalar(
            "SELECT count(*) FROM campaign_audiences a JOIN deliveries d "
            "ON d.idempotency_key = a.idempotency_key WHERE a.run_id = "
            f"{lit(run_id)} AND a.arm <> {lit(chosen.control)} AND d.status = 'sent'"
        )
        or 0
    )
    todo = _todo_where(run_id, max_attempts)
    return int(store.scalar(f"SELECT count(*) FROM deliveries d WHERE {todo}") or 0)


def _get_ready(
    store: Store,
    config: Config,
    name: str,
    spec: CampaignSpec,
    chosen: CampaignPlan,
    report: SendReport,
    journal: DeliveryJournal | None,
    deferred: list[str],
    build: Callable[[str], Channel],
    recs: Recs | None,
) -> tuple[dict[str, Channel], MessageBuilder, int]:
    """The preflight (channels open, templates checked), then the plan entered in the log;
    returns the open channels, the message builder and the number of messages to send.
    On any error the channels and the journal are closed again."""
    run_id = chosen.run_id
    max_attempts = config.playbook.max_attempts
    try:
        open_channels, builder = _preflight(
            name,
            run_id,
            _pending_channels(store, run_id, max_attempts, deferred, chosen.control),
            build,
            lambda: MessageBuilder(
                store,
                config,
                name,
                run_id,
                chosen.segment_run_id,
                recs=recs,
                control=chosen.control,
            ),
            report,
        )
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    try:
        total = _enter_and_count(store, config, name, spec, chosen, report)
    except BaseException:
        _close_all(open_channels)
        if journal is not None:
            journal.close()
        raise
    return open_channels, builder, total


def _log_sent(report: SendReport) -> None:
    log.info(
        "campaign %s: run %s sent %d (%d resent after an unclear end), %d failed, "
        "%d rejected, %d skipped (opted out), %d skipped at the frequency cap in %.1fs",
        report.campaign,
        report.run_id,
        report.sent,
        report.resent_ambiguous,
        report.failed,
        report.rejected,
        report.skipped,
        report.capped,
        report.seconds,
    )


# long on purpose: a 58-line docstring; the ~55-line body is a list of named stages
def send_campaign(
    store: Store,
    config: Config,
    name: str,
    *,
    resume: bool = True,
    plan: CampaignPlan | str | None = None,
    channels: Mapping[str, Channel] | None = None,
    batch_size: int = 500,
    group_size: int = 100,
    max_consecutive_failures: int = 50,
    recs: Recs | None = None,
    callback: Callable[[int, int], None] | None = None,
    actor: str | None = None,
    _after_claim: Callable[[PreparedMessage], None] | None = None,
    _after_send: Callable[[PreparedMessage, DeliveryResult], None] | None = None,
) -> SendReport:
    """Send a campaign's plan to its treatment group, exactly once per message.

    See the module docstring (and docs/campaigns.md) for the precise guarantee.

    Parameters
    ----------
    store : segmint.store.Store
        The store holding the plan and the delivery log.
    config : segmint.Config
        The project configuration.
    name : str
        The campaign.
    resume : bool, default True
        Continue the latest plan when it is not finished (planned or sending); otherwise,
        and with ``resume=False``, plan anew first (users already sent this message by an
        earlier plan are still never sent it again: the key is per campaign, user, step).
    plan : CampaignPlan or str, optional
        Send this plan (or run id) instead.
    channels : mapping, optional
        Channel objects by name, replacing those built from the playbook (tests, custom
        channels).
    batch_size : int, default 500
        Messages rendered per store round trip.
    group_size : int, default 100
        Messages claimed per commit of the log (DuckDB: about 1-4 ms a commit, so per
        message commits cap a send at a few hundred messages/s). With hand-over channels
        (e-mail, webhook) and the file channel the group size changes nothing in the
        guarantee; a custom channel without hand-over resends up to ``group_size``
        messages with their original ids after a kill (1 gives the tightest bound).
    max_consecutive_failures : int, default 50
        Stop (DeliveryError) after this many failures in a row.
    recs : mapping, optional
        user_id -> recommendations, instead of the stored batch run.
    callback : callable, optional
        ``callback(done, total)`` after each batch (progress bars).
    actor : str, optional
        Who sends, for the audit log's ``personal.read`` entries (one per batch: the
        values opened to render it); the operating-system user by default.

    Returns
    -------
    SendReport

    Raises
    ------
    segmint.errors.DeliveryError
        When a channel is unavailable or fails too often; the log holds every attempt and a
        rerun resumes. ``exc.report`` has the counts so far.
    """
    started = time.perf_counter()
    spec = _campaign(config, name)
    chosen = _pick_plan(store, config, name, resume, plan, recs)
    run_id = chosen.run_id
    today = datetime.now(UTC).date()
    if isinstance(spec.trigger, PromotionTrigger) and today > spec.trigger.end:
        raise DeliveryError(
            f"campaign {name!r}: the promotion ended on {spec.trigger.end}; nothing was sent"
        )
    report = SendReport(run_id, name, chosen.n_treatment, chosen.n_control)
    journal = _open_journal(store, config, name, report)
    deferred = _deferred_segments(config, spec, chosen, today)
    max_attempts = config.playbook.max_attempts
    provided = dict(channels or {})

    def build(ch: str) -> Channel:
        return provided.get(ch) or make_channel(config, ch, campaign=name, run_id=run_id)

    open_channels, builder, total = _get_ready(
        store, config, name, spec, chosen, report, journal, deferred, build, recs
    )
    builder.actor = actor
    sender = _Sender(
        store,
        name=name,
        run_id=run_id,
        report=report,
        journal=journal,
        channels=open_channels,
        build=build,
        cap=spec.frequency_cap or config.playbook.frequency_cap,
        todo_where=_todo_where(run_id, max_attempts),
        started=started,
        max_consecutive_failures=max_consecutive_failures,
        after_claim=_after_claim,
        after_send=_after_send,
    )
    try:
        sender.run(
            builder,
            deferred,
            batch_size=batch_size,
            group=max(1, int(group_size)),
            total=total,
            callback=callback,
        )
    finally:
        _register_files(store, spec, chosen, open_channels, actor)
    _log_sent(report)
    return report
