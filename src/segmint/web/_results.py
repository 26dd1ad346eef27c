"""A campaign's results, GrowthBook-style: the verdict in words with what the experiment
could detect and the users it still needs, the lift of every metric with its interval, a
forest plot per segment, the sample-ratio and balance checks, and the return.

Everything shown is the library's stored evaluation (``segmint evaluate`` or the Evaluate
button: :meth:`segmint.project.Project.evaluate`); this module only words and formats it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.web._auth import Editor, Viewer
from segmint.web._charts import forest
from segmint.web._core import Formats, language_of, page, record, workspace
from segmint.web._text import N_

router = APIRouter()

LATEST_SQL = (
    "SELECT evaluation_id, created_at, result FROM campaign_evaluations WHERE campaign = ? "
    "ORDER BY created_at DESC, evaluation_id DESC LIMIT 1"
)
KNOWN_SQL = "SELECT count(*) FROM campaign_runs WHERE campaign = ?"

POOLED = "any treatment"
PROPORTIONS = frozenset({"conversion", "visit_rate"})
MONEY = frozenset({"revenue_per_user", "pre_revenue_per_user (balance)"})
METRICS = {
    "conversion": N_("conversion"),
    "revenue_per_user": N_("revenue per user"),
    "orders_per_user": N_("orders per user"),
    "visit_rate": N_("visit rate"),
    "events_per_user": N_("events per user"),
    "pre_revenue_per_user (balance)": N_("revenue per user before the send (balance check)"),
}
METHODS = {
    "newcombe": N_("Newcombe interval"),
    "welch": N_("Welch t-test"),
    "bootstrap": N_("bootstrap"),
    "cuped": N_("CUPED (adjusted for revenue before)"),
}
VERDICTS = {
    "win": N_("win"),
    "loss": N_("loss"),
    "inconclusive": N_("inconclusive"),
    "balanced": N_("balanced"),
    "imbalance": N_("imbalance"),
}
ROI_ITEMS = {
    "incremental_revenue": N_("incremental revenue"),
    "incremental_conversions": N_("incremental conversions"),
    "cost": N_("cost (messages and offers)"),
    "net": N_("net (incremental revenue minus cost)"),
    "roi": N_("return on investment (net / cost)"),
    "cost_per_incremental_conversion": N_("cost per incremental conversion"),
}
MONEY_ITEMS = frozenset({"incremental_revenue", "cost", "net", "cost_per_incremental_conversion"})
POWER = 0.8


def _num(x: Any) -> float:
    """A stored number (None and NaN as NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _ok(*xs: Any) -> bool:
    return all(math.isfinite(_num(x)) for x in xs)


class Words:
    """Formatting of an evaluation's values in one language and currency."""

    def __init__(self, request: Request, currency: str) -> None:
        self.lang = language_of(request)
        self.t = self.lang.t
        self.f = Formats(self.lang, currency)
        self.currency = currency

    def value(self, metric: str, x: Any, *, signed: bool = False) -> str:
        """A metric's value: a rate as a percentage (a difference in points), money with
        its currency, else a number."""
        v = _num(x)
        if not math.isfinite(v):
            return "–"
        sign = "+" if signed and v > 0 else ""
        if metric in PROPORTIONS:
            if signed:
                return self.t(N_("{x} pts"), x=sign + self.f.num(v * 100, 3))
            return self.f.pct(v, 2)
        if metric in MONEY:
            return sign + self.f.money(v)
        return sign + self.f.num(v, 3)

    def rel(self, x: Any) -> str:
        v = _num(x)
        return "–" if not math.isfinite(v) else ("+" if v > 0 else "") + self.f.pct(v, 1)

    def ci(self, lo: str, hi: str) -> str:
        return "–" if "–" in (lo, hi) else f"[{lo}, {hi}]"

    def p(self, x: Any, n_resamples: int = 0, method: str = "") -> str:
        v = _num(x)
        if not math.isfinite(v):
            return "–"
        if method == "bootstrap" and n_resamples and v <= 2 / (n_resamples + 1) + 1e-15:
            return f"< 2/{self.f.count(n_resamples)}"
        return "< 0.0001" if v < 1e-4 else f"{v:.3g}"

    def roi(self, item: str, x: Any) -> str:
        v = _num(x)
        if not math.isfinite(v):
            return "–"
        if item == "roi":
            return self.f.pct(v, 1)
        if item in MONEY_ITEMS:
            return self.f.money(v)
        return self.f.num(v, 3)


def load_evaluation(store: Any, name: str) -> dict[str, Any] | None:
    """The newest stored evaluation of a campaign (``CampaignEvaluation.to_dict`` data)."""
    frame = store.query(LATEST_SQL, [name])
    if frame.empty:
        return None
    row = frame.iloc[0]
    data = row["result"]
    data = json.loads(data) if isinstance(data, str) else dict(data)
    data["evaluation_id"] = str(row["evaluation_id"])
    data["created_at"] = row["created_at"]
    return data  # type: ignore[no-any-return]


def main_arm(e: dict[str, Any]) -> str:
    treatments = e.get("treatments") or ["treatment"]
    return str(treatments[0]) if len(treatments) == 1 else POOLED


def _effect(e: dict[str, Any], metric: str, method: str, arm: str) -> dict[str, Any] | None:
    for r in e["effects"]:
        if (r["metric"], r["method"], r.get("arm", arm)) == (metric, method, arm):
            return r  # type: ignore[no-any-return]
    return None


def verdict_view(e: dict[str, Any], w: Words, arm: str) -> dict[str, Any] | None:
    """The verdict on conversion for ``arm`` in words: the decision, what the experiment
    could detect (MDE) and the users each group still needs to detect what was seen."""
    r = _effect(e, "conversion", "newcombe", arm)
    if r is None:
        return None
    t, conf = w.t, w.f.pct(1 - _num(e.get("alpha", 0.05)), 0)
    metric = t(METRICS["conversion"])
    values = {
        "metric": metric,
        "diff": w.value("conversion", r["diff"], signed=True),
        "lo": w.value("conversion", r["diff_lo"], signed=True),
        "hi": w.value("conversion", r["diff_hi"], signed=True),
        "conf": conf,
    }
    kind = str(r.get("verdict") or "inconclusive")
    headline = {
        "win": N_("Win: the campaign raised {metric} by {diff} ({lo} to {hi}, {conf} confidence)."),
        "loss": N_(
            "Loss: the campaign lowered {metric} by {diff} ({lo} to {hi}, {conf} confidence)."
        ),
    }.get(
        kind,
        N_(
            "Inconclusive: the difference in {metric} ({diff}, {lo} to {hi}) cannot be told from chance."
        ),
    )
    n_t, n_c = _num(r.get("n_treatment")), _num(r.get("n_control"))
    out = {
        "kind": kind,
        "headline": t(headline, **values),
        "mde": None,
        "needed": None,
        "treatment": w.value("conversion", r["treatment"]),
        "control": w.value("conversion", r["control"]),
        "rel": w.rel(r.get("rel")),
    }
    if _ok(r.get("mde"), n_t, n_c):
        out["mde"] = t(
            N_(
                "Minimum detectable effect: {mde} ({mde_rel} of the control's rate) with {n_t} treated and {n_c} control users, at 80% power."
            ),
            mde=w.value("conversion", r["mde"], signed=True).lstrip("+"),
            mde_rel=w.f.pct(_num(r.get("mde_rel")), 0) if _ok(r.get("mde_rel")) else "–",
            n_t=w.f.count(n_t),
            n_c=w.f.count(n_c),
        )
    out["needed"] = _needed_words(r, w, n_t, n_c)
    return out


def _needed_words(r: dict[str, Any], w: Words, n_t: float, n_c: float) -> str:
    """How many users each group needs to detect the observed difference."""
    needed = _num(r.get("users_needed"))
    if not math.isfinite(needed):
        return w.t(
            N_("No difference was observed, so no number of users would make it detectable.")
        )
    smaller = min(n_t, n_c) if _ok(n_t, n_c) else 0.0
    if needed <= smaller:
        return w.t(
            N_(
                "To detect the observed difference at 80% power each group needs {needed} users; the groups are large enough."
            ),
            needed=w.f.count(needed),
        )
    return w.t(
        N_(
            "To detect the observed difference at 80% power each group needs {needed} users: {more} more than the smaller group has."
        ),
        needed=w.f.count(needed),
        more=w.f.count(needed - smaller),
    )


def effect_rows(e: dict[str, Any], w: Words) -> list[dict[str, Any]]:
    """Every metric of every arm against the control (balance rows apart)."""
    rows = []
    n_res = int(_num(e.get("n_resamples")) or 0) if _ok(e.get("n_resamples")) else 0
    for r in e["effects"]:
        metric = str(r["metric"])
        if metric.endswith("(balance)"):
            continue
        rows.append(
            {
                "arm": r.get("arm") or main_arm(e),
                "metric": w.t(METRICS.get(metric, metric)),
                "method": w.t(METHODS.get(r["method"], r["method"])),
                "treatment": w.value(metric, r["treatment"]),
                "control": w.value(metric, r["control"]),
                "diff": w.value(metric, r["diff"], signed=True),
                "ci": w.ci(
                    w.value(metric, r["diff_lo"], signed=True),
                    w.value(metric, r["diff_hi"], signed=True),
                ),
                "rel": w.rel(r.get("rel")),
                "rel_ci": w.ci(w.rel(r.get("rel_lo")), w.rel(r.get("rel_hi"))),
                "p": w.p(r.get("p_value"), n_res, str(r["method"])),
                "verdict": str(r.get("verdict") or ""),
            }
        )
    return rows


def balance_rows(e: dict[str, Any], w: Words) -> list[dict[str, Any]]:
    """The pre-period check of each arm: was revenue before the send alike?"""
    out = []
    for r in e["effects"]:
        metric = str(r["metric"])
        if not metric.endswith("(balance)"):
            continue
        out.append(
            {
                "arm": r.get("arm") or main_arm(e),
                "metric": w.t(METRICS.get(metric, metric)),
                "treatment": w.value(metric, r["treatment"]),
                "control": w.value(metric, r["control"]),
                "diff": w.value(metric, r["diff"], signed=True),
                "ci": w.ci(
                    w.value(metric, r["diff_lo"], signed=True),
                    w.value(metric, r["diff_hi"], signed=True),
                ),
                "p": w.p(r.get("p_value")),
                "verdict": str(r.get("verdict") or ""),
            }
        )
    return out


def srm_view(e: dict[str, Any], w: Words) -> dict[str, Any]:
    """Arm sizes against the designed split."""
    s = e["srm"]
    arms = [*(e.get("treatments") or ["treatment"]), e.get("control") or "control"]
    observed = [_num(x) for x in s.get("observed") or []]
    expected = [_num(x) for x in s.get("expected") or []]
    total_o, total_e = sum(observed) or 1.0, sum(expected) or 1.0
    rows = [
        {
            "arm": arm,
            "expected": w.f.count(x),
            "expected_share": w.f.pct(x / total_e, 1),
            "observed": w.f.count(o),
            "observed_share": w.f.pct(o / total_o, 1),
        }
        for arm, o, x in zip(arms, observed, expected, strict=False)
    ]
    return {
        "rows": rows,
        "p": w.p(s.get("p")),
        "chi2": w.f.num(_num(s.get("chi2")), 3) if _ok(s.get("chi2")) else "–",
        "flagged": bool(s.get("flagged")),
        "alpha": s.get("alpha"),
    }


def roi_rows(e: dict[str, Any], w: Words) -> list[dict[str, Any]]:
    """Each return item of each arm with its bootstrap interval (cost items only when a
    cost is configured)."""
    out = []
    costed = any(r["item"] == "cost" and _num(r["value"]) > 0 for r in e["roi"])
    for r in e["roi"]:
        item = str(r["item"])
        if item in ("cost", "net", "roi", "cost_per_incremental_conversion") and not costed:
            continue
        out.append(
            {
                "arm": r.get("arm") or main_arm(e),
                "item": w.t(ROI_ITEMS.get(item, item.replace("_", " "))),
                "value": w.roi(item, r["value"]),
                "ci": w.ci(w.roi(item, r.get("lo")), w.roi(item, r.get("hi"))),
            }
        )
    return out


def segment_charts(e: dict[str, Any], w: Words) -> list[Any]:
    """Forest plots of the lift per segment: conversion (points), revenue per user (money)."""
    rows = [r for r in e.get("segments") or [] if _ok(r.get("lift_lo"), r.get("lift_hi"))]
    if not rows:
        return []
    t = w.t
    seg = e.get("segmentation") or ""
    conv = forest(
        [
            (
                str(r["segment"]),
                _num(r["lift"]),
                _num(r["lift_lo"]),
                _num(r["lift_hi"]),
                w.value("conversion", r["lift"], signed=True),
            )
            for r in rows
        ],  # fmt: skip
        title=t(N_("Conversion lift by {segmentation} segment"), segmentation=seg),
        axis_label=t(N_("Conversion lift (percentage points)")),
        fmt=lambda v: f"{v * 100:+.1f}",
    )
    charts = [conv]
    money = [r for r in rows if _ok(r.get("revenue_lift_lo"), r.get("revenue_lift_hi"))]
    if money:
        charts.append(
            forest(
                [
                    (
                        str(r["segment"]),
                        _num(r["revenue_lift"]),
                        _num(r["revenue_lift_lo"]),
                        _num(r["revenue_lift_hi"]),
                        w.value("revenue_per_user", r["revenue_lift"], signed=True),
                    )
                    for r in money
                ],  # fmt: skip
                title=t(N_("Revenue per user lift by {segmentation} segment"), segmentation=seg),
                axis_label=t(N_("Revenue per user lift ({currency})"), currency=w.currency),
                fmt=lambda v: w.f.money(v),
            )
        )
    return charts


def segment_rows(e: dict[str, Any], w: Words) -> list[dict[str, Any]]:
    return [
        {
            "segment": str(r["segment"]),
            "n_treatment": w.f.count(r["n_treatment"]),
            "n_control": w.f.count(r["n_control"]),
            "lift": w.value("conversion", r["lift"], signed=True),
            "ci": w.ci(
                w.value("conversion", r["lift_lo"], signed=True),
                w.value("conversion", r["lift_hi"], signed=True),
            ),
            "p_bh": w.p(r.get("p_bh")),
            "revenue_lift": w.value("revenue_per_user", r.get("revenue_lift"), signed=True),
        }
        for r in e.get("segments") or []
    ]


def results_context(e: dict[str, Any], w: Words) -> dict[str, Any]:
    """Everything the results page shows of one evaluation."""
    waiting = not _num(e.get("observed_days"))
    main = main_arm(e)
    treatments = [str(a) for a in e.get("treatments") or ["treatment"]]
    arms_verdicts = [(a, verdict_view(e, w, a)) for a in treatments] if len(treatments) > 1 else []
    return {
        "e": e,
        "waiting": waiting,
        "main": main,
        "verdict": None if waiting else verdict_view(e, w, main),
        "arm_verdicts": arms_verdicts if not waiting else [],
        "effects": [] if waiting else effect_rows(e, w),
        "balance": balance_rows(e, w),
        "srm": srm_view(e, w),
        "roi": [] if waiting else roi_rows(e, w),
        "charts": [] if waiting else segment_charts(e, w),
        "segments": [] if waiting else segment_rows(e, w),
        "observed": w.f.num(_num(e.get("observed_days")), 3),
        "cuped": w.f.pct(_num(e["cuped"].get("variance_reduction")), 1)
        if _ok((e.get("cuped") or {}).get("variance_reduction"))
        else None,
        "qini": w.f.num(_num(e["uplift"]["qini_coefficient"]), 3) if e.get("uplift") else None,
        "verdicts": VERDICTS,
    }


@router.get("/campaigns/{name}/results", response_class=HTMLResponse)
def results_page(request: Request, name: str, session: Viewer) -> HTMLResponse:
    return results_response(request, name)


def results_response(
    request: Request, name: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    ws = workspace(request)
    with ws.project() as p:
        config = p.config
        e = load_evaluation(p.store, name)
        known = name in config.playbook.campaigns or bool(p.store.scalar(KNOWN_SQL, [name]))
    if e is None and not known:
        from segmint.web._app import message

        return message(request, 404, N_("Not found"), N_("No campaign of that name."), "/campaigns")
    w = Words(request, config.currency)
    return page(
        request,
        "campaign_results.html.j2",
        active="campaigns",
        title=N_("Campaign results"),
        status=status,
        name=name,
        in_playbook=name in config.playbook.campaigns,
        error=error,
        **({"e": None} if e is None else results_context(e, w)),
    )


@router.post("/campaigns/{name}/evaluate")
def evaluate_now(request: Request, name: str, session: Editor) -> Response:
    from segmint.errors import SegmintError

    ws = workspace(request)
    try:
        with ws.project() as p:
            ev = p.evaluate(name, save=True)
            record(p.store, session.name, "campaign.evaluate", name, window_days=ev.window_days)
    except SegmintError as exc:
        return results_response(request, name, error=str(exc), status=400)
    return RedirectResponse(f"/campaigns/{name}/results", status_code=303)
