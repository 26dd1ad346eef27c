"""Language and number formatting for everything a person reads (persona sentences, offer
labels, messages, the report, CLI summaries).

One :class:`Language` per project, built from ``locale:`` in ``segmint.yaml``. Text is
looked up in gettext catalogs (``segmint/locale/<locale>.po``, read with Babel at first use,
no build step); numbers, money, percentages, dates and plurals come from Babel's CLDR data,
never from hand-written formatting.

    lang = language("zh-CN")
    lang.t("Big spenders")                         # -> "高消费"
    lang.n("{n} user", "{n} users", 1)             # -> "1 位用户" / "1 user"
    lang.money(1234.5, "CNY")                      # -> "¥1,234.50"

Message ids are the English text. A missing translation falls back to English (and a test
lists every id used in the package that the zh-CN catalog lacks). Placeholders use
``str.format`` names; the catalog must keep the same names (checked by a test).
"""

from __future__ import annotations

import functools
import gettext
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent

__all__ = ["LOCALES", "Language", "check_locale", "language", "pick_language"]

#: the locales segmint has text for; ``en`` is the source language (no catalog)
LOCALES: tuple[str, ...] = ("en", "zh-CN")

_CATALOG_DIR = Path(__file__).parent / "locale"


def check_locale(value: str) -> str:
    """Validate a ``locale:`` value; returns its canonical spelling (``zh-CN``).

    Raises ``ValueError`` naming the locales segmint has text for.
    """
    wanted = value.strip().replace("_", "-")
    for name in LOCALES:
        if wanted.lower() == name.lower():
            return name
    raise ValueError(
        f"locale {value!r}: segmint has text in {', '.join(LOCALES)}; "
        "use one of them (numbers and money follow the same locale)"
    )


@functools.cache
def _catalog(name: str) -> Catalog | None:
    if name == "en":
        return None
    path = _CATALOG_DIR / f"{name.replace('-', '_')}.po"
    with path.open("rb") as fh:
        return read_po(fh, locale=name.replace("-", "_"))


@functools.cache
def _plural_rule(expr: str) -> Any:
    return gettext.c2py(expr)


def _plural_index(expr: str, count: int) -> int:
    return int(_plural_rule(expr)(count))


def _significant(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


@dataclass(frozen=True)
class Language:
    """Text and number formatting in one locale. Build with :func:`language`."""

    name: str = "en"
    _babel: Locale = field(default_factory=lambda: Locale.parse("en"), repr=False)

    # -- text ---------------------------------------------------------------
    def t(self, text: str, /, **values: Any) -> str:
        """``text`` (an English message id) in this language, with ``{name}`` filled."""
        cat = _catalog(self.name)
        out = text
        if cat is not None:
            msg = cat.get(text)
            if msg is not None and isinstance(msg.string, str) and msg.string:
                out = msg.string
        return out.format(**values) if values else out

    def n(self, singular: str, plural: str, count: int, /, **values: Any) -> str:
        """The right plural form for ``count`` (``{n}`` is filled with it, formatted)."""
        values.setdefault("n", self.integer(count))
        cat = _catalog(self.name)
        if cat is not None:
            msg = cat.get((singular, plural)) or cat.get(singular)
            if msg is not None and isinstance(msg.string, tuple) and any(msg.string):
                forms = msg.string
                idx = _plural_index(cat.plural_expr, int(count)) if len(forms) > 1 else 0
                return forms[min(idx, len(forms) - 1)].format(**values)
        form = singular if self._babel.plural_form(abs(count)) == "one" else plural
        return form.format(**values)

    # -- numbers ------------------------------------------------------------
    def integer(self, x: int | float) -> str:
        """A whole number with this locale's grouping: ``12,345``."""
        return format_decimal(round(x), locale=self._babel)

    def number(self, x: float, digits: int = 3) -> str:
        """``x`` to ``digits`` significant digits (at least the integer part): ``12.3``."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        if abs(x) >= 10 ** (digits - 1):
            return self.integer(x)
        return format_decimal(
            _significant(float(x), digits), format="#,##0.##########", locale=self._babel
        )

    def money(self, x: float, currency: str, *, whole: bool | None = None) -> str:
        """An amount with its currency symbol; cents are dropped at 1,000 and above
        unless ``whole`` says otherwise."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        if whole is None:
            whole = abs(x) >= 1000
        fmt = None
        if whole:
            pattern = self._babel.currency_formats["standard"].pattern
            fmt = pattern.replace(".00", "")
        return format_currency(
            x, currency, format=fmt, locale=self._babel, currency_digits=not whole
        )

    def percent(self, x: float, digits: int = 1) -> str:
        """A share (0.123) as a percentage with ``digits`` decimals: ``12.3%``.

        A share strictly between 0 and 1 never reads as 100% or 0% (a churn risk of
        0.99957 is not certain): it shows the nearest figure at these digits with ``>`` or
        ``<``: ``>99.9%``, ``<0.1%`` (``>99%``, ``<1%`` at no decimals). Exactly 1 and 0
        stay ``100.0%`` and ``0.0%``."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        pattern = "#,##0." + "0" * digits + "%" if digits else None

        def fmt(v: float) -> str:
            return str(format_percent(v, format=pattern, locale=self._babel))

        out = fmt(x)
        if 0 < x < 1:
            step = 10.0 ** -(digits + 2)  # one unit of the last digit shown, as a share
            if out == fmt(1.0):
                return ">" + fmt(1.0 - step)
            if out == fmt(0.0):
                return "<" + fmt(step)
        return out

    def date(self, d: date | datetime, *, long: bool = False) -> str:
        """A date in this locale's medium (or long) format."""
        if isinstance(d, datetime):
            return format_datetime(d, "medium" if not long else "long", locale=self._babel)
        return format_date(d, "medium" if not long else "long", locale=self._babel)


@functools.cache
def language(name: str = "en") -> Language:
    """The :class:`Language` for a ``locale:`` value (validated by :func:`check_locale`)."""
    canonical = check_locale(name)
    try:
        babel_locale = Locale.parse(canonical.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:  # pragma: no cover - CLDR ships both
        raise ValueError(f"locale {name!r}: {exc}") from exc
    return Language(canonical, babel_locale)


def pick_language(accept_language: str, default: str) -> Language:
    """English or Chinese by an ``Accept-Language`` header (highest weight first), else
    the project's ``default`` locale."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag:
            ranked.append((-q, i, tag.strip().lower()))
    for _q, _i, tag in sorted(ranked):
        if tag.startswith("zh"):
            return language("zh-CN")
        if tag.startswith("en"):
            return language("en")
    return language(default)
