"""Seal the personal values of a store written in clear, as the loader does (issue 21).

The readers' tests build stores by hand (or by a loader that did not seal yet): this
seals ``users.email``, ``phone``, ``birthday`` and the personal trait keys with the
store's vault and fills the blind indexes, so the readers are tested on sealed data.
A malformed e-mail gets no index (the loader nulls it as a field issue).
"""

from __future__ import annotations

import json
import re
from typing import Any

from segmint.campaigns._audience import EMAIL_PATTERN
from segmint.store import Store, Vault, is_sealed


def _text(value: Any) -> str | None:
    if value is None or value != value:
        return None
    return str(value)[:10] if hasattr(value, "isoformat") else str(value)


def seal_users(store: Store, vault: Vault) -> int:
    """Seal every clear personal value of ``users`` and fill ``email_index`` /
    ``phone_index``; returns the rows changed. Idempotent."""
    rows = store.query(
        "SELECT user_id, email, phone, CAST(birthday AS VARCHAR) AS birthday, "
        "CAST(traits AS VARCHAR) AS traits FROM users"
    )
    n = 0
    for r in rows.itertuples(index=False):
        email, phone, birthday, traits = (
            _text(v) for v in (r.email, r.phone, r.birthday, r.traits)
        )
        if email is not None and is_sealed(email):
            continue
        clear_email = email
        ok = clear_email is not None and re.match(EMAIL_PATTERN, clear_email.strip())
        store.execute(
            "UPDATE users SET email = ?, phone = ?, birthday = ?, traits = CAST(? AS JSON), "
            "email_index = ?, phone_index = ? WHERE user_id = ?",
            [
                vault.seal(email, "users.email"),
                vault.seal(phone, "users.phone"),
                vault.seal(birthday, "users.birthday"),
                None if traits is None else vault.seal_json_text(traits, "users.traits"),
                vault.index(clear_email, "email") if ok else None,
                vault.index(phone, "phone"),
                r.user_id,
            ],
        )
        n += 1
    return n


def traits_of(store: Store, user_id: str) -> dict[str, Any]:
    text = store.scalar("SELECT CAST(traits AS VARCHAR) FROM users WHERE user_id = ?", [user_id])
    return json.loads(text) if text else {}


def opened_emails(frame: Any, vault: Vault, column: str = "email") -> Any:
    """``frame`` with its sealed ``column`` opened and lower-cased (a test comparing
    what a sink received with the store)."""
    out = frame.copy()
    values = [None if v is None or v != v else str(v) for v in out[column]]
    out[column] = [None if v is None else v.lower() for v in vault.open_many(values, "users.email")]
    return out
