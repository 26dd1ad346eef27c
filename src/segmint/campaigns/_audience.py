"""Audience building as SQL in the store: segment members, trigger, consent, unsubscribes,
suppressions, frequency cap and a usable address, every exclusion counted by reason.

A channel that hands the audience to a third party (a webhook or file channel: ``shares``)
is closed to people who opted out of the sale or sharing of their data (CCPA "do not sell
or share", :func:`segmint.store.sale_or_share_opt_outs_sql`), as a suppression of that
channel: they are reached on another channel of their strategy or counted ``suppressed``.

The SQL is compiled by :func:`audience_sql` (a string a test can read, DuckDB dialect,
transpiled for PostgreSQL by the store) and then run once into a temporary table; the
funnel is one ``GROUP BY reason`` over it, and the holdout split one ``INSERT ... SELECT``.
No Python loop touches a user.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from segmint._playbook import (
    BirthdayTrigger,
    FrequencyCap,
    LifecycleTransitionTrigger,
    PromotionTrigger,
    Trigger,
)
from segmint.store import (
    PREFIX,
    Store,
    Vault,
    latest_consent_sql,
    lit,
    sale_or_share_opt_outs_sql,
    ts_lit,
)

__all__ = [
    "REASONS",
    "AudienceSpec",
    "ChannelRow",
    "audience_sql",
    "bucket_sql",
    "hash_sql",
    "email_key_sql",
    "holdout_bucket",
    "index_suppressions",
    "usable_email_sql",
]

EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
"""What a usable e-mail address looks like (one @, a dotted domain, no spaces)."""

NOT_TRIGGERED = "not triggered"
NOT_NEW = "already in the segment at the previous run"
UNSUBSCRIBED = "unsubscribed"
NO_CONSENT = "no consent for the channel and purpose"
SUPPRESSED = "suppressed"
CAPPED = "frequency cap reached"
NO_ADDRESS = "no usable address"

REASONS = (NOT_TRIGGERED, NOT_NEW, UNSUBSCRIBED, NO_CONSENT, SUPPRESSED, CAPPED, NO_ADDRESS)
"""Exclusion reasons in funnel order: a user is counted under the first that applies."""

_HEX = "0123456789abcdef"
_N_HEX = 13  # 52 bits: exact in a double


def holdout_bucket(campaign: str, user_id: str) -> float:
    """The user's stable uniform number in [0, 1) for ``campaign`` (md5 of
    ``campaign:user_id``, first 52 bits). Users below the holdout share are the control."""
    digest = hashlib.md5(f"{campaign}:{user_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:_N_HEX], 16) / 16**_N_HEX


def hash_sql(campaign: str, user_col: str) -> str:
    """SQL for the hex md5 of ``campaign:user_id`` (compute once, then :func:`bucket_sql`)."""
    return f"md5({lit(campaign + ':')} || {user_col})"


def bucket_sql(hash_col: str) -> str:
    """SQL turning a :func:`hash_sql` column into :func:`holdout_bucket`'s number
    (DuckDB and PostgreSQL alike)."""
    terms = [
        f"(strpos('{_HEX}', substr({hash_col}, {i + 1}, 1)) - 1) * {16 ** (_N_HEX - 1 - i)}.0"
        for i in range(_N_HEX)
    ]
    return f"(({' + '.join(terms)}) / {16**_N_HEX}.0)"


@dataclass(frozen=True)
class ChannelRow:
    """One candidate channel of a segment's strategy, in order of preference."""

    segment: str
    pref: int
    channel: str
    consent: str
    address: str  # 'email' or 'user_id'
    shares: bool = False  # hands the audience to a third party (webhook, file)


@dataclass(frozen=True)
class AudienceSpec:
    """Everything the audience SQL needs, resolved from the playbook and the store."""

    campaign: str
    segment_run_id: str
    previous_run_id: str | None
    segments: tuple[str, ...]
    channels: tuple[ChannelRow, ...]
    purpose: str
    trigger: Trigger
    as_of: date
    now: datetime
    cap: FrequencyCap
    step: str | None = None


def _birthday_days(as_of: date, within_days: int) -> list[int]:
    """month*100+day of every day from ``as_of`` to ``as_of + within_days``; a 29 February
    birthday counts on 28 February in years without one."""
    days: set[int] = set()
    for k in range(within_days + 1):
        d = as_of + timedelta(days=k)
        days.add(d.month * 100 + d.day)
        leap = d.year % 4 == 0 and (d.year % 100 != 0 or d.year % 400 == 0)
        if d.month == 2 and d.day == 28 and not leap:
            days.add(229)
    return sorted(days)


def _trigger_sql(spec: AudienceSpec) -> tuple[str, str]:
    """(condition on users ``u`` that the trigger holds, the per-user step expression)."""
    trig = spec.trigger
    if isinstance(trig, BirthdayTrigger):
        mmdd = "u.birthday_md"  # month * 100 + day, kept in clear (the birthday is sealed)
        days = ", ".join(str(d) for d in _birthday_days(spec.as_of, trig.within_days))
        today = spec.as_of.month * 100 + spec.as_of.day
        year = (
            f"CAST(CASE WHEN {mmdd} >= {today} THEN {spec.as_of.year} "
            f"ELSE {spec.as_of.year + 1} END AS VARCHAR)"
        )
        step = f"{lit((spec.step or 'birthday') + '-')} || {year}"
        return f"({mmdd} IS NOT NULL AND {mmdd} IN ({days}))", step
    if isinstance(trig, PromotionTrigger):
        inside = trig.start <= spec.as_of <= trig.end
        return ("TRUE" if inside else "FALSE"), lit(spec.step or f"promotion-{trig.start}")
    if isinstance(trig, LifecycleTransitionTrigger):
        return "TRUE", lit(spec.step or spec.segment_run_id)
    return "TRUE", lit(spec.step or "main")


def usable_email_sql(users: str) -> str:
    """SQL: the user row ``users`` has a usable e-mail address. A sealed address is usable
    when it has a blind index (the loader indexes only addresses of the right shape and
    nulls malformed ones); one stored in clear (a store from before encryption, or
    ``privacy.encrypt: false`` without an index yet) when it matches
    :data:`EMAIL_PATTERN`."""
    return (
        f"(CASE WHEN {users}.email LIKE {lit(PREFIX + '%')} THEN {users}.email_index IS NOT NULL "
        f"ELSE regexp_matches(coalesce({users}.email, ''), {lit(EMAIL_PATTERN)}) END)"
    )


def email_key_sql(users: str) -> str:
    """SQL: the key a suppression by address matches, for the user row ``users``: the
    e-mail's blind index (``suppressions.address_index``); for an address still in clear
    without an index, ``clear:`` and the address lower-cased (matching a suppression
    written in clear, before issue 21)."""
    return (
        f"coalesce({users}.email_index, CASE WHEN {users}.email NOT LIKE {lit(PREFIX + '%')} "
        f"THEN 'clear:' || lower({users}.email) END)"
    )


def index_suppressions(store: Store, vault: Vault) -> int:
    """Give each suppression written with a clear address (before issue 21) the blind
    index of that address, so it matches users whose e-mail is sealed; returns how many
    addresses were indexed (0 once done). The clear address stays (users not yet sealed
    still match it); suppressions written since hold the index alone."""
    todo = store.query(
        "SELECT DISTINCT address FROM suppressions "
        "WHERE address IS NOT NULL AND address_index IS NULL"
    )["address"].tolist()
    for address in todo:
        store.execute(
            "UPDATE suppressions SET address_index = ? WHERE address = ? AND address_index IS NULL",
            [vault.index(str(address), "email"), address],
        )
    return len(todo)


# long on purpose: one SQL query (a chain of named CTEs) read top to bottom as the funnel
def audience_sql(spec: AudienceSpec) -> str:
    """The audience query: one row per member of the campaign's segments.

    Columns: ``user_id, segment, channel, step, idempotency_key, reason``; ``reason`` is
    NULL for the eligible (the first exclusion in :data:`REASONS` order otherwise) and
    ``channel`` is the first channel of the user's strategy with consent, no suppression
    and a usable address.
    """
    segs = ", ".join(lit(s) for s in spec.segments) or "NULL"
    values = ", ".join(
        f"({lit(c.segment)}, {c.pref}, {lit(c.channel)}, {lit(c.consent)}, {lit(c.address)}, "
        f"{'TRUE' if c.shares else 'FALSE'})"
        for c in spec.channels
    )
    consent_channels = ", ".join(sorted({lit(c.consent) for c in spec.channels})) or "NULL"
    trigger_cond, step_expr = _trigger_sql(spec)
    transition = isinstance(spec.trigger, LifecycleTransitionTrigger)
    since = ts_lit(spec.now - timedelta(days=spec.cap.window_days))
    prev_join = (
        "LEFT JOIN segment_assignments p ON p.run_id = "
        f"{lit(spec.previous_run_id or '')} AND p.user_id = m.user_id AND p.segment = m.segment"
        if transition
        else ""
    )
    prev_flag = "(p.user_id IS NOT NULL)" if transition else "FALSE"
    email_ok = usable_email_sql("u")
    return f"""
WITH members AS (
    SELECT a.user_id AS user_id, a.segment AS segment
    FROM segment_assignments a
    WHERE a.run_id = {lit(spec.segment_run_id)} AND a.segment IN ({segs})
),
latest_consent AS (
    {latest_consent_sql("SELECT user_id FROM members")}
),
unsubscribed AS (
    SELECT DISTINCT user_id FROM latest_consent
    WHERE NOT granted AND source = 'unsubscribe'
),
consented AS (
    SELECT user_id, channel FROM latest_consent
    WHERE granted AND purpose = {lit(spec.purpose)} AND channel IN ({consent_channels})
),
plan_channels AS (
    SELECT * FROM (VALUES {values}) AS pc0(segment, pref, channel, consent, address, shares)
),
do_not_sell AS (
    {sale_or_share_opt_outs_sql("SELECT user_id FROM members")}
),
sup_user AS (
    SELECT DISTINCT user_id, coalesce(channel, '*') AS channel FROM suppressions
    WHERE user_id IS NOT NULL
),
sup_address AS (
    SELECT DISTINCT address_index AS address, coalesce(channel, '*') AS channel
    FROM suppressions WHERE address_index IS NOT NULL
    UNION
    SELECT DISTINCT 'clear:' || lower(address) AS address, coalesce(channel, '*') AS channel
    FROM suppressions WHERE address IS NOT NULL
),
base AS (
    SELECT m.user_id AS user_id, m.segment AS segment,
           {trigger_cond} AS triggered,
           {prev_flag} AS not_new,
           {step_expr} AS step,
           {email_key_sql("u")} AS email_key,
           {email_ok} AS email_ok
    FROM members m
    LEFT JOIN users u ON u.user_id = m.user_id
    {prev_join}
),
candidates AS (
    SELECT b.user_id AS user_id, pc.pref AS pref,
           (c.user_id IS NOT NULL) AS consented,
           (su1.user_id IS NOT NULL OR su2.user_id IS NOT NULL
            OR sa1.address IS NOT NULL OR sa2.address IS NOT NULL
            OR (pc.shares AND dns.user_id IS NOT NULL)) AS suppressed,
           (pc.address <> 'email' OR b.email_ok) AS addressable
    FROM base b
    JOIN plan_channels pc ON pc.segment = b.segment
    LEFT JOIN consented c ON c.user_id = b.user_id AND c.channel = pc.consent
    LEFT JOIN sup_user su1 ON su1.user_id = b.user_id AND su1.channel = '*'
    LEFT JOIN sup_user su2 ON su2.user_id = b.user_id AND su2.channel = pc.channel
    LEFT JOIN sup_address sa1 ON sa1.address = b.email_key AND sa1.channel = '*'
    LEFT JOIN sup_address sa2 ON sa2.address = b.email_key AND sa2.channel = pc.channel
    LEFT JOIN do_not_sell dns ON dns.user_id = b.user_id
),
per_user AS (
    SELECT user_id,
           bool_or(consented) AS any_consent,
           bool_or(consented AND NOT suppressed) AS any_unsuppressed,
           min(CASE WHEN consented AND NOT suppressed AND addressable THEN pref END) AS best_pref
    FROM candidates GROUP BY user_id
),
recent AS (
    SELECT user_id, idempotency_key FROM deliveries
    WHERE status IN ('sent', 'sending') AND coalesce(sent_at, claimed_at) >= {since}
),
recent_count AS (
    SELECT user_id, count(*) AS n FROM recent GROUP BY user_id
),
keyed AS (
    SELECT b.user_id AS user_id, b.segment AS segment, b.triggered AS triggered,
           b.not_new AS not_new, b.step AS step,
           {lit(spec.campaign + "|")} || b.user_id || '|' || b.step AS idempotency_key
    FROM base b
)
SELECT k.user_id AS user_id, k.segment AS segment, pc.channel AS channel, k.step AS step,
       k.idempotency_key AS idempotency_key,
       CASE WHEN NOT k.triggered THEN {lit(NOT_TRIGGERED)}
            WHEN k.not_new THEN {lit(NOT_NEW)}
            WHEN un.user_id IS NOT NULL THEN {lit(UNSUBSCRIBED)}
            WHEN NOT coalesce(pu.any_consent, FALSE) THEN {lit(NO_CONSENT)}
            WHEN NOT pu.any_unsuppressed THEN {lit(SUPPRESSED)}
            WHEN coalesce(rc.n, 0) - (CASE WHEN own.idempotency_key IS NULL THEN 0 ELSE 1 END)
                 >= {int(spec.cap.max_messages)} THEN {lit(CAPPED)}
            WHEN pu.best_pref IS NULL THEN {lit(NO_ADDRESS)}
       END AS reason
FROM keyed k
LEFT JOIN per_user pu ON pu.user_id = k.user_id
LEFT JOIN unsubscribed un ON un.user_id = k.user_id
LEFT JOIN recent_count rc ON rc.user_id = k.user_id
LEFT JOIN recent own ON own.idempotency_key = k.idempotency_key
LEFT JOIN plan_channels pc ON pc.segment = k.segment AND pc.pref = pu.best_pref
"""
