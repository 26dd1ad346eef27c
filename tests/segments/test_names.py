"""Cluster names are true of the cluster's median member (hand-computed medians)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmint._i18n import language
from segmint._labels import feature_label, segment_label
from segmint.segments._explain import name_clusters

NAN = float("nan")

# Three clusters of five users. Population (15 users) by hand:
#   frequency sorted 1,1,1,1,1,2,3,3,3,4,6,7,8,9,10 -> median 3, p25 1, p75 6.5
#   gap (observed only: 10 values) 10,12,14,16,18,40,45,50,55,60 -> median 29,
#       p25 14.5, p75 48.75; the one-off buyers have no gap (NaN: no second order)
#   monetary 20..40 | 100..140 | 500..900 -> median 120, p25 37.5, p75 600
#   recency 200..400 | 30..70 | 3..11 -> median 50, p25 10, p75 210
ONE_OFF = {
    "frequency": [1, 1, 1, 1, 1],
    "mean_days_between_orders": [NAN] * 5,
    "monetary": [20, 25, 30, 35, 40],
    "recency_days": [200, 220, 250, 300, 400],
}
FREQUENT = {
    "frequency": [6, 7, 8, 9, 10],
    "mean_days_between_orders": [10, 12, 14, 16, 18],
    "monetary": [500, 600, 700, 800, 900],
    "recency_days": [3, 5, 7, 9, 11],
}
MIDDLE = {
    "frequency": [2, 3, 3, 3, 4],
    "mean_days_between_orders": [40, 45, 50, 55, 60],
    "monetary": [100, 110, 120, 130, 140],
    "recency_days": [30, 40, 50, 60, 70],
}


def _frame(*clusters: dict[str, list[float]]) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.concat([pd.DataFrame(c, dtype="float64") for c in clusters], ignore_index=True)
    labels = np.repeat(np.arange(len(clusters)), [len(c["frequency"]) for c in clusters])
    return frame, labels


def test_names_follow_the_hand_computed_medians() -> None:
    frame, labels = _frame(ONE_OFF, FREQUENT, MIDDLE)
    names = name_clusters(frame, labels, max_terms=5)
    # one-off: median frequency 1 (= p25), money 30 <= 37.5, recency 250 >= 210
    assert names[0] == "Lapsed · one-off · low spend"
    # frequent: 8 >= 6.5, 700 >= 600, 7 <= 10, gap 14 <= 14.5
    assert names[1] == "Recent · frequent · high spend · quick reorders"
    # middle: only the gap (50 >= 48.75) is outside the population's quartiles
    assert names[2] == "Long gaps between orders"


def test_a_missing_gap_never_names_the_one_off_buyers() -> None:
    # one of five one-off buyers has a (short) gap: 20% observed, below the 50% needed
    partial = {**ONE_OFF, "mean_days_between_orders": [5, NAN, NAN, NAN, NAN]}
    frame, labels = _frame(partial, FREQUENT, MIDDLE)
    name = name_clusters(frame, labels, max_terms=5)[0]
    assert "reorders" not in name and "gaps" not in name
    assert "frequent" not in name.lower()
    assert "one-off" in name


def test_means_alone_earn_no_word() -> None:
    # same median frequency (1) as everyone else; one heavy buyer lifts only the mean
    heavy = {"frequency": [1, 1, 1, 1, 60], "monetary": [50, 50, 50, 50, 50]}
    rest = {"frequency": [1, 1, 1, 2, 2], "monetary": [40, 50, 50, 50, 60]}
    frame, labels = _frame(heavy, rest)
    assert name_clusters(frame, labels) == {0: "Typical", 1: "Typical (2)"}


def test_frequent_needs_two_orders_and_the_top_quartile() -> None:
    # population frequency 1,1,1,1,1,1,2,2,2,2 -> median 1, p75 2: the cluster at 2 is
    # frequent relative to it; a cluster at 1 is one-off only below the median (it is not)
    two = {"frequency": [2, 2, 2, 2, 1], "monetary": [10, 10, 10, 10, 10]}
    one = {"frequency": [1, 1, 1, 1, 1], "monetary": [10, 10, 10, 10, 10]}
    frame, labels = _frame(two, one)
    names = name_clusters(frame, labels)
    assert names[0] == "Frequent"
    assert "one-off" not in names[1].lower()


def test_feature_names_are_shown_in_words() -> None:
    assert feature_label("mean_days_between_orders") == "days between orders"
    assert feature_label("basket_diversity_90d") == "basket diversity 90d"
    zh = language("zh-CN")
    assert feature_label("mean_days_between_orders", zh) == "两次下单间隔天数"
    assert segment_label("Lapsed · one-off · low spend", zh) == "久未购买 · 一次性 · 低消费"
    assert segment_label("At Risk", zh) == "有流失风险"
    assert segment_label("Typical (2)", zh) == "普通 (2)"
    assert segment_label("High basket diversity", zh) == "高basket diversity"


def test_rules_are_read_in_words() -> None:
    from segmint._labels import rule_in_words

    rule = "(mean_days_between_orders > 30 or mean_days_between_orders missing) and frequency <= 1"
    features = ["mean_days_between_orders", "frequency", "basket_diversity"]
    assert rule_in_words(rule, features) == (
        "(days between orders > 30 or days between orders missing) and orders <= 1"
    )
    assert rule_in_words("basket_diversity > 2.5", features) == "basket diversity > 2.5"
    assert rule_in_words("frequency > 2 and frequency <= 9", features, language("zh-CN")) == (
        "订单数 > 2 且 订单数 <= 9"
    )
