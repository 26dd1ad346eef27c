"""One user's profile: who they are, what they do, where they sit, what they agreed to."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from difflib import get_close_matches
from typing import Any

import numpy as np
import pandas as pd

from segmint._time import to_utc
from segmint.errors import NotFoundError
from segmint.features import UNKNOWN_CATEGORY
from segmint.profiles._value import user_value
from segmint.store import (
    COMPLETED,
    Store,
    Vault,
    append_audit,
    completed,
    is_sealed,
    latest_consent_sql,
    latest_run_sql,
    lit,
    ts_lit,
)

PROFILE_ATTRIBUTES = (
    "user_id",
    "created_at",
    "gender",
    "age",
    "country",
    "city",
    "income_band",
    "acquisition_channel",
    "birthday",
    "email",
    "phone",
)


def getpass_user() -> str:
    """Who a call acts as in the audit log when no one is named: the operating-system user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "cli"


def mask_email(email: str | None) -> str | None:
    """``jane.doe@example.com`` -> ``j***@example.com`` (profiles never show full contacts)."""
    if not email or "@" not in email:
        return None if not email else "***"
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str | None) -> str | None:
    """Keep the last two digits only."""
    if not phone:
        return None
    return "*" * max(len(phone) - 2, 0) + phone[-2:]


@dataclass(frozen=True)
class UserProfile:
    """Everything segmint knows about one user, as of the latest feature run.

    Attributes
    ----------
    user_id : str
    attributes : dict
        From ``users``: sign-up date, gender, age, country, city, acquisition channel,
        birthday; e-mail and phone masked (``has_email`` / ``has_phone`` tell whether a
        usable address exists).
    features : dict
        The user's row of the feature run (``feature_run_id``, as of ``as_of``).
    favourite_categories : DataFrame
        ``category``, ``spend``, ``share`` of completed item spend, top 5.
    channel_mix : dict
        ``orders``: completed orders and share per order channel (online/offline);
        ``events``: events and share per event channel (web, app, email, social, store).
    segments : DataFrame
        One row per segmentation (its latest run that includes the user): ``segmentation``,
        ``method``, ``run_id``, ``created_at``, ``segment``, ``detail``, ``probability``.
    consents : DataFrame
        Current state per (channel, purpose): ``granted``, ``since`` (ts of the latest
        record), ``source``.
    recent_orders : DataFrame
        The five latest orders: ``order_id``, ``ts``, ``amount``, ``currency``,
        ``channel``, ``status``.
    value : dict
        Predicted value and churn risk from the latest ``clv`` and ``churn`` prediction
        runs: CLV over the horizon with its interval, P(alive), expected purchases and
        order value, churn risk, and each run's id and as-of date; empty when no run
        exists (see :func:`segmint.profiles._value.user_value` for the keys).
    """

    user_id: str
    attributes: dict[str, Any]
    features: dict[str, Any]
    feature_run_id: str | None
    as_of: datetime | None
    favourite_categories: pd.DataFrame
    channel_mix: dict[str, dict[str, dict[str, float]]]
    segments: pd.DataFrame
    consents: pd.DataFrame
    recent_orders: pd.DataFrame
    value: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return list(json.loads(frame.to_json(orient="records", date_format="iso")))

        return {
            "user_id": self.user_id,
            "attributes": _jsonable(self.attributes),
            "feature_run_id": self.feature_run_id,
            "as_of": self.as_of.isoformat() if self.as_of is not None else None,
            "features": _jsonable(self.features),
            "favourite_categories": records(self.favourite_categories),
            "channel_mix": self.channel_mix,
            "segments": records(self.segments),
            "consents": records(self.consents),
            "recent_orders": records(self.recent_orders),
            "value": _jsonable(self.value),
            **_jsonable(self.extras),
        }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA:
            out[k] = None
        elif isinstance(v, pd.Timestamp | datetime | date):
            out[k] = v.isoformat()
        elif isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, np.floating):
            out[k] = None if not np.isfinite(v) else float(v)
        elif isinstance(v, np.bool_):
            out[k] = bool(v)
        else:
            out[k] = v
    return out


def _row(frame: pd.DataFrame) -> dict[str, Any]:
    if frame.empty:
        return {}
    rec = frame.iloc[0].to_dict()
    return {str(k): (None if _isna(v) else v) for k, v in rec.items()}


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _unknown_user(store: Store, user_id: str) -> NotFoundError:
    prefix = user_id[:3]
    near = store.query(
        "SELECT user_id FROM users WHERE user_id LIKE ? ORDER BY user_id LIMIT 2000",
        [prefix.replace("%", "") + "%"],
    )
    close = get_close_matches(user_id, near["user_id"].astype(str).tolist(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return NotFoundError(f"unknown user {user_id!r}: not in the users table{hint}")


def _mix(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    counts = pd.to_numeric(frame["n"]).astype("int64").tolist()
    total = sum(counts)
    return {
        str(c): {"count": n, "share": round(n / total, 6) if total else 0.0}
        for c, n in zip(frame["channel"], counts, strict=True)
    }


def _attributes(
    store: Store, user_id: str, vault: Vault | None
) -> tuple[dict[str, Any], list[str]]:
    """The user's attributes, contact details masked (opened from their sealed form, then
    masked); and the sealed fields that were opened."""
    cols = ", ".join(PROFILE_ATTRIBUTES)
    user = store.query(f"SELECT {cols}, email_index FROM users WHERE user_id = ?", [user_id])
    if user.empty:
        raise _unknown_user(store, user_id)
    attributes = _row(user)
    email_index = attributes.pop("email_index", None)
    opened = []
    for name in ("email", "phone", "birthday"):
        value = attributes.get(name)
        if vault is not None and is_sealed(value):
            attributes[name] = vault.open(value, f"users.{name}")
            opened.append(f"users.{name}")
    attributes["birthday"] = _birthday(attributes.get("birthday"))
    email, phone = attributes.pop("email", None), attributes.pop("phone", None)
    attributes["email"] = None if is_sealed(email) else mask_email(email)
    attributes["phone"] = None if is_sealed(phone) else mask_phone(phone)
    attributes["has_email"] = bool(email_index) or bool(
        email and not is_sealed(email) and "@" in str(email)
    )
    attributes["has_phone"] = bool(phone)
    return attributes, opened


def _birthday(value: Any) -> date | None:
    """A birthday as a date: stored as text (``YYYY-MM-DD``, sealed) since schema 9, as a
    DATE before."""
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):  # a DATE read back as a timestamp
        return value.date()
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:  # sealed without a key to open it, or not a date
        return None


def _features_of(
    store: Store, user_id: str, feature_run_id: str | None
) -> tuple[dict[str, Any], datetime | None, str | None]:
    """The user's features in the given (else the latest) feature run: (features, as of,
    run id); empty when there is no run yet."""
    features: dict[str, Any] = {}
    as_of: datetime | None = None
    run_id: str | None = None
    if store.scalar("SELECT count(*) FROM feature_runs"):
        where: dict[str, Any] = {"run_id": feature_run_id} if feature_run_id else {}
        run = store.query(latest_run_sql("feature", columns="run_id, as_of", **where))
        if run.empty and feature_run_id:
            raise NotFoundError(f"feature run {feature_run_id!r} not found")
        if not run.empty:
            run_id = str(run.iat[0, 0])
            as_of = pd.Timestamp(str(run.iat[0, 1])).to_pydatetime()
            row = _row(
                store.query(
                    "SELECT * FROM features WHERE run_id = ? AND user_id = ?", [run_id, user_id]
                )
            )
            row.pop("run_id", None)
            row.pop("user_id", None)
            features = row
    return features, as_of, run_id


def _favourite_categories(store: Store, user_id: str, before: str) -> pd.DataFrame:
    """The user's top five categories by completed spend (``before``: the as-of filter),
    with each one's share of the total."""
    favourite = store.query(
        f"""SELECT coalesce(i.category, {lit(UNKNOWN_CATEGORY)}) AS category,
                   sum(oi.quantity * coalesce(oi.unit_price, i.price)) AS spend
            FROM order_items AS oi
            JOIN orders AS o ON o.order_id = oi.order_id
            LEFT JOIN items AS i ON i.item_id = oi.item_id
            WHERE o.user_id = ? AND {completed("o")} {before}
            GROUP BY 1 ORDER BY spend DESC, category LIMIT 5""",
        [user_id],
    )
    favourite["spend"] = pd.to_numeric(favourite["spend"]).astype("float64")
    total = float(
        store.scalar(
            f"""SELECT coalesce(sum(oi.quantity * coalesce(oi.unit_price, i.price)), 0)
                FROM order_items AS oi JOIN orders AS o ON o.order_id = oi.order_id
                LEFT JOIN items AS i ON i.item_id = oi.item_id
                WHERE o.user_id = ? AND {completed("o")} {before}""",
            [user_id],
        )
        or 0.0
    )
    favourite["share"] = favourite["spend"] / total if total else 0.0
    return favourite


def _latest_segments(store: Store, user_id: str) -> pd.DataFrame:
    """The user's segment in the latest run of each segmentation that assigned them."""
    return store.query(
        """SELECT r.segmentation, r.method, r.run_id, r.created_at, a.segment, a.detail,
                  a.probability
           FROM segment_assignments AS a
           JOIN segment_runs AS r ON r.run_id = a.run_id
           WHERE a.user_id = ?
           QUALIFY row_number() OVER (
               PARTITION BY r.segmentation ORDER BY r.created_at DESC, r.run_id DESC) = 1
           ORDER BY r.segmentation""",
        [user_id],
    )


def user_profile(
    store: Store,
    user_id: str,
    *,
    feature_run_id: str | None = None,
    vault: Vault | None = None,
    actor: str | None = None,
    why: str | None = None,
) -> UserProfile:
    """The profile of one user.

    Parameters
    ----------
    store : segmint.store.Store
        The project's store.
    user_id : str
        The user's id as stored (``users.user_id``).
    feature_run_id : str, optional
        Which feature run to read; the latest by default (features empty if none yet).
    vault : segmint.store.Vault, optional
        Opens the sealed e-mail, phone and birthday (shown masked; the birthday as it
        is); the opening is written to the audit log (``personal.read``: ``actor``, the
        operating-system user by default, the user, ``why`` and the fields). Without
        it (or on a read-only store, where the audit log cannot be written) sealed values
        are not shown.
    actor, why : str, optional
        Who asks and why, for the audit log.

    Raises
    ------
    segmint.errors.NotFoundError
        When the user is not in ``users`` (the message suggests close ids).
    """
    # nothing is opened where the opening cannot be audit-logged (a read-only store)
    attributes, opened = _attributes(store, user_id, None if store.read_only else vault)
    if opened:
        append_audit(store, actor or getpass_user(), "personal.read", user_id,
                     why=why or "profile", fields=opened)  # fmt: skip
    features, as_of, run_id = _features_of(store, user_id, feature_run_id)
    before = f"AND o.ts < {ts_lit(to_utc(as_of))}" if as_of is not None else ""
    favourite = _favourite_categories(store, user_id, before)
    order_mix = store.query(
        f"""SELECT coalesce(channel, 'unknown') AS channel, count(*) AS n FROM orders AS o
            WHERE user_id = ? AND {COMPLETED} {before} GROUP BY 1 ORDER BY 2 DESC, 1""",
        [user_id],
    )
    event_before = before.replace("o.ts", "ts")
    event_mix = store.query(
        f"""SELECT coalesce(channel, 'unknown') AS channel, count(*) AS n FROM events
            WHERE user_id = ? {event_before} GROUP BY 1 ORDER BY 2 DESC, 1""",
        [user_id],
    )

    segments = _latest_segments(store, user_id)
    consents = store.query(
        f"""SELECT channel, purpose, granted, effective_at AS since, source
           FROM ({latest_consent_sql("?")}) l ORDER BY channel, purpose""",
        [user_id],
    )
    recent = store.query(
        """SELECT order_id, ts, amount, currency, channel, status FROM orders
           WHERE user_id = ? ORDER BY ts DESC, order_id LIMIT 5""",
        [user_id],
    )
    return UserProfile(
        user_id=user_id,
        attributes=attributes,
        features=features,
        feature_run_id=run_id,
        as_of=as_of,
        favourite_categories=favourite,
        channel_mix={"orders": _mix(order_mix), "events": _mix(event_mix)},
        segments=segments,
        consents=consents,
        recent_orders=recent,
        value=user_value(store, user_id),
    )
