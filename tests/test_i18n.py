"""Language: catalogs, plurals and Babel formatting."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

import segmint
from segmint._i18n import LOCALES, language

CATALOGS = Path(segmint.__file__).parent / "locale"


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_plurals_follow_the_language() -> None:
    en = language("en")
    assert en.n("{n} user", "{n} users", 1) == "1 user"
    assert en.n("{n} user", "{n} users", 0) == "0 users"
    assert en.n("{n} user", "{n} users", 12345) == "12,345 users"
    assert language("zh-CN").n("{n} user", "{n} users", 1) == "1 位用户"


def test_money_numbers_and_percentages_come_from_cldr() -> None:
    en, zh = language("en"), language("zh-CN")
    assert en.money(12.5, "EUR") == "€12.50"
    assert en.money(1234.5, "USD") == "$1,234"  # whole units at 1,000 and above
    assert zh.money(1234.5, "CNY") == "¥1,234"
    assert en.percent(0.1234) == "12.3%"
    assert en.number(0.012345) == "0.0123"
    assert en.number(123456.7) == "123,457"


@pytest.mark.parametrize("name", ["en", "zh-CN"])
def test_a_share_below_one_never_reads_100_percent_nor_above_zero_0_percent(name: str) -> None:
    """A churn risk of 0.99957 is not certain and a mean P(alive) of 0.996 is not
    everyone: at the digits asked for, they read >99.9% and >99%; a share above 0 that
    rounds to nothing reads <0.1%. Real 100% and 0% are unchanged. The workspace's and the
    report's percentages are this one."""
    from segmint.report._build import _Text
    from segmint.web._core import Formats

    lang = language(name)
    cases = [
        ((0.99957, 1), ">99.9%"),
        ((0.996, 0), ">99%"),
        ((0.9994, 1), "99.9%"),
        ((0.994, 0), "99%"),
        ((1.0, 1), "100.0%"),
        ((1.0, 0), "100%"),
        ((0.0004, 1), "<0.1%"),
        ((0.004, 0), "<1%"),
        ((1e-12, 1), "<0.1%"),
        ((0.0006, 1), "0.1%"),
        ((0.0, 1), "0.0%"),
        ((0.0, 0), "0%"),
        ((1.25, 0), "125%"),
    ]
    for (x, digits), want in cases:
        assert lang.percent(x, digits) == want, (x, digits)
        assert Formats(lang, "EUR").pct(x, digits) == want, (x, digits)
        assert _Text(lang, "EUR").pct(x, digits) == want, (x, digits)


def test_untranslated_text_falls_back_to_english() -> None:
    assert language("zh-CN").t("no such message {x}", x=1) == "no such message 1"


@pytest.mark.parametrize("value", ["fr", "zh-TW", ""])
def test_unknown_locale_is_refused_with_the_choices(value: str) -> None:
    with pytest.raises(ValueError, match="en, zh-CN"):
        language(value)


@pytest.mark.parametrize("name", [n for n in LOCALES if n != "en"])
def test_catalog_keeps_every_placeholder(name: str) -> None:
    with (CATALOGS / f"{name.replace('-', '_')}.po").open("rb") as fh:
        catalog = read_po(fh)
    for msg in catalog:
        if not msg.id:
            continue
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        want = set().union(*(_fields(i) for i in ids))
        for s in strings:
            assert _fields(s) <= want, (msg.id, s)
            assert not re.search(r"\{\s", s), (msg.id, s)


@pytest.mark.parametrize("name", [n for n in LOCALES if n != "en"])
def test_catalog_has_each_message_once(name: str) -> None:
    """Babel keeps the last of two entries silently; two engineers appending the same id
    with different words would make the page depend on file order."""
    text = (CATALOGS / f"{name.replace('-', '_')}.po").read_text(encoding="utf-8")
    ids = re.findall(r'^msgid "(.+)"$', text, re.M)
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
