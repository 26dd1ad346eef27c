"""Words for what people read: feature names, segment and cluster names, in a language.

One table from feature name to label (English, the catalog's message ids) serves cluster
names, persona sentences, the report and exports; a feature not in the table (a custom
feature) is shown with underscores turned into spaces. Segment names are stored in English
(they are keys of the playbook); :func:`segment_label` translates them for display: the
rule-based names (RFM, lifecycle, value tiers) whole, cluster names word by word.

    feature_label("mean_days_between_orders")               # "days between orders"
    segment_label("Recent · one-off", language("zh-CN"))    # "近期 · 一次性"
"""

from __future__ import annotations

import re

from segmint._i18n import Language, language

__all__ = ["FEATURE_LABELS", "feature_label", "rule_in_words", "segment_label"]

#: Feature name -> what a person reads (an English message id of the catalog).
FEATURE_LABELS: dict[str, str] = {
    "recency_days": "days since last order",
    "frequency": "orders",
    "monetary": "total spend",
    "avg_order_value": "average order value",
    "tenure_days": "days as a customer",
    "mean_days_between_orders": "days between orders",
    "orders_30d": "orders in the last 30 days",
    "orders_90d": "orders in the last 90 days",
    "orders_365d": "orders in the last 365 days",
    "spend_30d": "spend in the last 30 days",
    "spend_90d": "spend in the last 90 days",
    "spend_365d": "spend in the last 365 days",
    "refund_rate": "refund rate",
    "discount_share": "share of spend on discount",
    "last_active_days": "days since last activity",
    "events_7d": "events in the last 7 days",
    "events_30d": "events in the last 30 days",
    "sessions_30d": "visits in the last 30 days",
    "offline_share": "share of orders in store",
    "app_share": "share of activity in the app",
    "favourite_category": "favourite category",
    "favourite_category_share": "share of spend in the favourite category",
    "shares_likes_90d": "shares and likes in the last 90 days",
    "store_visits_90d": "store visits in the last 90 days",
    "age": "age",
    "gender": "gender",
    "country": "country",
    "city": "city",
}


def feature_label(name: str, lang: Language | None = None) -> str:
    """What a person reads for feature ``name``, in ``lang`` (English by default).

    Unknown (custom) features: the name with underscores turned into spaces.
    """
    lang = lang or language("en")
    label = FEATURE_LABELS.get(name)
    if label is None:
        return name.replace("_", " ").strip()
    return lang.t(label)


_HIGH_LOW = re.compile(r"^(high|low|High|Low) (.+)$")
_NUMBERED = re.compile(r"^(.*) \((\d+)\)$")
_FEATURE_BY_LABEL = {label: name for name, label in FEATURE_LABELS.items()}


def _word(word: str, lang: Language) -> str:
    translated = lang.t(word)
    if translated != word:
        return translated
    m = _HIGH_LOW.match(word)
    if m is None:
        return word
    feature = m.group(2)
    label = lang.t(feature) if feature in _FEATURE_BY_LABEL else feature
    out = lang.t(
        "high {feature}" if m.group(1).lower() == "high" else "low {feature}", feature=label
    )
    return out[:1].upper() + out[1:] if m.group(1)[0].isupper() else out


def segment_label(name: str, lang: Language | None = None) -> str:
    """A segment name as shown to people in ``lang``.

    Rule-based names ("At Risk", "new") are translated whole; a cluster name
    ("Recent · frequent · high spend", "Typical (2)") word by word; anything else (a
    pinned label, a custom rule's segment) is shown as written.
    """
    lang = lang or language("en")
    if lang.name == "en":
        return name
    suffix = ""
    m = _NUMBERED.match(name)
    if m:
        name, suffix = m.group(1), f" ({m.group(2)})"
    whole = lang.t(name)
    if whole != name:
        return whole + suffix
    return " · ".join(_word(w, lang) for w in name.split(" · ")) + suffix


_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_RULE_WORDS = {"and": "and", "or": "or", "missing": "missing", "all users": "all users"}


def rule_in_words(rule: str, features: list[str], lang: Language | None = None) -> str:
    """A surrogate-tree rule (``recency_days <= 30 and frequency > 2``) with each of
    ``features`` replaced by its label: ``days since last order <= 30 and orders > 2``.

    ``and``, ``or`` and ``missing`` are translated too; numbers and operators are kept.
    """
    lang = lang or language("en")
    known = set(features)

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        if word in known:
            return feature_label(word, lang)
        if word in _RULE_WORDS:
            return lang.t(word) if lang.name != "en" else word
        return word

    if rule == "all users":
        return lang.t("all users")
    return _IDENTIFIER.sub(swap, rule)
