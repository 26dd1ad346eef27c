"""A sensible default playbook for the standard segmentations (``segmint playbook init``).

The classic cases: high-value users get exclusive perks and early access; potential users
recommendations and a conversion offer; general users standard offers; new users
onboarding and a first-purchase offer; active users tailored recommendations; silent users
a reactivation e-mail or push; at-risk users (RFM "At Risk", "Can't Lose Them") a win-back
offer. Plus a birthday campaign, a limited-time promotion and a win-back for users newly
entering "At Risk".
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml

from segmint._playbook import Playbook
from segmint.store import latest_run_sql, table_exists

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store import Store

__all__ = ["default_playbook"]

_FOOTER = (
    "\n--\n{{ shop }} · you get this because you agreed to hear from us.\n"
    "Unsubscribe with one click: {{ unsubscribe_url }}\n"
)
_RECS = (
    "{% if recommendations %}\nPicked for you:\n{% for r in recommendations %}"
    "  - {{ r.title or r.item_id }}{% if r.price_label %} ({{ r.price_label }}){% endif %}\n"
    "{% endfor %}{% endif %}"
)
_HELLO = "Hi {{ first_name or 'there' }},\n\n"
_CODE = "{% if offer.code %} with the code {{ offer.code }}{% endif %}"

TEMPLATES: dict[str, dict[str, str]] = {
    "vip_perks": {
        "subject": "Early access is yours{% if first_name %}, {{ first_name }}{% endif %}",
        "body": _HELLO + "You are one of our best customers, so you see the new collection "
        "before anyone else{% if favourite_category %} - starting with {{ favourite_category }}"
        "{% endif %}.\n{% if offer.code %}Your access code: {{ offer.code }}\n{% endif %}"
        + _RECS
        + _FOOTER,
    },
    "conversion": {
        "subject": "{{ offer.label | capitalize }} on your next order",
        "body": _HELLO + "Good things are waiting for you: {{ offer.label }} on your next "
        "order" + _CODE + ".\n" + _RECS + _FOOTER,
    },
    "standard_offer": {
        "subject": "{{ offer.label | capitalize }} this week at {{ shop }}",
        "body": _HELLO
        + "This week you get {{ offer.label }}"
        + _CODE
        + ". Have a look around.\n"
        + _RECS
        + _FOOTER,
    },
    "onboarding": {
        "subject": "Welcome to {{ shop }} - {{ offer.label }} on your first order",
        "body": _HELLO + "Welcome! Here is how to get started, and {{ offer.label }} on your "
        "first order" + _CODE + ".\n" + _RECS + _FOOTER,
    },
    "tailored_recs": {
        "subject": "New picks for you{% if favourite_category %} in {{ favourite_category }}"
        "{% endif %}",
        "body": _HELLO + "We picked a few things we think you will like.\n" + _RECS + _FOOTER,
    },
    "reactivation": {
        "subject": "We miss you - {{ offer.label }} inside",
        "body": _HELLO
        + "It has been a while. Come back for {{ offer.label }}"
        + _CODE
        + ".\n"
        + _RECS
        + _FOOTER,
    },
    "winback": {
        "subject": "{{ offer.label | capitalize }} on anything - come back and see what's new",
        "body": _HELLO + "We would love to see you again: {{ offer.label }} on anything"
        "{% if favourite_category %}, {{ favourite_category }} included{% endif %}"
        + _CODE
        + ".\n"
        + _RECS
        + _FOOTER,
    },
    "birthday": {
        "subject": "Happy birthday from {{ shop }}!",
        "body": _HELLO
        + "Happy birthday! Treat yourself: {{ offer.label }} this week"
        + _CODE
        + ".\n"
        + _FOOTER,
    },
}

_FOOTER_ZH = (
    "\n--\n{{ shop }} · 您收到这封邮件，是因为您同意接收我们的消息。\n"
    "一键退订：{{ unsubscribe_url }}\n"
)
_RECS_ZH = (
    "{% if recommendations %}\n为您推荐：\n{% for r in recommendations %}"
    "  - {{ r.title or r.item_id }}{% if r.price_label %}（{{ r.price_label }}）{% endif %}\n"
    "{% endfor %}{% endif %}"
)
_HELLO_ZH = "{% if first_name %}{{ first_name }}，{% endif %}您好：\n\n"
_CODE_ZH = "{% if offer.code %}，优惠码 {{ offer.code }}{% endif %}"

TEMPLATES_ZH: dict[str, dict[str, str]] = {
    "vip_perks": {
        "subject": "{% if first_name %}{{ first_name }}，{% endif %}新品抢先看，专属于您",
        "body": _HELLO_ZH + "您是我们最重要的客户之一，新品系列将优先向您开放"
        "{% if favourite_category %}——从{{ favourite_category }}开始{% endif %}。\n"
        "{% if offer.code %}您的专属码：{{ offer.code }}\n{% endif %}" + _RECS_ZH + _FOOTER_ZH,
    },
    "conversion": {
        "subject": "下次下单享{{ offer.label }}",
        "body": _HELLO_ZH
        + "好物正在等您：下次下单享{{ offer.label }}"
        + _CODE_ZH
        + "。\n"
        + _RECS_ZH
        + _FOOTER_ZH,
    },
    "standard_offer": {
        "subject": "{{ shop }} 本周优惠：{{ offer.label }}",
        "body": _HELLO_ZH
        + "本周您可享{{ offer.label }}"
        + _CODE_ZH
        + "，欢迎来逛逛。\n"
        + _RECS_ZH
        + _FOOTER_ZH,
    },
    "onboarding": {
        "subject": "欢迎来到 {{ shop }}：首单享{{ offer.label }}",
        "body": _HELLO_ZH
        + "欢迎！这里是入门指南，首单可享{{ offer.label }}"
        + _CODE_ZH
        + "。\n"
        + _RECS_ZH
        + _FOOTER_ZH,
    },
    "tailored_recs": {
        "subject": "为您挑选的新品{% if favourite_category %}：{{ favourite_category }}{% endif %}",
        "body": _HELLO_ZH + "我们挑选了一些您可能会喜欢的商品。\n" + _RECS_ZH + _FOOTER_ZH,
    },
    "reactivation": {
        "subject": "好久不见，{{ offer.label }}等您来拿",
        "body": _HELLO_ZH
        + "好久不见。回来看看吧，{{ offer.label }}"
        + _CODE_ZH
        + "。\n"
        + _RECS_ZH
        + _FOOTER_ZH,
    },
    "winback": {
        "subject": "全场{{ offer.label }}，回来看看新品",
        "body": _HELLO_ZH + "期待再次见到您：全场{{ offer.label }}"
        "{% if favourite_category %}，{{ favourite_category }}也包括在内{% endif %}"
        + _CODE_ZH
        + "。\n"
        + _RECS_ZH
        + _FOOTER_ZH,
    },
    "birthday": {
        "subject": "{{ shop }} 祝您生日快乐！",
        "body": _HELLO_ZH
        + "生日快乐！犒劳一下自己：本周{{ offer.label }}"
        + _CODE_ZH
        + "。\n"
        + _FOOTER_ZH,
    },
}
"""The default templates in Chinese (``locale: zh-CN``); same names and fields."""


def _ui(
    primary: str,
    background: str,
    text: str,
    accent: str,
    layout: str,
    hero: dict[str, str],
    copy: dict[str, str],
) -> dict[str, Any]:
    theme = {"primary": primary, "background": background, "text": text, "accent": accent}
    return {"theme": theme, "layout": layout, "hero": hero, "copy": copy}


def _hero(title: str, subtitle: str, cta: str, url: str = "/") -> dict[str, str]:
    return {"title": title, "subtitle": subtitle, "cta_label": cta, "cta_url": url}


# the interface per segment (GET /v1/decide): one variant per kind of strategy, named
# after what the segment is offered; {offer} and {code} are filled in when served
UI: dict[str, dict[str, Any]] = {
    "default": _ui(
        "#1f6feb",
        "#ffffff",
        "#1f2328",
        "#eef3fb",
        "grid",
        _hero("Welcome to the shop", "New arrivals every week.", "Browse the shop"),
        {"recs_title": "Popular right now"},
    ),
    "vip": _ui(
        "#c9a227",
        "#14110b",
        "#f5efe0",
        "#2a2416",
        "hero",
        _hero(
            "Early access is yours",
            "The new collection, before anyone else.",
            "See the collection",
            "/new",
        ),
        {"recs_title": "Reserved for you", "badge": "VIP"},
    ),
    "offer": _ui(
        "#d1242f",
        "#fff8f6",
        "#2b1a17",
        "#ffe3dc",
        "grid",
        _hero("{offer} on your next order", "Use the code {code} at checkout.", "Shop now"),
        {"recs_title": "Picked for you"},
    ),
    "welcome": _ui(
        "#1a7f37",
        "#f6fff8",
        "#10261a",
        "#daf5e2",
        "hero",
        _hero(
            "Welcome! {offer} on your first order",
            "Here is how to get started.",
            "Start here",
            "/start",
        ),
        {"recs_title": "Customers start with"},
    ),
    "picks": _ui(
        "#0969da",
        "#f6f9ff",
        "#0f1b2d",
        "#dcebff",
        "grid",
        _hero("New picks for you", "Chosen from what you like.", "See your picks"),
        {"recs_title": "Picked for you"},
    ),
    "winback": _ui(
        "#bc4c00",
        "#fff8ef",
        "#2d1a06",
        "#ffe8cc",
        "list",
        _hero("We miss you: {offer}", "Come back and see what is new.", "Come back", "/new"),
        {"recs_title": "New since your last visit"},
    ),
}

UI_ZH: dict[str, dict[str, Any]] = {
    name: {
        **spec,
        "hero": {**spec["hero"], **hero},
        "copy": {**spec["copy"], "recs_title": recs},
    }
    for name, spec, hero, recs in (
        (
            "default",
            UI["default"],
            {"title": "欢迎光临", "subtitle": "每周上新。", "cta_label": "逛逛"},
            "热门商品",
        ),
        (
            "vip",
            UI["vip"],
            {"title": "新品抢先看", "subtitle": "新系列，专属于您。", "cta_label": "查看新品"},
            "为您保留",
        ),
        (
            "offer",
            UI["offer"],
            {
                "title": "下次下单享{offer}",
                "subtitle": "结账时使用优惠码 {code}。",
                "cta_label": "立即购买",
            },
            "为您推荐",
        ),
        (
            "welcome",
            UI["welcome"],
            {"title": "欢迎！首单享{offer}", "subtitle": "从这里开始。", "cta_label": "开始"},
            "新客都在买",
        ),
        (
            "picks",
            UI["picks"],
            {"title": "为您挑选的新品", "subtitle": "根据您的喜好挑选。", "cta_label": "查看推荐"},
            "为您推荐",
        ),
        (
            "winback",
            UI["winback"],
            {"title": "好久不见：{offer}", "subtitle": "回来看看新品。", "cta_label": "回来看看"},
            "上次之后的新品",
        ),
    )
}
"""The default UI variants in Chinese (``locale: zh-CN``); same names, themes and layouts."""

_TEMPLATE_UI = {
    "vip_perks": "vip",
    "conversion": "offer",
    "standard_offer": "offer",
    "onboarding": "welcome",
    "tailored_recs": "picks",
    "reactivation": "winback",
    "winback": "winback",
}


def _strategy(
    template: str,
    offer: dict[str, Any] | None = None,
    *,
    recs: bool = False,
    channels: list[str] | None = None,
    hour: int | None = 10,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "offer": offer or {"type": "none"},
        "channels": channels or ["email"],
        "template": template,
        "include_recommendations": recs,
    }
    if template in _TEMPLATE_UI:
        out["ui"] = _TEMPLATE_UI[template]
    if recs:
        out["n_recommendations"] = 3
    if hour is not None:
        out["timing"] = {"hour": hour}
    return out


def _rfm() -> dict[str, Any]:
    winback = {"type": "discount", "value": 20, "code": "COMEBACK20"}
    return {
        "Champions": _strategy("vip_perks", {"type": "exclusive_access", "code": "EARLY"}),
        "Loyal": _strategy("tailored_recs", recs=True),
        "Potential Loyalist": _strategy("conversion", {"type": "discount", "value": 10}, recs=True),
        "New Customers": _strategy("onboarding", {"type": "discount", "value": 10}, recs=True),
        "Promising": _strategy(
            "conversion", {"type": "free_shipping", "cost_per_redemption": 4.9}, recs=True
        ),
        "Need Attention": _strategy(  # 满减: 20 off orders of 200 or more
            "standard_offer",
            {"type": "threshold", "value": 20, "min_order": 200, "code": "SAVE20"},
            recs=True,
        ),
        "About to Sleep": _strategy(
            "reactivation",
            {"type": "amount", "value": 10, "code": "BACK10"},
            channels=["email", "push"],
        ),
        "At Risk": _strategy("winback", winback, recs=True),
        "Can't Lose Them": _strategy("winback", winback, recs=True),
        "Hibernating": _strategy(
            "reactivation", {"type": "discount", "value": 15}, channels=["email", "push"]
        ),
        "Lost": _strategy("reactivation", {"type": "discount", "value": 25}),
    }


def _lifecycle() -> dict[str, Any]:
    return {
        "new": _strategy("onboarding", {"type": "discount", "value": 10, "code": "WELCOME10"}),
        "active": _strategy("tailored_recs", recs=True),
        "silent": _strategy(
            "reactivation", {"type": "discount", "value": 15}, channels=["email", "push"]
        ),
        "churned": _strategy("winback", {"type": "discount", "value": 20}, recs=True),
    }


def _value() -> dict[str, Any]:
    return {
        "high-value": _strategy("vip_perks", {"type": "exclusive_access", "code": "EARLY"}),
        "potential": _strategy("conversion", {"type": "discount", "value": 10}, recs=True),
        "general": _strategy(
            "standard_offer", {"type": "free_shipping", "cost_per_redemption": 4.9}
        ),
    }


WINBACK_SEGMENT = "win-back"
"""A rules segment of this name (high predicted value, high churn risk, as in the demo's
``winback`` segmentation) gets a win-back strategy and campaign in the default playbook."""


def _winback() -> dict[str, Any]:
    offer = {"type": "discount", "value": 20, "code": "COMEBACK20"}
    return {WINBACK_SEGMENT: _strategy("winback", offer, recs=True, channels=["email", "push"])}


def _clusters(store: Store | None, name: str) -> dict[str, Any]:
    """One strategy per cluster of the latest run, keyed by its name and pinned to its key
    (``cluster: c2``) so it follows the cluster across re-clusterings; ``'*'`` for the rest."""
    generic = _strategy("tailored_recs", recs=True)
    if store is None or not table_exists(store, "segment_runs"):
        return {"*": generic}
    raw = store.scalar(latest_run_sql("segment", columns="details", segmentation=name))
    if raw is None:
        return {"*": generic}
    details = json.loads(raw) if isinstance(raw, str) else dict(raw)
    out = {
        str(c["name"]): {**_strategy("tailored_recs", recs=True), "cluster": str(c["key"])}
        for c in details.get("clusters") or []
        if "key" in c
    }
    return {**out, "*": generic}


# long on purpose: mostly a table of the default campaigns as literal dicts, read top down
def default_playbook(
    config: Config, *, store: Store | None = None, today: date | None = None
) -> str:
    """YAML text of a ``playbook:`` section for the project's segmentations.

    Covers every segmentation of type rfm, lifecycle, value_tiers and the clusterings
    (their segments named from the latest run when ``store`` is given, else one ``'*'``
    strategy) and a rules segment named ``win-back`` (a win-back offer and campaign), with templates (in Chinese for ``locale: zh-CN``), an e-mail channel on
    localhost:1025, a push webhook and a CSV export channel, campaigns for the classic
    cases, and a UI variant per kind of strategy (``ui:``: theme, layout, hero banner and
    copy served by ``GET /v1/decide``; ``default`` for unknown users and control arms). Offers include percentages, a fixed amount and a threshold (满减) offer, each
    with a code where the template prints one. The YAML has no anchors or aliases.

    Parameters
    ----------
    config : segmint.Config
        The project configuration (its ``segmentations``).
    store : segmint.store.Store, optional
        To name the clusters of clustering segmentations.
    today : date, optional
        Start of the example promotion window (today by default; it lasts 14 days).

    Returns
    -------
    str
        YAML starting with ``playbook:``; it validates as a :class:`Playbook`.
    """
    from segmint.config import RulesSegmentation

    today = today or datetime.now(UTC).date()
    by_type: dict[str, str] = {}
    strategies: dict[str, Any] = {}
    for name, seg in config.segmentations.items():
        kind = seg.type
        if kind == "rfm":
            strategies[name] = _rfm()
        elif kind == "lifecycle":
            strategies[name] = _lifecycle()
        elif kind == "value_tiers":
            strategies[name] = _value()
        elif kind in ("kmeans", "ward", "dbscan", "hdbscan", "gmm"):
            strategies[name] = _clusters(store, name)
        elif isinstance(seg, RulesSegmentation) and any(
            r.segment == WINBACK_SEGMENT for r in seg.rules
        ):
            strategies[name] = _winback()
            by_type.setdefault("winback", name)
            continue
        else:
            continue
        by_type.setdefault(kind if kind in ("rfm", "lifecycle", "value_tiers") else "cluster", name)
    campaigns: dict[str, Any] = {}
    value = by_type.get("value_tiers")
    life = by_type.get("lifecycle")
    rfm = by_type.get("rfm")
    cluster = by_type.get("cluster")
    if value:
        campaigns["vip_early_access"] = {
            "segmentation": value,
            "segments": ["high-value"],
            "description": "high-value users: exclusive perks and early access",
        }
        campaigns["potential_conversion"] = {
            "segmentation": value,
            "segments": ["potential"],
            "description": "potential users: recommendations and a conversion offer",
        }
        campaigns["general_promotion"] = {
            "segmentation": value,
            "segments": ["general"],
            "trigger": {
                "type": "promotion",
                "start": today.isoformat(),
                "end": (today + timedelta(days=14)).isoformat(),
            },
            "description": "general users: a standard offer for two weeks",
        }
    if life:
        campaigns["onboarding"] = {
            "segmentation": life,
            "segments": ["new"],
            "description": "new users: onboarding and a first-purchase offer",
        }
        campaigns["active_recommendations"] = {
            "segmentation": life,
            "segments": ["active"],
            "description": "active users: tailored recommendations",
        }
        campaigns["silent_reactivation"] = {
            "segmentation": life,
            "segments": ["silent"],
            "description": "silent users: a reactivation e-mail, or a push without e-mail",
        }
        campaigns["birthday"] = {
            "segmentation": life,
            "segments": ["new", "active", "silent"],
            "trigger": {"type": "birthday", "within_days": 7},
            "holdout": 0.2,
            "description": "a birthday treat in the week of the birthday",
        }
    if rfm:
        campaigns["winback_at_risk"] = {
            "segmentation": rfm,
            "segments": ["At Risk", "Can't Lose Them"],
            "description": "at-risk users: a win-back offer",
        }
        campaigns["newly_at_risk"] = {
            "segmentation": rfm,
            "segments": ["At Risk", "Can't Lose Them"],
            "trigger": {"type": "lifecycle_transition"},
            "description": "users who entered At Risk since the previous RFM run",
        }
    winback = by_type.get("winback")
    if winback:
        campaigns["predicted_winback"] = {
            "segmentation": winback,
            "segments": [WINBACK_SEGMENT],
            "description": "high predicted value, high churn risk: a win-back offer",
        }
    if cluster:
        campaigns["cluster_picks"] = {
            "segmentation": cluster,
            "channels": ["export"],
            "description": "every cluster's recommendations as a CSV for an external tool",
        }
    doc = {
        "playbook": {
            "holdout": 0.1,
            "frequency_cap": {"max_messages": 2, "window_days": 7},
            "max_attempts": 3,
            "secret_env": "SEGMINT_SECRET",
            "channels": {
                "email": {
                    "type": "email",
                    "host": "localhost",
                    "port": 1025,
                    "security": "none",
                    "from": f"{config.project} <news@shop.example>",
                    "rate_per_second": 200,
                    "cost_per_message": 0.002,
                },
                "push": {
                    "type": "webhook",
                    "url": "http://localhost:8787/push",
                    "secret_env": "SEGMINT_WEBHOOK_SECRET",
                    "timeout": 5,
                    "max_retries": 3,
                    "backoff": 0.5,
                    "cost_per_message": 0.001,
                },
                "export": {"type": "file", "format": "csv"},
            },
            "templates": TEMPLATES_ZH if config.locale == "zh-CN" else TEMPLATES,
            "strategies": strategies,
            "campaigns": campaigns,
            "ui": UI_ZH if config.locale == "zh-CN" else UI,
        }
    }
    Playbook.model_validate(doc["playbook"])  # what we write always loads
    header = (
        "# Playbook: per segment a strategy (offer, channels, template, recommendations,\n"
        "# timing), the templates and channels they use, and the campaigns.\n"
        "# See docs/campaigns.md. Secrets are read from the env vars named here.\n"
    )
    return header + yaml.dump(
        doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (template bodies) as literal ``|`` blocks; never an anchor or
    alias (``&id001`` / ``*id001``): a shared offer is written out each time, so editing
    one strategy never edits another."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)
