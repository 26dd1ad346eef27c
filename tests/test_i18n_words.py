"""Every word segmint generates for names, personas and offers has a zh-CN translation."""

from __future__ import annotations

import pytest

from segmint._i18n import _catalog
from segmint._labels import FEATURE_LABELS
from segmint.profiles._persona import _WORDS
from segmint.segments._explain import NAME_VOCABULARY
from segmint.segments._rules import LIFECYCLE_SEGMENTS, NO_PURCHASE, RFM_SEGMENTS, VALUE_TIERS


def _ids() -> list[str]:
    words = {"Typical", "noise", "browsers", "Browsers", "no orders", "No orders"}
    for _, low, high in NAME_VOCABULARY:
        for w in (low, high):
            if w:
                words |= {w, w[0].upper() + w[1:]}
    words |= set(FEATURE_LABELS.values())
    words |= {phrase for pair in _WORDS.values() for phrase in pair}
    words |= {*RFM_SEGMENTS, NO_PURCHASE, *LIFECYCLE_SEGMENTS, *VALUE_TIERS}
    return sorted(words)


@pytest.mark.parametrize("message", _ids())
def test_word_has_a_chinese_translation(message: str) -> None:
    catalog = _catalog("zh-CN")
    assert catalog is not None
    found = catalog.get(message)
    assert found is not None and found.string, message
