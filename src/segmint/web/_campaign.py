"""One campaign's page: its plan (the funnel with every exclusion, the arms, the template
check), three real messages, the send with a confirmation step and its live progress."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.web._auth import Editor, Viewer
from segmint.web._charts import bars
from segmint.web._core import fragment, language_of, page, record, workspace
from segmint.web._sending import sends_of
from segmint.web._text import N_

router = APIRouter()

TRIGGERS = {
    "one_off": N_("once"),
    "birthday": N_("birthdays"),
    "promotion": N_("promotion"),
    "lifecycle_transition": N_("newly entering the segment"),
}

FUNNEL_STEPS = {
    "in the campaign's segments": N_("in the campaign's segments"),
    "not triggered": N_("not triggered"),
    "already in the segment at the previous run": N_("already in the segment at the previous run"),
    "unsubscribed": N_("unsubscribed"),
    "no consent for the channel and purpose": N_("no consent for the channel and purpose"),
    "suppressed": N_("suppressed"),
    "frequency cap reached": N_("frequency cap reached"),
    "no usable address": N_("no usable address"),
    "holdout (control group)": N_("holdout (control group)"),
}
"""The plan's funnel steps (``segmint.campaigns.REASONS`` between the first and the last)."""

FUNNEL_SHORT = {
    "in the campaign's segments": N_("in segments"),
    "not triggered": N_("not triggered"),
    "already in the segment at the previous run": N_("not new"),
    "unsubscribed": N_("unsubscribed"),
    "no consent for the channel and purpose": N_("no consent"),
    "suppressed": N_("suppressed"),
    "frequency cap reached": N_("capped"),
    "no usable address": N_("no address"),
    "holdout (control group)": N_("control group"),
}
"""Short step names for the funnel chart (its labels are cut at 22 characters)."""

STATUSES = {
    "pending": N_("waiting"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "failed": N_("failed (retried)"),
    "rejected": N_("rejected"),
    "skipped": N_("skipped"),
}

PROGRESS_SQL = (
    "SELECT a.arm, d.status, count(*) AS n FROM deliveries d JOIN campaign_audiences a "
    "ON a.idempotency_key = d.idempotency_key AND a.run_id = d.run_id "
    "WHERE d.run_id = ? GROUP BY a.arm, d.status ORDER BY a.arm, d.status"
)
ALREADY_SENT_SQL = (
    "SELECT count(*) FROM campaign_audiences a JOIN deliveries d "
    "ON d.idempotency_key = a.idempotency_key WHERE a.run_id = ? AND a.arm <> ? "
    "AND d.status = 'sent'"
)
EVALUATED_SQL = "SELECT max(created_at) FROM campaign_evaluations WHERE campaign = ?"

FRAME_HEAD = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; img-src data:\">"
)
"""Put before an e-mail's HTML in its preview frame (sandboxed: no script, no forms, no
same origin): nothing remote loads either (no image, font or style from the Internet)."""

_POWER: OrderedDict[str, dict[str, Any]] = OrderedDict()
"""What a fresh plan could detect (baseline, MDE, warnings) by run id: the library computes
it when it plans, and a stored plan does not keep it (the last 64 plans made here)."""


def _remember_power(plan: Any) -> None:
    _POWER[plan.run_id] = {"baseline": plan.baseline, "mde": plan.mde, "warnings": plan.warnings}
    while len(_POWER) > 64:
        _POWER.popitem(last=False)


def _not_found(request: Request) -> HTMLResponse:
    from segmint.web._app import message

    return message(
        request, 404, N_("Not found"), N_("No campaign of that name."), back="/campaigns"
    )


def progress_of(store: Any, plan: Any) -> dict[str, Any]:
    """Delivery counts of a plan by status and arm (its rows in the delivery log)."""
    frame = store.query(PROGRESS_SQL, [plan.run_id])
    by_status: dict[str, int] = {}
    by_arm: dict[str, dict[str, int]] = {}
    for arm, status, n in frame.itertuples(index=False):
        by_status[str(status)] = by_status.get(str(status), 0) + int(n)
        by_arm.setdefault(str(arm), {})[str(status)] = int(n)
    in_log = sum(by_status.values())
    return {
        "by_status": by_status,
        "by_arm": by_arm,
        "in_log": in_log,
        "done": in_log - by_status.get("pending", 0) - by_status.get("sending", 0),
        "n_treatment": plan.n_treatment,
    }


def _funnel_chart(plan: Any, t: Any, f: Any) -> Any:
    rows = [
        (t(FUNNEL_SHORT.get(str(r.step), str(r.step))), float(r.remaining), f.count(r.remaining))
        for r in plan.funnel.itertuples(index=False)
        if r.step == plan.funnel["step"].iloc[0] or r.excluded
    ]
    return bars(rows, title=t(N_("Audience after each step")), axis_label=t(N_("Users left")))


def _messages(
    store: Any, config: Any, name: str, plan: Any, actor: str
) -> tuple[list[Any], str | None]:
    """Three real messages of the plan (none for a plan without treated users)."""
    from segmint.campaigns import preview
    from segmint.errors import SegmintError

    if plan is None or plan.n_treatment == 0 or name not in config.playbook.campaigns:
        return [], None
    try:
        return preview(store, config, name, n=3, run_id=plan.run_id, actor=actor), None
    except SegmintError as exc:
        return [], str(exc)


def campaign_response(
    request: Request,
    name: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The campaign's page (``notice``/``error``: a message id, or the library's words)."""
    from segmint.campaigns import latest_plan

    ws = workspace(request)
    lang = language_of(request)
    with ws.project() as p:
        config = p.config
        spec = config.playbook.campaigns.get(name)
        plan = latest_plan(p.store, name)
        if spec is None and plan is None:
            return _not_found(request)
        who = request.state.session.name  # the signed-in person: the audit log's actor
        messages, preview_error = _messages(p.store, config, name, plan, who)
        progress = progress_of(p.store, plan) if plan is not None else None
        evaluated_at = p.store.scalar(EVALUATED_SQL, [name])
    from segmint.web._core import Formats

    f = Formats(lang, config.currency)
    return page(
        request,
        "campaign.html.j2",
        active="campaigns",
        title=N_("Campaign"),
        status=status,
        name=name,
        spec=spec,
        plan=plan,
        power=_POWER.get(plan.run_id) if plan is not None else None,
        funnel_steps=FUNNEL_STEPS,
        funnel_chart=_funnel_chart(plan, lang.t, f) if plan is not None else None,
        messages=messages,
        preview_error=preview_error,
        progress=progress,
        statuses=STATUSES,
        send=sends_of(request.app).get(name),
        evaluated_at=evaluated_at,
        notice=notice,
        error=error,
        strategies=_strategies(config, spec, lang) if spec is not None else [],
        triggers=TRIGGERS,
        frame_head=FRAME_HEAD,
    )


def strategy_view(strategy: Any, lang: Any, currency: str) -> dict[str, Any]:
    """What a strategy row shows."""
    return {
        "offer": strategy.offer.text(lang, currency) or "",
        "offer_type": strategy.offer.type,
        "channels": list(strategy.channels),
        "template": strategy.template if isinstance(strategy.template, str) else None,
        "ui": strategy.ui,
        "recs": strategy.n_recommendations if strategy.include_recommendations else 0,
        "cluster": strategy.cluster,
    }


def _strategies(config: Any, spec: Any, lang: Any) -> list[tuple[str, dict[str, Any]]]:
    """The strategies the campaign's segments get (its segments, or all of them)."""

    own = config.playbook.strategies.get(spec.segmentation, {})
    names = list(own) if spec.segments == "all" else list(spec.segments)
    out = []
    for segment in names:
        strategy = own.get(segment) or own.get("*")
        if strategy is not None:
            out.append((segment, strategy_view(strategy, lang, config.currency)))
    return out


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign_page(request: Request, name: str, session: Viewer) -> HTMLResponse:
    notice = N_("Saved to segmint.yaml.") if request.query_params.get("saved") else None
    if request.query_params.get("planned"):
        notice = N_("Planned: the audience is stored and every template rendered on real people.")
    if request.query_params.get("sending"):
        notice = N_("Sending has started; the progress below updates by itself.")
    return campaign_response(request, name, notice=notice)


@router.post("/campaigns/{name}/plan")
def plan_page(request: Request, name: str, session: Editor) -> Response:
    from segmint.campaigns import plan_campaign
    from segmint.errors import SegmintError

    ws = workspace(request)
    if name not in ws.config().playbook.campaigns:
        return _not_found(request)
    if sends_of(request.app).running(name):
        return campaign_response(
            request,
            name,
            error=N_("A send of this campaign is running; plan again when it has finished."),
            status=409,
        )
    try:
        with ws.project() as p:
            plan = plan_campaign(p.store, p.config, name)
            record(p.store, session.name, "campaign.plan", name, run_id=plan.run_id,
                   n_treatment=plan.n_treatment, n_control=plan.n_control)  # fmt: skip
    except SegmintError as exc:
        return campaign_response(request, name, error=str(exc), status=400)
    _remember_power(plan)
    return RedirectResponse(f"/campaigns/{name}?planned=1#plan", status_code=303)


@router.get("/campaigns/{name}/progress", response_class=HTMLResponse)
def progress_part(request: Request, name: str, session: Viewer) -> HTMLResponse:
    from segmint.campaigns import latest_plan

    ws = workspace(request)
    send = sends_of(request.app).get(name)
    with ws.project() as p:
        if name not in p.config.playbook.campaigns:
            return fragment(request, "campaign_progress_part.html.j2", status=404, progress=None)
        plan = latest_plan(p.store, name)
        progress = progress_of(p.store, plan) if plan is not None else None
    return fragment(
        request,
        "campaign_progress_part.html.j2",
        name=name,
        plan=plan,
        progress=progress,
        statuses=STATUSES,
        send=send,
    )


# -- sending: a confirmation, then a background send ----------------------------------------
def _channel_targets(config: Any, plan: Any) -> list[dict[str, Any]]:
    """Each channel the plan uses: how many treated users, and where it sends."""
    per: dict[str, int] = {}
    for r in plan.by_segment.itertuples(index=False):
        per[str(r.channel)] = per.get(str(r.channel), 0) + int(r.treatment)
    out = []
    for channel, n in per.items():
        spec = config.playbook.channels.get(channel)
        kind = getattr(spec, "type", "")
        where = (
            f"{spec.host}:{spec.port}" if kind == "email"
            else spec.url if kind == "webhook"
            else spec.path if kind == "file"
            else ""
        )  # fmt: skip
        out.append({"channel": channel, "type": kind, "where": where, "n": n})
    return out


def send_confirmation(
    request: Request, name: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    from segmint.campaigns import latest_plan

    ws = workspace(request)
    with ws.project() as p:
        config = p.config
        if name not in config.playbook.campaigns:
            return _not_found(request)
        plan = latest_plan(p.store, name)
        already = (
            int(p.store.scalar(ALREADY_SENT_SQL, [plan.run_id, plan.control]) or 0)
            if plan is not None
            else 0
        )
    return page(
        request,
        "campaign_send.html.j2",
        active="campaigns",
        title=N_("Send campaign"),
        status=status,
        name=name,
        spec=config.playbook.campaigns[name],
        plan=plan,
        already=already,
        to_send=max(0, plan.n_treatment - already) if plan is not None else 0,
        targets=_channel_targets(config, plan) if plan is not None else [],
        running=sends_of(request.app).running(name),
        error=error,
    )


@router.get("/campaigns/{name}/send", response_class=HTMLResponse)
def send_page(request: Request, name: str, session: Editor) -> HTMLResponse:
    return send_confirmation(request, name)


@router.post("/campaigns/{name}/send")
async def send_now(request: Request, name: str, session: Editor) -> Response:
    from segmint.campaigns import latest_plan

    form = await request.form()
    ws = workspace(request)
    config = ws.config()
    if name not in config.playbook.campaigns:
        return _not_found(request)
    if str(form.get("confirm", "")).strip() != name:
        return send_confirmation(
            request, name, error=N_("Type the campaign's name exactly to confirm."), status=400
        )
    sends = sends_of(request.app)
    if sends.running(name):
        return RedirectResponse(f"/campaigns/{name}#progress", status_code=303)
    with ws.project() as p:
        plan = latest_plan(p.store, name)
        if plan is None or plan.run_id != form.get("run_id"):
            return send_confirmation(
                request,
                name,
                error=N_("The plan changed since this page was opened; check it again."),
                status=409,
            )
        record(p.store, session.name, "campaign.send", name, run_id=plan.run_id,
               n_treatment=plan.n_treatment)  # fmt: skip
    if not sends.start(ws.host, config, name, plan.run_id, session.name):
        return RedirectResponse(f"/campaigns/{name}#progress", status_code=303)
    return RedirectResponse(f"/campaigns/{name}?sending=1#progress", status_code=303)
