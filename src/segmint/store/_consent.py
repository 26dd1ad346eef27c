"""The one definition of a user's consent in force: the latest row per (user, channel,
purpose) of the consent history.

"Latest" is by *effective time*, ``least(ts, recorded_at)``: a row cannot take effect
before segmint stored it, so a grant dated hours ahead (accepted within the load's future
tolerance) never outranks a later real action such as an unsubscribe. Between rows of the
same effective time a revoke wins (``granted`` ascending). Every reader of consent (the
audience, the send-time re-check, unsubscribe, the profile) uses :func:`latest_consent_sql`.
"""

from __future__ import annotations

__all__ = ["EFFECTIVE_TIME", "latest_consent_sql"]

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
