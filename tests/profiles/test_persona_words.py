"""Persona sentences: medians, observed values only, plurals, feature names in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmint._i18n import language
from segmint.profiles import _persona

NAN = float("nan")


def _stats(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return _persona._feature_stats(frame, [c for c in frame.columns if c != "segment"])


def _sentence(stats: pd.DataFrame, segment: str, n_users: int, locale: str = "en") -> str:
    lang = language(locale)
    dist = _persona._distinguishing(stats, lang)
    empty = pd.DataFrame(columns=["value", "share", "population_share"])
    return _persona._summary(segment, n_users, 0.5, 0.25, dist, None, empty, None, lang)


def test_an_imputed_gap_never_reaches_the_sentence() -> None:
    # one-off buyers have no second order: their gap is missing, except one of four
    frame = pd.DataFrame(
        {
            "segment": ["once"] * 4 + ["loyal"] * 4,
            "frequency": [1, 1, 1, 1, 6, 7, 8, 9],
            "mean_days_between_orders": [2, NAN, NAN, NAN, 30, 35, 40, 45],
        }
    )
    stats = _stats(frame)
    once = stats["once"]
    assert once.loc["mean_days_between_orders", "observed_share"] == 0.25
    assert once.loc["mean_days_between_orders", "median"] == 2  # the one observed value
    text = _sentence(once, "once", 4)
    assert "rarely order" in text
    assert "reorder" not in text and "gaps" not in text
    assert "mean_days_between_orders" not in text
    assert list(_persona._distinguishing(once).index) == ["frequency"]


def test_one_user_is_one_user() -> None:
    frame = pd.DataFrame({"segment": ["solo", "rest", "rest"], "frequency": [9, 1, 2]})
    text = _sentence(_stats(frame)["solo"], "solo", 1)
    assert text.startswith("solo is 1 user (50% of all) and brings 25% of revenue")
    assert "1 users" not in text


def test_a_mean_lifted_by_one_member_names_no_trait() -> None:
    # median 1 order like everyone else; one member with 60 orders lifts only the mean
    frame = pd.DataFrame(
        {"segment": ["a"] * 5 + ["b"] * 5, "frequency": [1, 1, 1, 1, 60, 1, 1, 1, 2, 1]}
    )
    text = _sentence(_stats(frame)["a"], "a", 5)
    assert "order often" not in text
    assert text.endswith("They look like the population as a whole.")


def test_custom_features_are_shown_in_words() -> None:
    frame = pd.DataFrame(
        {"segment": ["a"] * 3 + ["b"] * 3, "basket_diversity": [9.0, 10, 11, 1, 2, 3]}
    )
    dist = _persona._distinguishing(_stats(frame)["a"])
    assert dist["label"].iloc[0].startswith("higher basket diversity: median 10 vs 6 overall")


def test_a_chinese_sentence_uses_chinese_numbers_and_words() -> None:
    frame = pd.DataFrame({"segment": ["a"] * 3 + ["b"] * 3, "frequency": [6, 7, 8, 1, 1, 2]})
    text = _sentence(_stats(frame)["a"], "At Risk", 1234, "zh-CN")
    assert text.startswith("有流失风险共有1,234 位用户（占全部的50%），贡献了25%的收入")
    assert "与其他用户相比，他们经常下单" in text
    assert np.isfinite(_stats(frame)["a"].loc["frequency", "std_diff"])


def test_money_features_are_shown_with_the_currency() -> None:
    frame = pd.DataFrame({"segment": ["a"] * 3 + ["b"] * 3, "monetary": [900, 1000, 1100, 1, 2, 3]})
    (label,) = _persona._distinguishing(_stats(frame)["a"], language("en"), "EUR")["label"]
    assert label.startswith("spend a lot: median €1,000 vs €451.50 overall")
    (label,) = _persona._distinguishing(_stats(frame)["a"], language("zh-CN"), "CNY")["label"]
    assert label.startswith("消费多：中位数 ¥1,000，整体为 ¥451.50")
