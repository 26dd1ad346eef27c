"""The workspace's Campaigns pages: the playbook per segment and the campaigns, editing a
strategy and creating a campaign (validated like ``segmint.yaml``, shown as a diff, then
written back to it).

One campaign's page (plan, preview, send, progress) is :mod:`segmint.web._campaign`, its
results :mod:`segmint.web._results`; their routes are included here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.web import _campaign, _results
from segmint.web._auth import Editor, Viewer
from segmint.web._campaign import TRIGGERS, strategy_view
from segmint.web._config_edit import ConfigChangedError, Proposal, current, propose, save
from segmint.web._core import fragment, language_of, page, record, workspace
from segmint.web._playbook_forms import (
    N_CHANNEL_CHOICES,
    OFFER_TYPES,
    Change,
    campaign_changes,
    error_lines,
    strategy_changes,
    strategy_initial,
)
from segmint.web._text import N_

router = APIRouter()

PLAN_STATUSES = (N_("planned"), N_("sending"), N_("completed"), N_("imported"))
"""A plan's status, as the pages show it (``t(status)``)."""


# -- reading the store: small aggregates for display --------------------------------------
SEGMENTS_SQL = (
    "WITH latest AS (SELECT run_id, segmentation FROM (SELECT run_id, segmentation, "
    "row_number() OVER (PARTITION BY segmentation ORDER BY created_at DESC, run_id DESC) "
    "AS rn FROM segment_runs) r WHERE rn = 1) "
    "SELECT l.segmentation, a.segment, count(*) AS n FROM segment_assignments a "
    "JOIN latest l ON l.run_id = a.run_id GROUP BY l.segmentation, a.segment "
    "ORDER BY l.segmentation, n DESC, a.segment"
)
PLANS_SQL = (
    "SELECT campaign, run_id, created_at, status, n_eligible, n_treatment, n_control FROM "
    "(SELECT campaign, run_id, created_at, status, n_eligible, n_treatment, n_control, "
    "row_number() OVER (PARTITION BY campaign ORDER BY created_at DESC, run_id DESC) AS rn "
    "FROM campaign_runs) r WHERE rn = 1"
)
SENT_SQL = "SELECT campaign, status, count(*) AS n FROM deliveries GROUP BY campaign, status"
EVALUATED_SQL = (
    "SELECT campaign, max(created_at) AS evaluated_at FROM campaign_evaluations GROUP BY campaign"
)


def segment_sizes(store: Any) -> dict[str, dict[str, int]]:
    """segmentation -> segment -> users, in each segmentation's latest run."""
    out: dict[str, dict[str, int]] = {}
    for seg, segment, n in store.query(SEGMENTS_SQL).itertuples(index=False):
        out.setdefault(str(seg), {})[str(segment)] = int(n)
    return out


def _campaign_facts(store: Any) -> tuple[dict[str, Any], dict[str, dict[str, int]], dict[str, Any]]:
    plans = {r["campaign"]: r for r in store.query(PLANS_SQL).to_dict("records")}
    sent: dict[str, dict[str, int]] = {}
    for campaign, status, n in store.query(SENT_SQL).itertuples(index=False):
        sent.setdefault(str(campaign), {})[str(status)] = int(n)
    evaluated = {str(c): ts for c, ts in store.query(EVALUATED_SQL).itertuples(index=False)}
    return plans, sent, evaluated


# -- the playbook as the page shows it -------------------------------------------------------
def playbook_view(config: Any, sizes: dict[str, dict[str, int]], lang: Any) -> list[dict[str, Any]]:
    """Per segmentation: every segment of its latest run with its strategy (its own, the
    catch-all '*', or none), then strategies naming no segment of that run."""
    playbook = config.playbook
    names = list(dict.fromkeys([*config.segmentations, *playbook.strategies]))
    out = []
    for name in names:
        own = playbook.strategies.get(name, {})
        in_run = sizes.get(name, {})
        rows = []
        for segment, n in in_run.items():
            strategy = own.get(segment)
            rows.append(
                {
                    "segment": segment,
                    "n": n,
                    "own": strategy is not None,
                    "strategy": strategy_view(strategy or own.get("*"), lang, config.currency)
                    if (strategy or own.get("*")) is not None
                    else None,
                }
            )
        for segment, strategy in own.items():
            if segment not in in_run:
                rows.append(
                    {
                        "segment": segment,
                        "n": None,
                        "own": True,
                        "strategy": strategy_view(strategy, lang, config.currency),
                    }
                )
        out.append({"name": name, "rows": rows, "has_run": bool(in_run)})
    return out


def campaigns_view(config: Any, store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The playbook's campaigns with their latest plan, deliveries and evaluation; then
    campaigns known only from the store (imported ones)."""
    plans, sent, evaluated = _campaign_facts(store)
    rows = []
    for name, spec in config.playbook.campaigns.items():
        rows.append(
            {
                "name": name,
                "spec": spec,
                "segments": spec.segments if spec.segments != "all" else None,
                "trigger": TRIGGERS.get(spec.trigger.type, spec.trigger.type),
                "plan": plans.get(name),
                "sent": sent.get(name, {}),
                "evaluated_at": evaluated.get(name),
            }
        )
    others = [
        {"name": name, "plan": plans.get(name), "evaluated_at": evaluated.get(name)}
        for name in sorted(set(plans) | set(evaluated))
        if name not in config.playbook.campaigns
    ]
    return rows, others


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, session: Viewer) -> HTMLResponse:
    ws = workspace(request)
    lang = language_of(request)
    with ws.project() as p:
        config = p.config
        sizes = segment_sizes(p.store)
        campaigns, others = campaigns_view(config, p.store)
    return page(
        request,
        "campaigns.html.j2",
        active="campaigns",
        title=N_("Campaigns"),
        playbook=playbook_view(config, sizes, lang),
        campaigns=campaigns,
        others=others,
        saved=request.query_params.get("saved"),
    )


# -- editing segmint.yaml: propose (validated diff), then save -------------------------------
def proposal_of(request: Request, changes: list[Change]) -> tuple[Proposal | None, list[str]]:
    """The validated edit, or what is wrong with it (the loader's words)."""
    from segmint.errors import ConfigError

    try:
        return propose(workspace(request).config_path, changes), []
    except ConfigError as exc:
        return None, error_lines(str(exc))


def save_changes(
    request: Request, actor: str, changes: list[Change], base_sha: str, target: str
) -> list[str]:
    """Write the edit if it is valid and the file is still the one the form was made from;
    returns the problems (empty when saved)."""
    from segmint.errors import ConfigError

    ws = workspace(request)
    proposal, problems = proposal_of(request, changes)
    if proposal is None:
        return problems
    try:
        kept = save(ws.config_path, proposal.text, base_sha)
    except ConfigChangedError as exc:
        return [str(exc)]
    except ConfigError as exc:
        return error_lines(str(exc))
    ws.note_saved()
    with ws.host.hold_store() as store:
        record(store, actor, "config.save", target, section="playbook", kept=str(kept or ""))
    return []


def _diff_part(
    request: Request, changes: list[Change], problems: list[str], status: int = 200
) -> HTMLResponse:
    proposal: Proposal | None = None
    if not problems:
        proposal, problems = proposal_of(request, changes)
    return fragment(
        request,
        "campaign_diff_part.html.j2",
        status=status,
        problems=problems,
        proposal=proposal,
    )


def _form_base(request: Request) -> dict[str, Any]:
    ws = workspace(request)
    config = ws.config()
    _, base_sha = current(ws.config_path)
    return {"config": config, "base_sha": base_sha, "playbook": config.playbook}


# -- a strategy -------------------------------------------------------------------------------
@router.get("/campaigns/strategy", response_class=HTMLResponse)
def strategy_page(request: Request, session: Editor) -> HTMLResponse:
    segmentation = request.query_params.get("segmentation", "")
    segment = request.query_params.get("segment", "")
    base = _form_base(request)
    if (
        segmentation not in base["config"].segmentations
        and segmentation not in base["playbook"].strategies
    ):
        from segmint.web._app import message

        return message(request, 404, N_("Not found"), N_("No such segmentation."), "/campaigns")
    return _strategy_form(request, segmentation, segment, base, [], 200)


def _strategy_form(
    request: Request,
    segmentation: str,
    segment: str,
    base: dict[str, Any],
    problems: list[str],
    status: int,
    form: Any = None,
) -> HTMLResponse:
    own = base["playbook"].strategies.get(segmentation, {})
    strategy = own.get(segment)
    values = strategy_initial(strategy or own.get("*"), form)
    if strategy is None and own.get("*") is None and form is None:
        values["channel_1"] = next(iter(base["playbook"].channels), "")
    return page(
        request,
        "campaign_strategy.html.j2",
        active="campaigns",
        title=N_("Edit strategy"),
        status=status,
        segmentation=segmentation,
        segment=segment,
        strategy=strategy,
        values=values,
        offer_types=OFFER_TYPES,
        n_channel_choices=N_CHANNEL_CHOICES,
        problems=problems,
        **base,
    )


@router.post("/campaigns/strategy/preview", response_class=HTMLResponse)
async def strategy_preview(request: Request, session: Editor) -> HTMLResponse:
    form = await request.form()
    _, changes, problems = strategy_changes(form, workspace(request).config().playbook)
    return _diff_part(request, changes, problems)


@router.post("/campaigns/strategy")
async def strategy_save(request: Request, session: Editor) -> Response:
    form = await request.form()
    base = _form_base(request)
    (segmentation, segment), changes, problems = strategy_changes(form, base["playbook"])
    if not problems and changes:
        target = f"playbook.strategies.{segmentation}.{segment}"
        problems = save_changes(request, session.name, changes, str(form.get("base_sha")), target)
    if problems:
        return _strategy_form(request, segmentation, segment, base, problems, 400, form)
    return RedirectResponse("/campaigns?saved=strategy", status_code=303)


# -- a new campaign ---------------------------------------------------------------------------
@router.get("/campaigns/new", response_class=HTMLResponse)
def new_campaign_page(request: Request, session: Editor) -> HTMLResponse:
    return _new_form(request, request.query_params, [], 200)


def _new_form(request: Request, form: Any, problems: list[str], status: int) -> HTMLResponse:
    base = _form_base(request)
    with workspace(request).project() as p:
        sizes = segment_sizes(p.store)
    segmentation = (form.get("segmentation") or "").strip()
    chosen = set(form.getlist("segments")) if hasattr(form, "getlist") else set()
    if not chosen and form.get("segment"):
        chosen = {form.get("segment")}
    return page(
        request,
        "campaign_new.html.j2",
        active="campaigns",
        title=N_("New campaign"),
        status=status,
        sizes=sizes,
        segmentation=segmentation,
        segments=sizes.get(segmentation, {}),
        chosen=chosen,
        strategies=base["playbook"].strategies.get(segmentation, {}),
        purposes=base["config"].consent.all_purposes,
        form=form,
        problems=problems,
        **base,
    )


@router.post("/campaigns/new/preview", response_class=HTMLResponse)
async def new_campaign_preview(request: Request, session: Editor) -> HTMLResponse:
    form = await request.form()
    _, changes, problems = campaign_changes(form, workspace(request).config().playbook)
    return _diff_part(request, changes, problems)


@router.post("/campaigns/new")
async def new_campaign_save(request: Request, session: Editor) -> Response:
    form = await request.form()
    name, changes, problems = campaign_changes(form, workspace(request).config().playbook)
    if not problems:
        target = f"playbook.campaigns.{name}"
        problems = save_changes(request, session.name, changes, str(form.get("base_sha")), target)
    if problems:
        return _new_form(request, form, problems, 400)
    return RedirectResponse(f"/campaigns/{name}?saved=1", status_code=303)


router.include_router(_campaign.router)
router.include_router(_results.router)
