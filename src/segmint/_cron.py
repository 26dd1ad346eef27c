"""Cron expressions of ``schedule:`` as APScheduler triggers, read as crontab reads them.

APScheduler 3's ``CronTrigger.from_crontab`` differs from crontab(5) in two ways a user
would never guess, so an expression is checked and translated here first:

- day-of-week numbers: crontab counts Sunday as 0 (and 7), APScheduler 3 counts Monday as
  0; ``0 3 * * 1`` must mean Monday. Numbers, ranges and steps are turned into day names,
  which both read alike.
- a day of month *and* a day of week both restricted: crontab runs when either matches,
  APScheduler when both do. Such an expression is refused (write two jobs).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

__all__ = ["check_cron", "cron_trigger", "latest_fire", "next_fire"]

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(word: str) -> int:
    w = word.strip().lower()
    if w.isdigit() and 0 <= int(w) <= 7:
        return int(w) % 7
    if w in _DAYS:
        return _DAYS.index(w)
    raise ValueError(f"day of week {word!r} is not 0-7 (0 and 7 are Sunday) or sun..sat")


def _days_of_week(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``*`` kept)."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"day of week {part!r}: the step must be a whole number >= 1")
            step = int(step_text)
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _day(a), _day(b)
            if b.strip() == "7":
                last = 7  # 5-7: Friday to Sunday
            if last < first:
                raise ValueError(f"day of week {part!r}: the range runs backwards")
        else:
            first = last = _day(span)
            if step_text:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: str) -> Any:
    """An APScheduler ``CronTrigger`` firing as the five-field crontab ``expr`` does, in
    ``timezone``; ValueError saying what is wrong otherwise."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"{len(fields)} fields in {expr!r}; a cron expression has 5: minute hour "
            "day-of-month month day-of-week (e.g. '0 3 * * *' is 03:00 every day)"
        )
    minute, hour, day, month, weekday = fields
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ValueError(
            f"{expr!r} restricts both the day of month and the day of week (crontab runs "
            "when either matches); write one job for each"
        )
    try:
        trigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day.replace("?", "*"),
            month=month,
            day_of_week=_days_of_week(weekday.replace("?", "*")),
            timezone=timezone,
        )
    except ValueError as exc:
        raise ValueError(f"{expr!r}: {exc}") from None
    return trigger


def check_cron(expr: str, timezone: str = "UTC") -> str:
    """``expr`` when it is a valid crontab expression that fires at least once in the next
    five years (``0 0 31 2 *`` never does); ValueError otherwise."""
    from datetime import UTC

    trigger = cron_trigger(expr, timezone)
    now = datetime.now(UTC)
    first = trigger.get_next_fire_time(None, now)
    if first is None or first - now > timedelta(days=5 * 366):
        raise ValueError(f"{expr!r} never fires (no such date)")
    return expr


def next_fire(trigger: Any, now: datetime) -> datetime | None:
    """The first time ``trigger`` fires at or after ``now``."""
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


def latest_fire(trigger: Any, now: datetime, horizon: timedelta) -> datetime | None:
    """The last time ``trigger`` fired at or before ``now``, if within ``horizon``.

    This is a run's *slot*: the scheduler calls a job at (or just after) its fire time,
    so the latest fire time not after the call is the time it was due. Found by looking
    back 1 s, 2 s, 4 s ... (a few trigger evaluations, whatever the cron).
    """
    back = timedelta(seconds=1)
    found: datetime | None = None
    while found is None:
        start = now - min(back, horizon)
        fire = trigger.get_next_fire_time(None, start)
        if fire is not None and fire <= now:
            found = fire
        elif back >= horizon:
            return None
        back *= 2
    while True:  # the last one not after now
        following = trigger.get_next_fire_time(found, found + timedelta(microseconds=1))
        if following is None or following > now:
            return found
        found = following
