"""The one definition of a user's consent in force: the latest row per (user, channel,
purpose) of the consent history.

"Latest" is by *effective time*, ``least(ts, recorded_at)``: a row cannot take effect
before segmint stored it, so a grant dated hours ahead (accepted within the load's future
tolerance) never outranks a later real action such as an unsubscribe. Between rows of the
same effective time a revoke wins (``granted`` ascending). Every reader of consent (the
audience, the send-time re-check, unsubscribe, the profile) uses :func:`latest_consent_sql`.
"""

from __future__ import annotations

__all__ = [
    "EFFECTIVE_TIME",
    "PERSONALIZATION_MODES",
    "latest_consent_sql",
    "latest_purpose_sql",
    "no_personalization_sql",
    "sale_or_share_opt_outs_sql",
]

EFFECTIVE_TIME = "least(c.ts, c.recorded_at)"
"""SQL over a ``consents`` row ``c``: when it takes effect (NULL recorded_at: its ts)."""


def latest_consent_sql(users: str | None = None) -> str:
    """A SELECT (DuckDB dialect; the store transpiles it) of the consent in force.

    Parameters
    ----------
    users : str, optional
        SQL for the right side of ``user_id IN (...)``: a subquery (``SELECT user_id FROM
        members``), literals, or a bound parameter (``?``). Default: every user.

    Returns
    -------
    str
        One row per (user_id, channel, purpose) with columns ``user_id, channel, purpose,
        granted, source, ts, recorded_at, effective_at``.
    """
    where = f"WHERE c.user_id IN ({users})" if users else ""
    return f"""SELECT user_id, channel, purpose, granted, source, ts, recorded_at, effective_at
FROM (
    SELECT c.user_id AS user_id, c.channel AS channel, c.purpose AS purpose,
           c.granted AS granted, c.source AS source, c.ts AS ts,
           c.recorded_at AS recorded_at, {EFFECTIVE_TIME} AS effective_at,
           row_number() OVER (PARTITION BY c.user_id, c.channel, c.purpose
                              ORDER BY {EFFECTIVE_TIME} DESC, c.granted ASC, c.ts DESC,
                                       c.source ASC) AS rn
    FROM consents c
    {where}
) consent_rows WHERE rn = 1"""


PERSONALIZATION_MODES = ("opt_in", "opt_out")
"""``privacy.personalization``: opt_in (personalized only after a grant) or opt_out
(personalized unless revoked)."""


def latest_purpose_sql(purpose: str, users: str | None = None) -> str:
    """A SELECT of each user's latest consent row of ``purpose`` on any channel.

    A purpose such as ``personalization`` or ``sale_or_share`` concerns the person, not a
    channel: their latest statement about it, on whatever channel (by effective time, a
    revoke winning a tie, as in :func:`latest_consent_sql`), is the one in force.

    Returns
    -------
    str
        One row per user with a row of the purpose: ``user_id, granted``.
    """
    where = f" AND c.user_id IN ({users})" if users else ""
    safe = purpose.replace("'", "''")
    return f"""SELECT user_id, granted FROM (
    SELECT c.user_id AS user_id, c.granted AS granted,
           row_number() OVER (PARTITION BY c.user_id
                              ORDER BY {EFFECTIVE_TIME} DESC, c.granted ASC, c.ts DESC,
                                       c.source ASC) AS rn
    FROM consents c WHERE c.purpose = '{safe}'{where}
) purpose_rows WHERE rn = 1"""


def no_personalization_sql(mode: str = "opt_out", users: str | None = None) -> str:
    """A SELECT of the ``user_id`` of every user who may not get personalized content.

    ``opt_out`` (the default): users whose ``personalization`` consent in force is revoked;
    ``opt_in``: every user of ``users`` without a granted one.
    """
    if mode not in PERSONALIZATION_MODES:
        raise ValueError(f"personalization mode {mode!r}: expected opt_in or opt_out")
    latest = latest_purpose_sql("personalization", users)
    if mode == "opt_out":
        return f"SELECT user_id FROM ({latest}) p WHERE NOT p.granted"
    where = f" AND u.user_id IN ({users})" if users else ""
    return (
        f"SELECT u.user_id AS user_id FROM users u LEFT JOIN ({latest}) p "
        f"ON p.user_id = u.user_id WHERE (p.user_id IS NULL OR NOT p.granted){where}"
    )


def sale_or_share_opt_outs_sql(users: str | None = None) -> str:
    """A SELECT of the ``user_id`` of every user who opted out of the sale or sharing of
    their data (CCPA "do not sell or share"): their latest ``sale_or_share`` row is a
    revoke. No row means allowed (CCPA is opt-out)."""
    return (
        f"SELECT user_id FROM ({latest_purpose_sql('sale_or_share', users)}) s WHERE NOT s.granted"
    )
