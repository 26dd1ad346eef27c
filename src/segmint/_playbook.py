"""The ``playbook:`` section of ``segmint.yaml``: strategies, templates, channels, campaigns.

Typed, strict pydantic models (an unknown key is an error with a did-you-mean, like the
rest of the configuration). References between the parts of the playbook (a strategy's
channels and template, a campaign's channels) are checked when the file is loaded;
references into the store (segment names of the latest run) are checked when a campaign
is planned (:func:`segmint.campaigns.validate_playbook`).

The models live below every layer, so that :mod:`segmint.config` reads the playbook
without importing the campaigns layer; :mod:`segmint.campaigns` re-exports them. This
module must not import :mod:`segmint.config` (which imports it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from segmint._i18n import Language

__all__ = [
    "BirthdayTrigger",
    "CampaignSpec",
    "ChannelSpec",
    "EmailChannelSpec",
    "FileChannelSpec",
    "FrequencyCap",
    "LifecycleTransitionTrigger",
    "Offer",
    "OneOffTrigger",
    "Playbook",
    "PromotionTrigger",
    "Strategy",
    "TemplateSpec",
    "Timing",
    "Trigger",
    "UiHero",
    "UiTheme",
    "UiVariant",
    "VariantSpec",
    "WebhookChannelSpec",
]

ANY_SEGMENT = "*"
"""Strategy key matching every segment without a strategy of its own."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ConsentWord = Annotated[str, AfterValidator(lambda v: v.strip().lower())]
"""A consent channel or purpose, trimmed and lower-cased as consent rows are at load (the
vocabulary is checked by :class:`segmint.config.Config`, which knows a project's own)."""


_NEEDS_VALUE = {
    "discount": "a percentage above 0 and at most 100",
    "percent": "a percentage above 0 and at most 100",
    "amount": "an amount above 0 in the project's currency",
    "threshold": "an amount above 0 in the project's currency",
}


class Offer(_Strict):
    """What the message offers.

    ``percent`` (or its older name ``discount``) needs ``value``, a percentage (0 < value
    <= 100); ``amount`` takes ``value`` off the order, in the project's currency;
    ``threshold`` (the 满减 offer, "20 off orders of 200 or more") takes ``value`` off
    orders of at least ``min_order``, which must be above ``value``. ``percent``,
    ``amount`` and ``free_shipping`` may also carry a ``min_order``. ``free_shipping``
    and ``exclusive_access`` may carry a ``value`` (a minimum basket, an access code or a
    date); ``none`` sends no offer. Labels are written in the project's language and
    currency (:meth:`text`).
    """

    type: Literal[
        "percent", "discount", "amount", "threshold", "free_shipping", "exclusive_access", "none"
    ] = "none"
    value: float | str | None = None
    min_order: float | None = Field(
        default=None,
        gt=0,
        description="smallest order the offer applies to, in the project's currency "
        "(required for `threshold`)",
    )
    code: str | None = Field(default=None, description="a voucher code to print")
    cost_per_redemption: float = Field(
        default=0.0,
        ge=0,
        description="what one redemption costs the shop beyond the discount already netted "
        "out of order amounts (e.g. shipping paid); counted per converting treated user by "
        "`segmint evaluate`",
    )

    @model_validator(mode="after")
    def _value_fits(self) -> Offer:
        number = isinstance(self.value, int | float) and not isinstance(self.value, bool)
        kind = self.type
        if kind in _NEEDS_VALUE:
            fits = number and float(self.value) > 0  # type: ignore[arg-type]
            if kind in ("discount", "percent"):
                fits = fits and float(self.value) <= 100  # type: ignore[arg-type]
            if not fits:
                article = "an" if kind[0] in "aeiou" else "a"
                raise ValueError(
                    f"{article} {kind} offer needs `value`: {_NEEDS_VALUE[kind]} "
                    f"(got {self.value!r})"
                )
        if kind == "threshold" and self.min_order is None:
            raise ValueError(
                f"a threshold offer needs `min_order`: it takes `value` ({self.value:g}) off "
                "orders of at least `min_order` (e.g. value: 20, min_order: 200 for "
                "'20 off orders of 200 or more', 满200减20)"
            )
        value = float(self.value) if number else 0.0  # type: ignore[arg-type]
        low = self.min_order is not None and self.min_order <= value
        if kind in ("amount", "threshold") and low:
            article = "an" if kind == "amount" else "a"
            raise ValueError(
                f"{article} {kind} offer's min_order ({self.min_order:g}) must be above "
                f"its value ({value:g}): the amount taken off cannot reach the order it "
                "applies to; did you swap them?"
            )
        if self.min_order is not None and kind in ("exclusive_access", "none"):
            raise ValueError(f"a {kind} offer takes no `min_order` (got {self.min_order:g})")
        return self

    @property
    def label(self) -> str:
        """Plain English words without a currency: ``15% off``, ``20 off orders of 200 or
        more``; :meth:`text` writes them in a language and currency."""
        return self.text()

    def text(self, lang: Language | None = None, currency: str | None = None) -> str:
        """The offer in words, in ``lang`` with amounts in ``currency`` (plain numbers when
        None): ``15% off``, ``€20 off orders of €200 or more``, ``满¥200减¥20``."""
        from segmint._i18n import language

        lang = lang or language("en")

        def money(x: float) -> str:
            if currency is None:
                return lang.number(x, 6)
            return lang.money(x, currency, whole=float(x).is_integer())

        kind, value = self.type, self.value
        over = {} if self.min_order is None else {"min_order": money(self.min_order)}
        if kind in ("discount", "percent"):
            pct = lang.percent(float(value) / 100, 0 if float(value).is_integer() else 1)  # type: ignore[arg-type]
            if over:
                return lang.t("{percent} off orders of {min_order} or more", percent=pct, **over)
            return lang.t("{percent} off", percent=pct)
        if kind in ("amount", "threshold"):
            amount = money(float(value))  # type: ignore[arg-type]
            if over:
                return lang.t("{amount} off orders of {min_order} or more", amount=amount, **over)
            return lang.t("{amount} off", amount=amount)
        if kind == "free_shipping":
            if over:
                return lang.t("free shipping on orders of {min_order} or more", **over)
            if value is not None:
                shown = money(float(value)) if isinstance(value, int | float) else str(value)
                return lang.t("free shipping over {value}", value=shown)
            return lang.t("free shipping")
        if kind == "exclusive_access":
            return lang.t("exclusive early access")
        return ""


_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_COPY_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _colour(value: str) -> str:
    if not _COLOUR.match(value.strip()):
        raise ValueError(f"a colour is written #rgb or #rrggbb (e.g. '#1f6feb'), got {value!r}")
    return value.strip().lower()


def _link(value: str | None) -> str | None:
    """A link a page may follow or load: http(s) or a path on the site; never
    ``javascript:`` or ``data:`` (the service hands it to browsers)."""
    if value is None:
        return None
    v = value.strip()
    if v.startswith(("https://", "http://")) or (v.startswith("/") and not v.startswith("//")):
        return v
    raise ValueError(
        f"a link starts with https://, http:// or / (a path on the site), got {value!r}"
    )


Colour = Annotated[str, AfterValidator(_colour)]
Link = Annotated[str | None, AfterValidator(_link)]


class UiTheme(_Strict):
    """The colours of a UI variant, as hex (``#rgb`` or ``#rrggbb``)."""

    primary: Colour = Field(default="#1f6feb", description="buttons and links")
    background: Colour = Field(default="#ffffff", description="the page background")
    text: Colour = Field(default="#1f2328", description="body text")
    accent: Colour = Field(default="#f0f3f6", description="banners, badges, highlights")


class UiHero(_Strict):
    """The hero banner at the top of the page. ``{offer}`` and ``{code}`` in its texts are
    replaced by the served offer's label and code (empty without an offer)."""

    title: str = Field(min_length=1, max_length=200)
    subtitle: str | None = Field(default=None, max_length=400)
    image_url: Link = Field(default=None, description="https://..., http://... or /path")
    cta_label: str | None = Field(
        default=None, max_length=80, description="the call to action's button text"
    )
    cta_url: Link = Field(default=None, description="where the call to action leads")

    @model_validator(mode="after")
    def _cta_pair(self) -> UiHero:
        if (self.cta_label is None) != (self.cta_url is None):
            raise ValueError(
                "a call to action needs both `cta_label` (the button text) and `cta_url`"
            )
        return self


class UiVariant(_Strict):
    """One interface variant served by ``GET /v1/decide``: theme colours, layout, hero
    banner and copy (texts keyed by name, for the site to place).

    Declared under ``playbook.ui`` by name; a strategy (``ui: vip``) or a campaign's variant
    names it. ``playbook.ui.default`` is the default experience (unknown users, control
    arms); without it a neutral built-in default is served. ``name`` is filled in from the
    key.
    """

    name: str = Field(default="", description="the variant's name (its key under playbook.ui)")
    theme: UiTheme = Field(default_factory=UiTheme)
    layout: Literal["grid", "list", "hero"] = Field(
        default="grid", description="how the page lays out products"
    )
    hero: UiHero | None = None
    copy_texts: dict[str, str] = Field(
        default_factory=dict,
        alias="copy",
        description="texts by key (a-z, 0-9, _), e.g. {recs_title: Picked for you}",
    )

    @model_validator(mode="after")
    def _copy_keys(self) -> UiVariant:
        for key, text in self.copy_texts.items():
            if not _COPY_KEY.match(key):
                raise ValueError(
                    f"copy key {key!r}: use lower-case letters, digits and _ (e.g. recs_title)"
                )
            if len(text) > 500:
                raise ValueError(f"copy.{key}: at most 500 characters (got {len(text)})")
        return self


DEFAULT_UI = UiVariant(
    name="default",
    hero=UiHero(title="Welcome", subtitle="Have a look around."),
    copy={"recs_title": "Popular right now"},
)
"""The default experience when the playbook declares no ``ui.default``."""


class TemplateSpec(_Strict):
    """A message template: Jinja2 text rendered in a sandbox (see docs/campaigns.md)."""

    subject: str = Field(description="one line; Jinja2")
    body: str = Field(description="the plain-text body; Jinja2")
    html: str | None = Field(default=None, description="optional HTML body (autoescaped)")


class Timing(_Strict):
    """When a strategy's messages should go out.

    segmint has no scheduler: run ``segmint campaign send`` from cron at this time. The
    plan records the timing and :func:`~segmint.campaigns.send_campaign` refuses to send
    before ``not_before``.
    """

    hour: int | None = Field(default=None, ge=0, le=23, description="local send hour")
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, description="preferred weekdays (empty: any)"
    )
    not_before: date | None = Field(default=None, description="never send before this date")


class Strategy(_Strict):
    """What one segment gets: an offer on some channels, with a template."""

    offer: Offer = Field(default_factory=Offer)
    channels: list[str] = Field(
        default_factory=lambda: ["email"],
        description="channel names in order of preference: a user gets one message, on "
        "the first channel with consent and a usable address",
    )
    template: str | TemplateSpec = Field(
        description="name of a template under playbook.templates, or an inline template"
    )
    include_recommendations: bool = False
    n_recommendations: int = Field(default=3, gt=0, le=20)
    timing: Timing = Field(default_factory=Timing)
    cluster: str | None = Field(
        default=None,
        description="pin to a cluster's key (c1, c2, ...; see `segmint playbook check`): the "
        "strategy follows that cluster across re-clusterings whatever it is named",
    )
    ui: str | None = Field(
        default=None,
        description="the UI variant (a name under playbook.ui) the segment's users see on "
        "the site or app (GET /v1/decide)",
    )


class OneOffTrigger(_Strict):
    """Everyone in the segments, once."""

    type: Literal["one_off"] = "one_off"


class BirthdayTrigger(_Strict):
    """Users whose birthday falls within ``within_days`` days from the plan date (inclusive);
    one message per user and birthday year."""

    type: Literal["birthday"]
    within_days: int = Field(default=7, ge=0, le=366)


class PromotionTrigger(_Strict):
    """A limited-time promotion: planning and sending only between ``start`` and ``end``."""

    type: Literal["promotion"]
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> PromotionTrigger:
        if self.end < self.start:
            raise ValueError(f"promotion end ({self.end}) is before its start ({self.start})")
        return self


class LifecycleTransitionTrigger(_Strict):
    """Users in the campaign's segments in the latest run but not in the previous run of
    the segmentation (newly entered); one message per user and run."""

    type: Literal["lifecycle_transition"]


Trigger = Annotated[
    OneOffTrigger | BirthdayTrigger | PromotionTrigger | LifecycleTransitionTrigger,
    Field(discriminator="type"),
]


class FrequencyCap(_Strict):
    """At most ``max_messages`` per user within any ``window_days`` days, across campaigns."""

    max_messages: int = Field(default=2, ge=1)
    window_days: int = Field(default=7, ge=1)


# the default arm labels (segmint.campaigns._arms builds experiment designs on them)
DEFAULT_CONTROL = "control"
DEFAULT_TREATMENT = "treatment"


def normalize_arm(label: object) -> str:
    """Arm labels trimmed, inner whitespace collapsed (as ``_arms.normalize_arm``)."""
    return " ".join(str(label).split())


class VariantSpec(_Strict):
    """One treatment arm of a campaign with several variants (A/B/n).

    ``share`` is the arm's share of the eligible users; the campaign's ``holdout`` is the
    control's share, and the shares and the holdout sum to 1. ``template``, ``offer`` and
    ``subject`` replace the strategy's for users in this arm; ``ui`` is a label for a UI
    variant, handed to the message (``{{ ui }}``, the payload and the exports) for the
    site or app to serve.
    """

    name: str = Field(description="the arm's label (as stored and evaluated)")
    share: float = Field(gt=0, lt=1, description="share of the eligible users")
    template: str | TemplateSpec | None = Field(
        default=None, description="a template under playbook.templates, or an inline one"
    )
    offer: Offer | None = Field(default=None, description="replaces the strategy's offer")
    subject: str | None = Field(
        default=None, description="replaces the template's subject line; Jinja2"
    )
    ui: str | None = Field(
        default=None,
        description="a UI variant for the site or app: a name under playbook.ui (served by "
        "GET /v1/decide), or a free label when playbook.ui is empty",
    )


class CampaignSpec(_Strict):
    """One campaign: who (segments of a segmentation, a trigger) and why (a purpose).

    With ``variants`` the treated users are split into several arms with their own
    template, offer, subject or UI label (see :class:`VariantSpec`); the control arm
    (``holdout`` share) is labelled ``control`` or the campaign's ``control``.
    """

    segmentation: str
    segments: list[str] | Literal["all"] = Field(
        default="all", description="segments to target; 'all' = every segment with a strategy"
    )
    trigger: Trigger = Field(default_factory=OneOffTrigger)
    holdout: float | None = Field(
        default=None, ge=0, lt=1, description="control share; playbook.holdout by default"
    )
    frequency_cap: FrequencyCap | None = Field(
        default=None, description="overrides playbook.frequency_cap for this campaign"
    )
    purpose: ConsentWord = Field(default="marketing", description="consent purpose required")
    channels: list[str] | None = Field(
        default=None, description="overrides the strategies' channels"
    )
    step: str | None = Field(
        default=None,
        description="idempotency step; by default 'main' (one_off), the birthday year, the "
        "promotion start or the segment run (lifecycle_transition)",
    )
    description: str | None = None
    variants: list[VariantSpec] | None = Field(
        default=None,
        description="treatment arms with their own shares (A/B/n); without it one arm, "
        "'treatment', gets 1 - holdout",
    )
    control: str | None = Field(
        default=None, description="the control arm's label with variants ('control' by default)"
    )

    def arms(self, default_holdout: float) -> dict[str, float]:
        """``{arm: share}``: the variants in order, then the control (the holdout).

        A campaign without variants has the single arm ``treatment`` (``1 - holdout``).
        """
        holdout = default_holdout if self.holdout is None else self.holdout
        control = normalize_arm(self.control or DEFAULT_CONTROL)
        if not self.variants:
            return {DEFAULT_TREATMENT: 1.0 - holdout, control: holdout}
        return {**{normalize_arm(v.name): v.share for v in self.variants}, control: holdout}

    def variant(self, arm: str) -> VariantSpec | None:
        """The variant whose arm is ``arm`` (None for the control and a plain treatment)."""
        for v in self.variants or []:
            if normalize_arm(v.name) == arm:
                return v
        return None

    def variant_problems(self, default_holdout: float, templates: list[str]) -> list[str]:
        """What is wrong with the variants (shares, names, templates), one line each."""
        if self.variants is None:
            if self.control is not None:
                return [
                    "control: a control label needs variants (add `variants:`, or remove "
                    "`control:`; a campaign without variants has arms treatment and control)"
                ]
            return []
        if not self.variants:
            return ["variants: empty; list at least one {name, share}, or remove `variants:`"]
        problems = []
        control = normalize_arm(self.control or DEFAULT_CONTROL)
        if not control:
            problems.append("control: the control arm's label is empty")
        holdout = default_holdout if self.holdout is None else self.holdout
        if holdout <= 0:
            problems.append(
                "holdout: variants need a control group (holdout > 0) to be measured against; "
                "set the campaign's holdout, e.g. holdout: 0.1"
            )
        seen: set[str] = set()
        for i, v in enumerate(self.variants):
            name = normalize_arm(v.name)
            where = f"variants[{i}]"
            if not name:
                problems.append(f"{where}.name: empty; name the arm (e.g. 'message A')")
            elif name == control:
                problems.append(
                    f"{where}.name: {v.name!r} is the control arm's label; rename the variant "
                    "or set the campaign's `control:` to another label"
                )
            elif name in seen:
                problems.append(f"{where}.name: {v.name!r} is used twice; arm names are unique")
            seen.add(name)
            if isinstance(v.template, str) and v.template not in templates:
                problems.append(
                    f"{where}.template: unknown template {v.template!r}"
                    f"{_closest(v.template, templates)}; templates: "
                    f"{', '.join(templates) or '(none defined)'}"
                )
        total = holdout + sum(v.share for v in self.variants)
        if abs(total - 1) > 1e-6:
            shares = " + ".join(f"{v.share:g}" for v in self.variants)
            problems.append(
                f"variants: the shares ({shares}) and the holdout ({holdout:g}) sum to "
                f"{total:.4g}, not 1; make the variants' shares sum to {1 - holdout:.4g}"
            )
        return problems


class EmailChannelSpec(_Strict):
    """E-mail over SMTP. The password is read from the environment variable named by
    ``password_env`` (never written in the file)."""

    type: Literal["email"]
    host: str = "localhost"
    port: int = Field(default=25, gt=0, lt=65536)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = Field(default=None, description="env var holding the password")
    from_address: str = Field(alias="from", description="From header, e.g. Shop <hi@shop.example>")
    reply_to: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    rate_per_second: float | None = Field(default=None, gt=0)
    cost_per_message: float = Field(
        default=0.0, ge=0, description="cost of one message, for `segmint evaluate` ROI"
    )
    consent: ConsentWord = Field(default="email", description="consent channel this channel needs")


class WebhookChannelSpec(_Strict):
    """JSON POST per message, signed with HMAC-SHA256 (usable for push providers)."""

    type: Literal["webhook"]
    url: str
    secret_env: str | None = Field(default=None, description="env var holding the HMAC key")
    timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=0.5, ge=0, description="first retry delay, doubled each time")
    rate_per_second: float | None = Field(default=None, gt=0)
    cost_per_message: float = Field(
        default=0.0, ge=0, description="cost of one message, for `segmint evaluate` ROI"
    )
    consent: ConsentWord = Field(default="push", description="consent channel this channel needs")

    @model_validator(mode="after")
    def _http(self) -> WebhookChannelSpec:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https:// (got {self.url!r})")
        return self


class FileChannelSpec(_Strict):
    """One row per message in a CSV or Excel file, for external tools."""

    type: Literal["file"]
    path: str = Field(
        default="campaigns/{campaign}-{run_id}.{format}",
        description="relative to the project; {campaign}, {run_id}, {format} filled in",
    )
    format: Literal["csv", "xlsx"] = "csv"
    consent: ConsentWord = Field(default="email", description="consent channel this channel needs")
    address: Literal["email", "user_id"] = Field(
        default="email", description="what a row needs: a usable e-mail, or only the user id"
    )
    cost_per_message: float = Field(
        default=0.0, ge=0, description="cost of one message, for `segmint evaluate` ROI"
    )
    rate_per_second: float | None = Field(default=None, gt=0)


ChannelSpec = Annotated[
    EmailChannelSpec | WebhookChannelSpec | FileChannelSpec, Field(discriminator="type")
]


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Playbook(_Strict):
    """The ``playbook:`` section: per segmentation and segment a strategy, the templates and
    channels they use, the campaigns, and settings shared by every campaign."""

    holdout: float = Field(default=0.10, ge=0, lt=1, description="default control share")
    frequency_cap: FrequencyCap = Field(default_factory=FrequencyCap)
    max_attempts: int = Field(default=3, ge=1, description="sends per message before giving up")
    unsubscribe_url: str = Field(
        default="http://localhost:8000/u/{token}",
        description="link put in every e-mail; must contain {token}; default: "
        "{serve.public_url}/u/{token}, the unsubscribe page of segmint serve",
    )
    secret_env: str = Field(
        default="SEGMINT_SECRET",
        description="env var with the key that signs unsubscribe tokens; if unset, a key "
        "generated once and kept in the store is used",
    )
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    templates: dict[str, TemplateSpec] = Field(default_factory=dict)
    strategies: dict[str, dict[str, Strategy]] = Field(
        default_factory=dict, description="segmentation -> segment (or '*') -> strategy"
    )
    campaigns: dict[str, CampaignSpec] = Field(default_factory=dict)
    ui: dict[str, UiVariant] = Field(
        default_factory=dict,
        description="UI variants by name (theme, layout, hero, copy); 'default' is the "
        "default experience",
    )

    @model_validator(mode="before")
    @classmethod
    def _ui_names(cls, data: object) -> object:
        """Each UI variant's name is its key."""
        if isinstance(data, dict) and isinstance(data.get("ui"), dict):
            named = {}
            for key, spec in data["ui"].items():
                if isinstance(spec, dict) and "name" not in spec:
                    spec = {**spec, "name": str(key)}
                named[key] = spec
            data = {**data, "ui": named}
        return data

    @model_validator(mode="after")
    def _references(self) -> Playbook:
        problems: list[str] = []
        channels = sorted(self.channels)
        templates = sorted(self.templates)
        problems += self._ui_problems()
        if "{token}" not in self.unsubscribe_url:
            problems.append(
                f"unsubscribe_url must contain {{token}} (got {self.unsubscribe_url!r})"
            )
        for seg_name, by_segment in self.strategies.items():
            for segment, strategy in by_segment.items():
                where = f"strategies.{seg_name}.{segment}"
                for ch in strategy.channels:
                    if ch not in self.channels:
                        problems.append(
                            f"{where}.channels: unknown channel {ch!r}{_closest(ch, channels)}; "
                            f"channels: {', '.join(channels) or '(none defined)'}"
                        )
                if isinstance(strategy.template, str) and strategy.template not in templates:
                    problems.append(
                        f"{where}.template: unknown template {strategy.template!r}"
                        f"{_closest(strategy.template, templates)}; templates: "
                        f"{', '.join(templates) or '(none defined)'}"
                    )
        for name, campaign in self.campaigns.items():
            for ch in campaign.channels or []:
                if ch not in self.channels:
                    problems.append(
                        f"campaigns.{name}.channels: unknown channel {ch!r}"
                        f"{_closest(ch, channels)}; channels: {', '.join(channels) or '(none)'}"
                    )
            problems += [
                f"campaigns.{name}.{p}" for p in campaign.variant_problems(self.holdout, templates)
            ]
            if campaign.segmentation not in self.strategies:
                known = sorted(self.strategies)
                problems.append(
                    f"campaigns.{name}.segmentation: no strategies for {campaign.segmentation!r}"
                    f"{_closest(campaign.segmentation, known)}; add playbook.strategies."
                    f"{campaign.segmentation} (strategies exist for: {', '.join(known) or 'none'})"
                )
            elif campaign.segments != "all":
                by_segment = self.strategies[campaign.segmentation]
                pins = {st.cluster for st in by_segment.values() if st.cluster}
                if ANY_SEGMENT not in by_segment:
                    for seg in campaign.segments:
                        if seg not in by_segment and seg not in pins:
                            problems.append(
                                f"campaigns.{name}.segments: no strategy for segment {seg!r} "
                                f"of {campaign.segmentation}{_closest(seg, sorted(by_segment))}"
                            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _ui_problems(self) -> list[str]:
        """UI names that name no variant of ``playbook.ui`` (a variant's label may be free
        while ``playbook.ui`` is empty, as before UI variants were served)."""
        problems = []
        uis = sorted(self.ui)
        for key, variant in self.ui.items():
            if variant.name != key:
                problems.append(f"ui.{key}.name: {variant.name!r} differs from its key {key!r}")
        for seg_name, by_segment in self.strategies.items():
            for segment, strategy in by_segment.items():
                if strategy.ui is not None and strategy.ui not in self.ui:
                    problems.append(
                        f"strategies.{seg_name}.{segment}.ui: unknown UI variant "
                        f"{strategy.ui!r}{_closest(strategy.ui, uis)}; UI variants: "
                        f"{', '.join(uis) or '(none defined; add playbook.ui)'}"
                    )
        if self.ui:
            for name, campaign in self.campaigns.items():
                for i, v in enumerate(campaign.variants or []):
                    if v.ui is not None and v.ui not in self.ui:
                        problems.append(
                            f"campaigns.{name}.variants[{i}].ui: unknown UI variant {v.ui!r}"
                            f"{_closest(v.ui, uis)}; UI variants: {', '.join(uis)}"
                        )
        return problems

    def default_ui(self) -> UiVariant:
        """The default experience: ``ui.default``, else a neutral built-in one."""
        return self.ui.get("default", DEFAULT_UI)

    def strategy_for(
        self, segmentation: str, segment: str, keys: Mapping[str, str] | None = None
    ) -> Strategy | None:
        """The strategy of one segment (its own, else the segmentation's ``'*'``).

        ``keys`` (segment -> strategy key, from :func:`~segmint.campaigns._resolve.
        resolve_segments`) finds strategies of clusters that were renamed since the
        playbook was written; a segment missing from it gets ``'*'``.
        """
        by_segment = self.strategies.get(segmentation, {})
        key = segment if keys is None else keys.get(segment)
        found = by_segment.get(key) if key is not None else None
        return found if found is not None else by_segment.get(ANY_SEGMENT)


CAMPAIGN_MODELS: tuple[type[BaseModel], ...] = (
    Playbook,
    Strategy,
    Offer,
    TemplateSpec,
    Timing,
    CampaignSpec,
    VariantSpec,
    FrequencyCap,
    BirthdayTrigger,
    PromotionTrigger,
    EmailChannelSpec,
    WebhookChannelSpec,
    FileChannelSpec,
    UiVariant,
    UiTheme,
    UiHero,
)
"""Models whose key names feed the config loader's did-you-mean."""

CAMPAIGN_TAGS = frozenset(
    {"email", "webhook", "file", "one_off", "birthday", "promotion", "lifecycle_transition"}
)
"""Discriminator tags pydantic inserts into error locations (not keys of the file)."""
