"""``GET /v1/decide``: what one person should see, in one response.

The answer comes from the in-memory :class:`~segmint.serve._snapshots.Snapshot` (a request
never touches the store): the person's segment in every segmentation's latest run, the
playbook strategy of each, the current offer, the UI variant (theme, layout, hero banner,
copy), the top recommendations of the latest batch run, the person's predicted value and
churn risk (``value``: the latest CLV and churn runs) and the arm of every campaign the
person is assigned in.

Which experience is served:

1. the first campaign (playbook order) the person is assigned in that carries a UI (a
   variant with ``ui:``, or a targeted strategy with one) governs: its control arm gets the
   default experience (default UI, no offer; ``control: true``), a treatment arm the
   variant's UI and offer, else the strategy's for the person's current segment, with the
   promotion's end as the offer's expiry;
2. otherwise the UI of the first strategy (playbook order) that has one, and the offer of
   the first strategy that has one, leaving out strategies of a segmentation in whose
   campaign the person is a control (``control: true`` when an offer was withheld);
3. an unknown person (not in the store, or an anonymous id never identified) gets the
   cold start: default UI, no offer, the most bought items of the last 30 days;
4. a known person without ``personalization`` consent gets the same as an unknown one
   (no segment, strategy, offer, UI variant, campaign arm, value or personal recommendation) with
   ``personalized: false`` and the reason. ``privacy.personalization: opt_out`` (the
   default, legitimate interest): personalized unless their latest ``personalization``
   consent row (any channel) is a revoke; ``opt_in`` (GDPR consent): only after a grant.

Every answer is logged as an exposure (:mod:`segmint.serve._exposures`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware

from segmint._playbook import Offer, Playbook, Strategy, UiVariant
from segmint.errors import RequestError
from segmint.serve._auth import require
from segmint.serve._exposures import Exposure, ExposureLog
from segmint.serve._problems import problem_response
from segmint.serve._snapshots import NO_CODE, CampaignView, Snapshot, SnapshotWorker

__all__ = [
    "CORS_PATHS",
    "Decision",
    "DecisionService",
    "PathCORS",
    "ValueOut",
    "decide",
    "decision_workers",
    "install_cors",
    "router",
]

COLD_START_REASON = "popular now"
NO_CONSENT_REASON = "no personalization consent"
UNKNOWN_REASON = "unknown person"


# -- the response -----------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class SegmentOut(_Out):
    segment: str = Field(description="the person's segment in the segmentation's latest run")
    run_id: str = Field(description="that run")


class OfferOut(_Out):
    type: str = Field(description="percent, amount, threshold, free_shipping, exclusive_access")
    code: str | None = Field(description="the voucher code, if the offer has one")
    label: str = Field(description="the offer in words, in the project's language and currency")
    expires_at: datetime | None = Field(
        description="when the offer ends (a promotion campaign's last day), if it does"
    )


class StrategyOut(_Out):
    segment: str
    strategy: str = Field(description="the strategy's key in the playbook (a segment or '*')")
    template: str | None = Field(description="its message template's name (None: inline)")
    channels: list[str]
    offer: OfferOut | None
    ui: str | None = Field(description="its UI variant")


class ThemeOut(_Out):
    primary: str
    background: str
    text: str
    accent: str


class HeroOut(_Out):
    title: str
    subtitle: str | None
    image_url: str | None
    cta_label: str | None
    cta_url: str | None


class UiOut(_Out):
    name: str = Field(description="the UI variant's name ('default' for the default)")
    theme: ThemeOut
    layout: str = Field(description="grid, list or hero")
    hero: HeroOut | None
    copy_texts: dict[str, str] = Field(alias="copy", description="texts by key")


class RecommendationOut(_Out):
    item_id: str
    title: str | None
    rank: int = Field(ge=1)
    score: float
    reason: str


class ValueOut(_Out):
    """The person's predicted value and churn risk, from the latest prediction runs."""

    clv: float | None = Field(description="expected value over the CLV horizon (latest clv run)")
    clv_low: float | None = Field(description="lower end of the CLV interval")
    clv_high: float | None = Field(description="upper end of the CLV interval")
    p_alive: float | None = Field(description="probability the person is still a customer")
    churn_risk: float | None = Field(
        description="probability of no purchase in the churn window (latest churn run)"
    )
    churn_risk_change: float | None = Field(
        description="churn risk minus the previous churn run's (None: no previous run)"
    )
    as_of: datetime | None = Field(description="the clv run's as-of date")
    run_id: str | None = Field(description="the clv run (None: no clv run)")
    churn_as_of: datetime | None = Field(description="the churn run's as-of date")
    churn_run_id: str | None = Field(description="the churn run (None: no churn run)")


class Decision(_Out):
    """One person's decision."""

    user_id: str | None = Field(description="the person (None: an anonymous id never identified)")
    anonymous_id: str | None = Field(description="the anonymous id asked about, if any")
    known: bool = Field(description="the person is in the store (false: cold start)")
    segments: dict[str, SegmentOut] = Field(description="segmentation -> segment")
    strategies: dict[str, StrategyOut] = Field(description="segmentation -> strategy")
    offer: OfferOut | None = Field(description="the offer to show (None: no offer)")
    ui: UiOut
    recommendations: list[RecommendationOut]
    value: ValueOut | None = Field(
        description="predicted value and churn risk (None: no prediction for the person, "
        "or the answer is not personal)"
    )
    experiments: dict[str, str] = Field(description="campaign -> the person's arm")
    control: bool = Field(description="a control arm decided: the default experience is served")
    personalized: bool = Field(
        description="the answer is personal (false: an unknown person, or no personalization "
        "consent — privacy.personalization)"
    )
    reason: str | None = Field(
        description="why the answer is not personal ('no personalization consent', "
        "'unknown person'); None when it is"
    )
    snapshot_id: str = Field(description="the snapshot of the runs the answer comes from")
    served_at: datetime


# -- the decision -----------------------------------------------------------------------


class DecisionService:
    """The snapshot worker, the exposure log and what renders offers and UI variants."""

    def __init__(
        self,
        snapshots: SnapshotWorker,
        exposures: ExposureLog,
        *,
        locale: str = "en",
        currency: str | None = None,
    ) -> None:
        from segmint._i18n import language

        self.snapshots = snapshots
        self.exposures = exposures
        self.lang = language(locale)
        self.currency = currency
        self._offers: dict[int, dict[str, Any] | None] = {}
        self._uis: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}

    @property
    def snapshot(self) -> Snapshot:
        snap = self.snapshots.current
        if snap is None:
            raise RequestError(503, "decisions are not ready yet: the first snapshot is building")
        return snap

    def offer(
        self, offer: Offer | None, expires_at: datetime | None = None
    ) -> dict[str, Any] | None:
        if offer is None or offer.type == "none":
            return None
        key = id(offer)
        if key not in self._offers:  # offers live as long as the playbook: id is stable
            self._offers[key] = {
                "type": "percent" if offer.type == "discount" else offer.type,
                "code": offer.code,
                "label": offer.text(self.lang, self.currency),
                "expires_at": None,
            }
        out = self._offers[key]
        return out if expires_at is None or out is None else {**out, "expires_at": expires_at}

    def ui(
        self, playbook: Playbook, name: str | None, offer: dict[str, Any] | None
    ) -> dict[str, Any]:
        label = offer["label"] if offer else None
        code = offer["code"] if offer else None
        key = (name or "default", label, code)
        found = self._uis.get(key)
        if found is None:
            found = _ui_out(playbook, name, label, code)
            if len(self._uis) < 10_000:
                self._uis[key] = found
        return found


def _fill(text: str | None, label: str | None, code: str | None) -> str | None:
    """``{offer}`` and ``{code}`` filled in; None when the text needs one that is missing."""
    if text is None or "{" not in text:
        return text
    if ("{offer}" in text and not label) or ("{code}" in text and not code):
        return None
    return text.replace("{offer}", label or "").replace("{code}", code or "")


def _ui_out(
    playbook: Playbook, name: str | None, label: str | None, code: str | None
) -> dict[str, Any]:
    default = playbook.default_ui()
    variant: UiVariant = default if name is None else playbook.ui.get(name, default)
    hero = None
    if variant.hero is not None:
        h = variant.hero
        title = _fill(h.title, label, code)
        if title is None:  # a banner about an offer, and there is none: the default's
            title = default.hero.title if default.hero is not None else ""
        hero = {
            "title": title,
            "subtitle": _fill(h.subtitle, label, code),
            "image_url": h.image_url,
            "cta_label": h.cta_label,
            "cta_url": h.cta_url,
        }
    texts = {k: _fill(v, label, code) for k, v in variant.copy_texts.items()}
    return {
        # a variant's free label (no playbook.ui entry) is passed on with the default's look
        "name": name or variant.name or "default",
        "theme": variant.theme.model_dump(),
        "layout": variant.layout,
        "hero": hero,
        "copy": {k: v for k, v in texts.items() if v is not None},
    }


def _strategy_out(
    service: DecisionService, key: str, strategy: Strategy, segment: str
) -> dict[str, Any]:
    return {
        "segment": segment,
        "strategy": key,
        "template": strategy.template if isinstance(strategy.template, str) else None,
        "channels": list(strategy.channels),
        "offer": service.offer(strategy.offer),
        "ui": strategy.ui,
    }


def _recommendations(snap: Snapshot, row: int, n: int) -> list[dict[str, Any]]:
    if row >= 0 and n > 0 and snap.rec_items.shape[1] and snap.rec_items[row, 0] != NO_CODE:
        items = snap.rec_items[row, :n]
        scores = snap.rec_scores[row, :n]
        reasons = snap.rec_reasons[row, :n]
        return [
            {
                "item_id": snap.items[code],
                "title": snap.titles[code],
                "rank": k + 1,
                "score": float(scores[k]),
                "reason": snap.reasons[reasons[k]],
            }
            for k, code in enumerate(items.tolist())
            if code != NO_CODE
        ]
    return [
        {
            "item_id": item,
            "title": title,
            "rank": k + 1,
            "score": score,
            "reason": COLD_START_REASON,
        }
        for k, (item, title, score) in enumerate(snap.popular[: max(n, 0)])
    ]


_Chosen = dict[str, tuple[str, Strategy, str]]  # segmentation -> (key, strategy, segment)
_Where = tuple[str | None, str | None, str | None, str | None]  # campaign, arm, seg'n, segment


def _segments(
    service: DecisionService, snap: Snapshot, row: int
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]], _Chosen]:
    """The person's segment and strategy in every segmentation's latest run."""
    segments: dict[str, dict[str, str]] = {}
    strategies: dict[str, dict[str, Any]] = {}
    chosen: _Chosen = {}
    for view in snap.segmentations:
        code = int(view.codes[row])
        if code == NO_CODE:
            continue
        segment = view.segments[code]
        segments[view.name] = {"segment": segment, "run_id": view.run_id}
        found = view.strategies[code]
        if found is not None:
            chosen[view.name] = (found[0], found[1], segment)
            strategies[view.name] = _strategy_out(service, found[0], found[1], segment)
    return segments, strategies, chosen


@dataclass
class _Arms:
    """The person's campaign arms and what they imply."""

    experiments: dict[str, str] = field(default_factory=dict)
    held_out: set[str] = field(default_factory=set)  # segmentations with a control arm
    treated_until: dict[str, datetime] = field(default_factory=dict)  # promotion ends
    governing: tuple[CampaignView, str] | None = None  # the first UI campaign and its arm


def _arms(snap: Snapshot, row: int) -> _Arms:
    out = _Arms()
    for view in snap.campaigns:
        code = int(view.codes[row])
        if code == NO_CODE:
            continue
        arm = view.arms[code]
        out.experiments[view.name] = arm
        if arm == view.control:
            out.held_out.add(view.spec.segmentation)
        elif view.expires_at is not None:
            out.treated_until.setdefault(view.spec.segmentation, view.expires_at)
        if out.governing is None and view.carries_ui:
            out.governing = (view, arm)
    return out


def _campaign_experience(
    service: DecisionService, view: CampaignView, arm: str, chosen: _Chosen
) -> tuple[str | None, dict[str, Any] | None, bool]:
    """(UI name, offer, control) in a UI campaign: the control gets the default."""
    if arm == view.control:
        return None, None, True
    variant = view.spec.variant(arm)
    current = chosen.get(view.spec.segmentation)
    strategy = current[1] if current else None
    ui_name = (variant.ui if variant else None) or (strategy.ui if strategy else None)
    offer = (variant.offer if variant else None) or (strategy.offer if strategy else None)
    return ui_name, service.offer(offer, view.expires_at), False


def _strategy_experience(
    service: DecisionService, arms: _Arms, chosen: _Chosen
) -> tuple[str | None, dict[str, Any] | None, bool, _Where]:
    """(UI name, offer, control, where) from the strategies, in playbook order."""
    ui_name, offer, control = None, None, False
    where: _Where = (None, None, None, None)
    for seg_name, (_, strategy, segment) in chosen.items():
        if strategy.ui is not None:
            ui_name, where = strategy.ui, (None, None, seg_name, segment)
            break
    for seg_name, (_, strategy, segment) in chosen.items():
        if strategy.offer.type == "none":
            continue
        if seg_name in arms.held_out:  # a control of this segmentation's campaign
            control = True
            continue
        offer = service.offer(strategy.offer, arms.treated_until.get(seg_name))
        if where[2] is None:
            where = (None, None, seg_name, segment)
        break
    if where[2] is None and chosen:
        seg_name, (_, _, segment) = next(iter(chosen.items()))
        where = (None, None, seg_name, segment)
    return ui_name, offer, control, where


def decide(
    service: DecisionService,
    snap: Snapshot,
    user_id: str | None,
    *,
    anonymous_id: str | None = None,
    n: int = 10,
) -> tuple[dict[str, Any], Exposure]:
    """The decision for ``user_id`` (None: an unknown anonymous person) and its exposure."""
    row = snap.row_of(user_id) if user_id is not None else -1
    personal = snap.personalized(row)
    reason = None if personal else (NO_CONSENT_REASON if row >= 0 else UNKNOWN_REASON)
    segments: dict[str, dict[str, str]] = {}
    strategies: dict[str, dict[str, Any]] = {}
    arms = _Arms()
    ui_name, offer, control = None, None, False
    where: _Where = (None, None, None, None)
    if personal:
        segments, strategies, chosen = _segments(service, snap, row)
        arms = _arms(snap, row)
        if arms.governing is not None:
            view, arm = arms.governing
            seg_name = view.spec.segmentation
            where = (view.name, arm, seg_name, segments.get(seg_name, {}).get("segment"))
            ui_name, offer, control = _campaign_experience(service, view, arm, chosen)
        else:
            ui_name, offer, control, where = _strategy_experience(service, arms, chosen)
    ui = service.ui(snap.playbook, ui_name, offer)
    served_at = datetime.now(UTC)
    decision = {
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "known": row >= 0,
        "segments": segments,
        "strategies": strategies,
        "offer": offer,
        "ui": ui,
        "recommendations": _recommendations(snap, row if personal else -1, n),
        "value": snap.value.of(row) if personal and snap.value is not None else None,
        "experiments": arms.experiments,
        "control": control,
        "personalized": personal,
        "reason": reason,
        "snapshot_id": snap.snapshot_id,
        "served_at": served_at,
    }
    offer_code = offer["code"] if offer else None
    exposure = Exposure(
        uuid.uuid4().hex,
        served_at,
        user_id,
        anonymous_id,
        *where,
        ui["name"],
        offer_code,
        snap.snapshot_id,
    )
    return decision, exposure


# -- the endpoints ----------------------------------------------------------------------

router = APIRouter(prefix="/v1", tags=["decisions"])

_N = Query(
    ge=0,
    le=100,
    description="recommendations to return (at most the snapshot's depth, "
    "serve.decide_recommendations)",
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("no key, or an unknown or revoked one"),
    403: problem_response("the key may not read decisions (needs a decide or admin key)"),
    503: problem_response("the first snapshot is still building"),
}


# called in the endpoint rather than as a dependency: a plain-function dependency costs a
# thread-pool hop per request, and the key ring answers from memory (it reads the store
# once every few seconds, a query of a few rows)
_DECIDE_KEY = require("decide")


def _serve(
    request: Request, snap: Snapshot, user_id: str | None, anonymous_id: str | None, n: int
) -> Any:
    service: DecisionService = request.app.state.decisions
    decision, exposure = decide(service, snap, user_id, anonymous_id=anonymous_id, n=n)
    service.exposures.add(exposure)
    return decision


@router.get(
    "/decide/{user_id}",
    response_model=Decision,
    summary="The decision for a known user id: segments, strategy, offer, UI, recommendations",
    responses=_RESPONSES,
)
async def decide_user(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    n: Annotated[int, _N] = 10,
) -> Any:
    """A user the store knows gets their segments' experience; one it does not (a user
    not loaded yet) gets the cold start with ``known: false``."""
    _DECIDE_KEY(request)
    return _serve(request, request.app.state.decisions.snapshot, user_id, None, n)


@router.get(
    "/decide",
    response_model=Decision,
    summary="The decision for an anonymous visitor (resolved through identify/alias)",
    responses=_RESPONSES,
)
async def decide_anonymous(
    request: Request,
    anonymous_id: Annotated[str, Query(min_length=1, max_length=256)],
    n: Annotated[int, _N] = 10,
) -> Any:
    """An anonymous id stitched to a user (``identify``/``alias``) gets that user's
    decision; any other gets the cold start (``known: false``, ``user_id: null``)."""
    _DECIDE_KEY(request)
    snap: Snapshot = request.app.state.decisions.snapshot
    user_id = snap.user_of_anonymous(anonymous_id)
    return _serve(request, snap, user_id, anonymous_id, n)


def decision_workers(app: FastAPI) -> list[Any]:
    """Set up ``app.state.decisions`` for the app's project; its workers (the snapshot
    worker first, so the first snapshot is in before requests come)."""
    project = app.state.project
    config = project.config
    settings = config.serve
    from segmint.serve._app import hold_store

    def hold() -> Any:  # the service's holder: never project.store
        return hold_store(app)

    snapshots = SnapshotWorker(
        hold,
        lambda: project.config.playbook,  # follows segmint.yaml (the workspace reloads it)
        depth=settings.decide_recommendations,
        poll_seconds=settings.decide_refresh_seconds,
        personalization=lambda: project.config.privacy.personalization,
    )
    exposures = ExposureLog(hold)
    app.state.decisions = DecisionService(
        snapshots, exposures, locale=config.locale, currency=config.currency
    )
    return [snapshots, exposures]


# -- CORS -------------------------------------------------------------------------------

CORS_PATHS = (
    "/v1/decide",
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/alias",
    "/v1/batch",
)
"""The endpoints a browser may call from another origin (``serve.cors_origins``)."""

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class PathCORS:
    """CORS for the tracking and decision endpoints only, for the configured origins.

    A request from an allowed origin to one of :data:`CORS_PATHS` goes through Starlette's
    ``CORSMiddleware`` (preflights answered, ``Access-Control-Allow-Origin`` on responses,
    errors included); any other request goes straight to the app, so another origin gets no
    CORS header at all and its browser blocks the response.
    """

    def __init__(self, app: ASGIApp, origins: list[str], paths: tuple[str, ...] = CORS_PATHS):
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.paths = paths
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    def _allowed(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if not any(path == p or path.startswith(p + "/") for p in self.paths):
            return False
        for name, value in scope.get("headers", []):
            if name == b"origin":
                return self.any_origin or value.decode("latin-1") in self.origins
        return False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._allowed(scope):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_cors(app: FastAPI) -> None:
    """Add :class:`PathCORS` for ``serve.cors_origins`` (nothing when it is empty)."""
    origins = list(app.state.project.config.serve.cors_origins)
    if origins:
        app.add_middleware(PathCORS, origins=origins)  # type: ignore[arg-type]
