"""CCPA "do not sell or share": a consent purpose, ``sale_or_share``, on the channel ``any``.

A person is opted out when their latest ``sale_or_share`` consent row (any channel, see
:func:`segmint.store.sale_or_share_opt_outs_sql`) is a revoke; no row means allowed (the
CCPA is opt-out). Opted out, they are left out of every list written for other tools
(:func:`segmint.profiles.export_list`: segment and audience exports, counted as ``do not
sell or share``) and off the campaign channels that hand an audience to a third party
(webhook and file channels); e-mail segmint sends itself is not a sale or a share.

The flag is an ordinary consent row: :func:`do_not_sell` writes it (``segmint privacy
do-not-sell USER [--undo]``), and so does the tracking API's consent event
(``tracking.consent_event`` with ``purpose: sale_or_share``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from segmint.config import Config
from segmint.errors import ConfigError, NotFoundError
from segmint.store import Store, append_audit, open_vault

__all__ = ["DO_NOT_SELL_CHANNEL", "DO_NOT_SELL_PURPOSE", "DoNotSell", "do_not_sell"]

log = logging.getLogger(__name__)

DO_NOT_SELL_PURPOSE = "sale_or_share"
DO_NOT_SELL_CHANNEL = "any"


@dataclass(frozen=True)
class DoNotSell:
    """The consent row written: whose (the user id), allowed or not, when, from where."""

    user_id: str
    allowed: bool
    ts: datetime
    source: str


def do_not_sell(
    store: Store,
    config: Config,
    user_id: str,
    *,
    undo: bool = False,
    source: str = "privacy request",
    actor: str,
    now: datetime | None = None,
) -> DoNotSell:
    """Record that ``user_id`` opts out of (``undo``: back into) the sale or sharing of
    their data: a ``consents`` row (channel ``any``, purpose ``sale_or_share``) and an
    audit entry ``privacy.do_not_sell``, in one transaction.

    Raises
    ------
    segmint.errors.NotFoundError
        When the user is not in the store.
    segmint.errors.ConfigError
        When ``source`` is empty.
    """
    source = source.strip()
    if not source:
        raise ConfigError("--source is empty: say where the request came from")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with store.transaction():
        if not store.scalar("SELECT count(*) FROM users WHERE user_id = ?", [user_id]):
            raise NotFoundError(
                f"no user {user_id!r} in the store {store.location}: "
                "check the id (`segmint profile USER` shows a person)"
            )
        store.execute(
            "INSERT INTO consents (user_id, channel, purpose, ts, granted, source, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [user_id, DO_NOT_SELL_CHANNEL, DO_NOT_SELL_PURPOSE, now, undo, source, now],
        )
        subject = open_vault(store, config).index(user_id, "user")
        append_audit(
            store,
            actor,
            "privacy.do_not_sell",
            subject,
            allowed=undo,
            source=source,
        )
    log.info("do not sell or share: %s for one user", "lifted" if undo else "recorded")
    return DoNotSell(user_id, undo, now, source)
