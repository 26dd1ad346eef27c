"""The playbook's forms: a strategy (offer, channels, template, UI variant) and a new
campaign, read from a submitted form into edits of ``segmint.yaml`` (key path, value).

Only what a form can say is checked here (a number is a number, a name is usable); the
playbook itself is validated by loading the edited file (:func:`segmint.web._config_edit.
propose`), exactly as ``segmint.yaml`` is, so an error reads as it would on the command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from segmint.web._config_edit import DELETE
from segmint.web._text import N_

__all__ = [
    "OFFER_TYPES",
    "Change",
    "campaign_changes",
    "error_lines",
    "offer_fields",
    "strategy_changes",
    "strategy_fields",
    "strategy_initial",
]

Change = tuple[tuple[str, ...], Any]

OFFER_TYPES = (
    ("none", N_("No offer")),
    ("percent", N_("Percentage off")),
    ("amount", N_("Amount off")),
    ("threshold", N_("Amount off orders over a minimum")),
    ("free_shipping", N_("Free shipping")),
    ("exclusive_access", N_("Exclusive early access")),
)
"""Offer types a form offers (``discount``, the older name of ``percent``, is kept when a
strategy already uses it)."""

N_CHANNEL_CHOICES = 3
CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_NAMES = frozenset({"new", "strategy"})


def _text(form: Mapping[str, Any], key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _number(text: str) -> float | int | str | None:
    """A form's number: int when whole, float, the text itself when not a number, None
    when empty (the loader then says what is wrong with it)."""
    if not text:
        return None
    try:
        x = float(text.replace(",", ""))
    except ValueError:
        return text
    return int(x) if x.is_integer() and abs(x) < 1e15 else x


def offer_fields(offer: Any) -> dict[str, Any]:
    """An offer (model) as the mapping a strategy form writes: the type, then only the
    fields that are set."""
    out: dict[str, Any] = {"type": offer.type}
    for key in ("value", "min_order", "code"):
        v = getattr(offer, key)
        if v is not None and v != "":
            out[key] = _number(str(v)) if key != "code" else v
    if offer.cost_per_redemption:
        out["cost_per_redemption"] = _number(str(offer.cost_per_redemption))
    return out


def _form_offer(form: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _text(form, "offer_type") or "none"}
    for key in ("value", "min_order", "code", "cost_per_redemption"):
        raw = _text(form, f"offer_{key}")
        if not raw:
            continue
        out[key] = raw if key == "code" else _number(raw)
    if out.get("cost_per_redemption") == 0:
        out.pop("cost_per_redemption")
    return out


def _form_channels(form: Mapping[str, Any]) -> list[str]:
    chosen = [_text(form, f"channel_{i}") for i in range(1, N_CHANNEL_CHOICES + 1)]
    return list(dict.fromkeys(c for c in chosen if c))


def strategy_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy the form describes (offer, channels, template, UI variant,
    recommendations), as it would be written."""
    fields: dict[str, Any] = {
        "offer": _form_offer(form),
        "channels": _form_channels(form),
        "template": _text(form, "template"),
        "include_recommendations": form.get("include_recommendations") in ("on", "true", "1"),
    }
    n_recs = _number(_text(form, "n_recommendations"))
    if n_recs is not None:
        fields["n_recommendations"] = n_recs
    ui = _text(form, "ui")
    fields["ui"] = ui or None
    return fields


def strategy_changes(
    form: Mapping[str, Any], playbook: Any
) -> tuple[tuple[str, str], list[Change], list[str]]:
    """((segmentation, segment), the edits, what is wrong with the form)."""
    segmentation, segment = _text(form, "segmentation"), _text(form, "segment")
    problems: list[str] = []
    if not segmentation or not segment:
        problems.append(N_("Choose the segmentation and the segment."))
    fields = strategy_fields(form)
    if not fields["channels"]:
        problems.append(N_("Choose at least one channel."))
    if not fields["template"]:
        problems.append(N_("Choose a template."))
    base = ("playbook", "strategies", segmentation, segment)
    current = playbook.strategies.get(segmentation, {}).get(segment)
    if current is None:
        new = {k: v for k, v in fields.items() if v is not None}
        if not new["include_recommendations"]:
            new.pop("n_recommendations", None)
        return (segmentation, segment), [(base, new)], problems
    changes: list[Change] = []
    if fields["offer"] != offer_fields(current.offer):
        changes.append(((*base, "offer"), fields["offer"]))
    if fields["channels"] != list(current.channels):
        changes.append(((*base, "channels"), fields["channels"]))
    if isinstance(current.template, str) and fields["template"] != current.template:
        changes.append(((*base, "template"), fields["template"]))
    if fields["ui"] != current.ui:
        changes.append(((*base, "ui"), fields["ui"] if fields["ui"] else DELETE))
    if fields["include_recommendations"] != current.include_recommendations:
        changes.append(((*base, "include_recommendations"), fields["include_recommendations"]))
    n_recs = fields.get("n_recommendations")
    if n_recs is not None and n_recs != current.n_recommendations:
        changes.append(((*base, "n_recommendations"), n_recs))
    return (segmentation, segment), changes, problems


def campaign_changes(form: Mapping[str, Any], playbook: Any) -> tuple[str, list[Change], list[str]]:
    """A new campaign (and a strategy for each chosen segment that has none): (its name,
    the edits, what is wrong with the form)."""
    name = _text(form, "name")
    segmentation = _text(form, "segmentation")
    segments = [s for s in form.getlist("segments") if isinstance(s, str) and s]  # type: ignore[attr-defined]
    channel, template = _text(form, "channel"), _text(form, "template")
    problems: list[str] = []
    if not CAMPAIGN_NAME.match(name) or name in RESERVED_NAMES:
        problems.append(
            N_(
                "Name the campaign with letters, digits, _ . or - (up to 64 characters, e.g. spring_winback); 'new' and 'strategy' are taken."
            )
        )
    elif name in playbook.campaigns:
        problems.append(N_("A campaign of that name exists; choose another name."))
    if not segmentation:
        problems.append(N_("Choose the segmentation and the segment."))
    if not segments:
        problems.append(N_("Choose at least one segment."))
    spec: dict[str, Any] = {"segmentation": segmentation, "segments": segments}
    if channel:
        spec["channels"] = [channel]
    purpose = _text(form, "purpose")
    if purpose and purpose != "marketing":
        spec["purpose"] = purpose
    holdout = _number(_text(form, "holdout"))
    if holdout is not None and holdout != playbook.holdout:
        spec["holdout"] = holdout
    description = _text(form, "description")
    if description:
        spec["description"] = description
    changes: list[Change] = []
    own = playbook.strategies.get(segmentation, {})
    bare = [s for s in segments if s not in own and "*" not in own]
    if bare and not template:
        problems.append(N_("Choose a template for the segments without a strategy."))
    if bare and not channel:
        problems.append(N_("Choose a channel for the segments without a strategy."))
    for segment in bare:
        strategy = {"channels": [channel], "template": template}
        changes.append((("playbook", "strategies", segmentation, segment), strategy))
    changes.append((("playbook", "campaigns", name), spec))
    return name, changes, problems


def error_lines(message: str) -> list[str]:
    """A configuration error as lines a person reads (the loader's wording, without its
    heading and pydantic's prefixes)."""
    lines = []
    for raw in message.splitlines():
        line = raw.strip()
        if not line or line.rstrip(":") == "invalid configuration":
            continue
        lines.append(line.replace("Value error, ", ""))
    return lines or [message]


def strategy_initial(strategy: Any, form: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The strategy form's values: those submitted, else the strategy's own, else a new
    strategy's defaults."""
    keys = ["offer_type", "offer_value", "offer_min_order", "offer_code",
            "offer_cost_per_redemption", "template", "ui", "include_recommendations",
            "n_recommendations"] + [f"channel_{i}" for i in range(1, N_CHANNEL_CHOICES + 1)]  # fmt: skip
    if form is not None:
        return {k: _text(form, k) for k in keys}
    out = dict.fromkeys(keys, "")
    out.update(offer_type="none", n_recommendations="3", channel_1="email")
    if strategy is None:
        return out
    offer = offer_fields(strategy.offer)
    for key in ("type", "value", "min_order", "code", "cost_per_redemption"):
        if key in offer:
            out[f"offer_{key}"] = str(offer[key])
    for i, channel in enumerate(strategy.channels[:N_CHANNEL_CHOICES], 1):
        out[f"channel_{i}"] = channel
    out["template"] = strategy.template if isinstance(strategy.template, str) else ""
    out["ui"] = strategy.ui or ""
    out["include_recommendations"] = "on" if strategy.include_recommendations else ""
    out["n_recommendations"] = str(strategy.n_recommendations)
    return out
