"""``segmint evaluate``, ``refresh``, ``retention``, ``satisfaction``, ``before-after`` and
``campaign import``: thin Typer commands over :mod:`segmint.experiments`.

Imported by :mod:`segmint.cli`, which registers them in order. Same conventions as the rest of the
CLI: Rich tables, ``--json`` for scripts, ``-p/--project``, one line on stderr and the
error's exit code for a :class:`~segmint.errors.SegmintError`.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from segmint.cli._app import app
from segmint.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    frame_table,
    print_json,
    print_result,
)
from segmint.cli._common import run as _run
from segmint.cli.campaigns import campaign_app
from segmint.errors import ConfigError

DEFAULT_RESAMPLES = 25_000  # = segmint.experiments._evaluate.DEFAULT_RESAMPLES (kept light)


def _to_dict(result: Any) -> Any:
    """A result's JSON form (``--json``)."""
    return result.to_dict()


def _f(v: Any, fmt: str = ",.2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return format(v, fmt)


def _ci(lo: Any, hi: Any, fmt: str) -> str:
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return "—"
    return f"[{format(lo, fmt)}, {format(hi, fmt)}]"


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


PERCENT_METRICS = {"conversion", "visit_rate"}

METRIC_LABELS = {
    "revenue_per_user": "revenue/user",
    "orders_per_user": "orders/user",
    "visit_rate": "visit rate",
    "events_per_user": "events/user",
    "pre_revenue_per_user (balance)": "pre-period revenue/user (balance)",
}

ROI_LABELS = {
    "incremental_revenue": "incremental revenue",
    "incremental_conversions": "incremental conversions",
    "cost": "cost (messages + offers)",
    "net": "net (incremental revenue - cost)",
    "roi": "ROI (net / cost)",
    "cost_per_incremental_conversion": "cost per incremental conversion",
}
COST_ITEMS = ("cost", "net", "roi", "cost_per_incremental_conversion")


def _p_boot(v: Any, n_resamples: int) -> str:
    """A bootstrap p-value at its true resolution: with N resamples and none past 0, all
    one can say is p < 2/N (never "< 0.0001" from 2,000 resamples)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or not n_resamples:
        return "—"
    if v <= 2 / (n_resamples + 1) + 1e-15:
        return f"<2/{n_resamples:,}"
    return _p(v)


def _srm_line(ev: Any) -> str:
    s = ev.srm
    arms = [*ev.treatments, ev.control]
    got = " / ".join(f"{o:,.0f} {escape(a)}" for a, o in zip(arms, s.observed, strict=True))
    want = " / ".join(f"{x:,.0f}" for x in s.expected)
    verdict = "[bold red]MISMATCH[/]" if s.flagged else "ok"
    return (
        f"{got} vs expected {want}: chi2 = {s.chi2:.3f} ({s.df:.0f} df), p = {s.p:.3g} -> "
        f"{verdict} (alpha {s.alpha})"
    )


def _print_roi(ev: Any, conf: str) -> None:
    roi = ev.roi
    if "arm" not in roi:
        roi = roi.assign(arm=ev.treatments[0])
    for arm, rows in roi.groupby("arm", sort=False):
        costed = bool((rows.loc[rows["item"] == "cost", "value"] > 0).any())
        t = Table(title=escape(f"return on the campaign ({arm}; bootstrap CIs)"))
        for c in ("", "value", f"{conf} CI"):
            t.add_column(c, justify="left" if c == "" else "right")
        for r in rows.itertuples(index=False):
            if r.item in COST_ITEMS and not costed:
                continue
            fmt = (
                ".1%" if r.item == "roi"
                else ",.1f" if r.item == "incremental_conversions" else ",.2f"
            )  # fmt: skip
            t.add_row(ROI_LABELS.get(r.item, r.item), _f(r.value, fmt), _ci(r.lo, r.hi, fmt))
        if not costed:
            t.add_row("cost, net, ROI", "no cost configured", "")
        console.print(t)


def print_evaluation(ev: Any) -> None:
    """The evaluation of a campaign as Rich tables (arms, effects, SRM, segments, ROI)."""
    conf = f"{1 - ev.alpha:.0%}"
    _print_heading(ev, conf)
    _print_arms(ev, conf)
    if ev.observed_days <= 0:
        _print_design_checks(ev)
        return
    _print_effects(ev, conf)
    _print_power(ev)
    console.print(f"  sample ratio: {_srm_line(ev)}", markup=True)
    console.print(
        f"  CUPED (pre-period revenue, {ev.pre_days} days): theta = {ev.cuped.theta:.4f}, "
        f"variance reduced by {_f(ev.cuped.variance_reduction, '.1%')}"
    )
    if not ev.segments.empty:
        _print_segment_lifts(ev, conf)
    _print_roi(ev, conf)
    if not ev.breakdowns.empty:
        print_breakdowns(ev.breakdowns, conf)
    if ev.uplift is not None:
        _print_uplift(ev)


def _print_heading(ev: Any, conf: str) -> None:
    """The campaign, its outcome window, imported outcomes and the warnings."""
    console.print(
        f"[bold]{escape(ev.campaign)}[/]: outcomes over {ev.window_days} days from "
        f"{ev.start:%Y-%m-%d %H:%M} UTC (intention to treat; CIs {conf})",
        markup=True,
    )
    if getattr(ev, "outcomes_imported", ()):
        console.print(f"  outcomes: imported (final): {', '.join(ev.outcomes_imported)}")
    for w in ev.warnings:
        style = "bold red" if w.startswith(("SAMPLE RATIO", "PRE-PERIOD IMBALANCE")) else "yellow"
        console.print(f"[{style}]warning:[/] {escape(w)}", soft_wrap=True, markup=True)


def _print_arms(ev: Any, conf: str) -> None:
    """One row per arm: users, conversion with its CI, revenue, orders, visits, pre-period."""
    a = Table(title="arms")
    for c in ("arm", "users", "conversion", f"{conf} CI", "revenue/user", "orders/user",
              "visit rate", "pre-period revenue/user"):  # fmt: skip
        a.add_column(c, justify="left" if c == "arm" else "right")
    for r in ev.arms.itertuples(index=False):
        a.add_row(
            str(r.arm), f"{int(r.users):,}", _f(r.conversion, ".2%"),
            _ci(r.conversion_lo, r.conversion_hi, ".2%"), _f(r.revenue_per_user),
            _f(r.orders_per_user, ".3f"), _f(r.visit_rate, ".1%"), _f(r.pre_revenue_per_user),
        )  # fmt: skip
    console.print(a)


def _print_design_checks(ev: Any) -> None:
    """Nothing after the send yet: only the design can be checked (arm sizes, balance)."""
    bal = ev.effects[ev.effects["metric"] == "pre_revenue_per_user (balance)"]
    console.print(
        f"  no outcome data after the send yet. Design checks: {_srm_line(ev)}",
        markup=True,
    )
    for r in bal.itertuples(index=False):
        console.print(
            f"  pre-period revenue per user, {escape(str(r.arm))} - {escape(ev.control)} "
            f"{_f(r.diff, '+,.2f')} {_ci(r.diff_lo, r.diff_hi, '+,.2f')} "
            f"(p = {_p(r.p_value)}; with random arms, expect p < 0.05 one time in twenty)"
        )


def _print_effects(ev: Any, conf: str) -> None:
    """One table per treated arm (and the pooled arms): every metric against the control."""
    from segmint.experiments import POOLED

    many = len(ev.treatments) > 1
    for arm, rows in ev.effects.groupby("arm", sort=False):
        adjusted = many and arm != POOLED
        title = (
            f"effect of {arm} against {ev.control}"
            + (
                f" (p also Holm/BH-adjusted across the {len(ev.treatments)} arms)"
                if adjusted
                else ""
            )
            if many
            else f"effect of the campaign ({arm} - {ev.control})"
        )
        e = Table(title=escape(title))
        cols = ["metric", "method", str(arm), ev.control, "lift", f"{conf} CI", "relative",
                f"{conf} CI ", "p"]  # fmt: skip
        cols += ["p Holm", "p BH"] if adjusted else []
        cols += ["verdict"]
        for i, c in enumerate(cols):
            e.add_column(escape(c), justify="left" if i < 2 else "right")
        for r in rows.itertuples(index=False):
            e.add_row(*map(escape, _effect_row(r, ev.n_resamples, adjusted)))
        console.print(e)


def _effect_row(r: Any, n_resamples: int, adjusted: bool) -> list[str]:
    """The cells of one metric's effect (``r`` a row of ``ev.effects``)."""
    pct = r.metric in PERCENT_METRICS
    fmt = "+.2%" if pct else "+,.2f"
    p = _p_boot(r.p_value, n_resamples) if r.method == "bootstrap" else _p(r.p_value)
    row = [
        METRIC_LABELS.get(r.metric, str(r.metric)), str(r.method),
        _f(r.treatment, ".2%" if pct else ",.2f"), _f(r.control, ".2%" if pct else ",.2f"),
        _f(r.diff, fmt), _ci(r.diff_lo, r.diff_hi, fmt),
        _f(r.rel, "+.1%"), _ci(r.rel_lo, r.rel_hi, "+.1%"), p,
    ]  # fmt: skip
    row += [_p(r.p_holm), _p(r.p_bh)] if adjusted else []
    row += [str(getattr(r, "verdict", ""))]
    return row


def _print_segment_lifts(ev: Any, conf: str) -> None:
    """The lift in each segment of the segmentation as of the send, with adjusted p."""
    g = Table(title=f"lift by segment ({ev.segmentation}; Holm and BH adjusted p)")
    for c in ("segment", "treated", "control", "conv. T", "conv. C", "lift",
              f"{conf} CI", "p", "p Holm", "p BH", "revenue lift", "p BH (rev)"):  # fmt: skip
        g.add_column(c, justify="left" if c == "segment" else "right")
    for r in ev.segments.itertuples(index=False):
        g.add_row(
            str(r.segment), f"{int(r.n_treatment):,}", f"{int(r.n_control):,}",
            _f(r.conversion_treatment, ".1%"), _f(r.conversion_control, ".1%"),
            _f(r.lift, "+.1%"), _ci(r.lift_lo, r.lift_hi, "+.1%"), _p(r.p_value),
            _p(r.p_holm), _p(r.p_bh), _f(r.revenue_lift, "+,.2f"), _p(r.revenue_p_bh),
        )  # fmt: skip
    console.print(g)


def _print_uplift(ev: Any) -> None:
    """The uplift model's Qini and AUUC, and what targeting its top fifth would yield."""
    q = ev.uplift.qini
    top = q.iloc[(q["fraction"] - 0.2).abs().argsort().iloc[0]]
    console.print(
        f"  uplift model ({ev.uplift.model}, cross-fitted): Qini coefficient "
        f"{ev.uplift.qini_coefficient:.3f}, AUUC {_f(ev.uplift.auuc, '.3f')}; targeting the top {top['fraction']:.0%} by "
        f"predicted uplift yields {top['qini']:,.1f} incremental conversions "
        f"(random targeting: {top['random']:,.1f})"
    )


POWER_ROWS = {("conversion", "newcombe"), ("revenue_per_user", "welch")}


def _print_power(ev: Any) -> None:
    """One line per effect: what this experiment could detect, and what the observed
    effect would need (see :mod:`segmint.experiments._power`)."""
    if "mde" not in ev.effects:
        return
    for r in ev.effects.to_dict("records"):
        if (r["metric"], r["method"]) not in POWER_ROWS or not math.isfinite(r["mde"]):
            continue
        fmt = ".2%" if r["metric"] in PERCENT_METRICS else ",.2f"
        arm = f" {r['arm']}" if "arm" in r else ""
        need = r["users_needed"]
        needed = f"{need:,.0f} users per arm" if math.isfinite(need) else "— (no observed effect)"
        console.print(
            f"  {r['metric']} ({r['method']}{arm}): {r['verdict']}; detectable at this size: "
            f"±{format(r['mde'], fmt)}{' points' if fmt == '.2%' else ''} "
            f"({_f(r['mde_rel'], '.1%')} relative); to detect the "
            f"observed effect at 80% power: {needed}",
            soft_wrap=True,
            markup=False,
        )


def print_breakdowns(table: Any, conf: str) -> None:
    """One Rich table per breakdown variable: each arm against the control per level, p
    adjusted within the variable and across every variable (the family)."""
    for variable, rows in table.groupby("variable", sort=False):
        control = str(rows["control"].iloc[0])
        g = Table(
            title=f"lift by {variable} (vs {control}; Holm within {variable}, Holm and BH "
            f"across all {len(table)} tests)"
        )
        for c in ("level", "arm", "n", f"n {control}", "conv.", f"conv. {control}", "lift",
                  f"{conf} CI", "p", "p Holm within", "p Holm family", "p BH family"):  # fmt: skip
            g.add_column(
                c, justify="left" if c in ("level", "arm") else "right", no_wrap=c.endswith("CI")
            )
        for r in rows.itertuples(index=False):
            g.add_row(
                escape(str(r.level)), escape(str(r.arm)), f"{int(r.n_arm):,}",
                f"{int(r.n_control):,}", _f(r.conversion_arm, ".1%"),
                _f(r.conversion_control, ".1%"), _f(r.lift, "+.1%"),
                _ci(r.lift_lo, r.lift_hi, "+.1%"), _p(r.p_value), _p(r.p_holm_within),
                _p(r.p_holm_family), _p(r.p_bh_family),
            )  # fmt: skip
        console.print(g)


@app.command()
def evaluate(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    window: Annotated[int, typer.Option(help="Attribution window in days.")] = 30,
    pre_days: Annotated[int, typer.Option(help="Pre-period days (CUPED covariate).")] = 90,
    segmentation: Annotated[
        str | None,
        typer.Option(help="Break down by this segmentation as of the send (pre-treatment)."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence level.")] = 0.05,
    uplift: Annotated[bool, typer.Option(help="Fit the uplift model and Qini curve.")] = True,
    seed: Annotated[int, typer.Option(help="Bootstrap and model seed.")] = 0,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples (0 skips the bootstrap).")
    ] = DEFAULT_RESAMPLES,
    uplift_outcome: Annotated[
        str, typer.Option(help="What the uplift model ranks by: conversion, visit or revenue.")
    ] = "conversion",
    by: Annotated[
        list[str] | None,
        typer.Option(
            help="Break down by a user column, a trait (traits.zip_code), a feature or a "
            "segmentation; repeat for several (p adjusted within each and across all)."
        ),
    ] = None,
    max_levels: Annotated[
        int, typer.Option(help="Levels shown per --by variable; the rest fold into (other).")
    ] = 20,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a campaign from its holdout: every arm against the control, with CIs, SRM,
    CUPED, segments, ROI and the uplift model."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.evaluate(
                campaign,
                window_days=window,
                pre_days=pre_days,
                segmentation=segmentation,
                alpha=alpha,
                uplift=uplift,
                seed=seed,
                n_resamples=resamples,
                uplift_outcome=uplift_outcome,
                by=tuple(by or ()),
                max_levels=max_levels,
            )

    with console.status(f"evaluating {campaign}…", spinner="dots"):
        ev = _run(go)
    print_result(ev, as_json, print_evaluation, to_json=_to_dict)
    if ev.srm.flagged or "imbalance" in set(ev.effects.get("verdict", ())):
        raise typer.Exit(4)


@campaign_app.command("import")
def import_campaign(
    name: Annotated[str, typer.Argument(help="Campaign name to store it under.")],
    file: Annotated[Path, typer.Argument(help="CSV or Parquet: user, arm, send time.")],
    control_share: Annotated[
        float | None,
        typer.Option(
            help="The designed control share (the SRM check); the other arms share the rest "
            "equally. Or give --split."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help='The designed share of every arm, e.g. "A=0.45,B=0.45,control=0.1"; rows '
            "with another arm are counted as bad rows."
        ),
    ] = None,
    control: Annotated[str, typer.Option(help="The control arm's name.")] = "control",
    user_column: Annotated[str, typer.Option(help="Column with the user id.")] = "user_id",
    arm_column: Annotated[str, typer.Option(help="Column with the arm.")] = "arm",
    sent_column: Annotated[str, typer.Option(help="Column with the send time.")] = "sent_at",
    timezone: Annotated[
        str | None, typer.Option(help="Timezone of naive send times (default: the project's).")
    ] = None,
    cost_per_message: Annotated[float, typer.Option(help="Cost of one message.")] = 0.0,
    cost_per_redemption: Annotated[
        float, typer.Option(help="Cost of one redeemed offer beyond the netted discount.")
    ] = 0.0,
    converted_column: Annotated[
        str | None, typer.Option(help="Column with each user's final conversion (1/0, yes/no).")
    ] = None,
    revenue_column: Annotated[
        str | None, typer.Option(help="Column with each user's final revenue.")
    ] = None,
    visited_column: Annotated[
        str | None, typer.Option(help="Column with each user's final visit flag (1/0, yes/no).")
    ] = None,
    outcome_end: Annotated[
        str | None,
        typer.Option(help="Last day outcomes were measured (YYYY-MM-DD): the window ends there."),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Import a past randomized campaign (its arms, optionally its final outcomes) so
    `segmint evaluate` can measure it."""
    from segmint import open_project

    shares = _parse_split(split) if split is not None else None

    def go() -> dict[str, Any]:
        outcomes = {"converted": converted_column, "revenue": revenue_column,
                    "visited": visited_column}  # fmt: skip
        try:
            end = date.fromisoformat(outcome_end) if outcome_end else None
        except ValueError:
            raise ConfigError(f"--outcome-end: {outcome_end!r} is not a YYYY-MM-DD date") from None
        with open_project(project) as p:
            return p.import_campaign(
                name,
                file,
                control_share=control_share,
                split=shares,
                control=control,
                columns={"user_id": user_column, "arm": arm_column, "sent_at": sent_column}
                | {k: v for k, v in outcomes.items() if v},
                timezone=timezone,
                cost_per_message=cost_per_message,
                cost_per_redemption=cost_per_redemption,
                outcome_end=end,
            )

    print_result(_run(go), as_json, lambda out: _print_import(name, out))


def _print_import(name: str, out: dict[str, Any]) -> None:
    """What ``campaign import`` read: rows imported per arm, bad rows, unknown users."""
    arms = ", ".join(
        f"{n:,} {a}" + (" (control)" if a == out["control_arm"] else "")
        for a, n in out["arms"].items()
    )
    console.print(
        f"{escape(name)}: read {out['read']:,} rows = {out['imported']:,} imported "
        f"({escape(arms)}) + {out['rejected_bad_rows']:,} bad rows + "
        f"{out['rejected_unknown_users']:,} unknown users"
    )
    for key in ("bad_converted", "bad_revenue", "bad_visited"):
        if out.get(key):
            console.print(
                f"  {out[key]:,} of the bad rows have an unreadable {key[4:]} value "
                "(expected 1/0, true/false, yes/no, or a number for revenue)"
            )


def _parse_split(text: str) -> dict[str, float]:
    """``"A=0.45,B=0.45,control=0.1"`` -> ``{"A": 0.45, ...}`` (a clear error otherwise)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        arm, sep, share = part.rpartition("=")
        try:
            if not sep or not arm.strip():
                raise ValueError
            out[arm.strip()] = float(share)
        except ValueError:
            raise ConfigError(
                f"--split: cannot read {part.strip()!r}; write ARM=SHARE pairs separated by "
                'commas, e.g. "A=0.45,B=0.45,control=0.1"'
            ) from None
    return out


@app.command()
def refresh(
    names: Annotated[list[str] | None, typer.Argument(help="Segmentations (default: all).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="'today', 'latest' or YYYY-MM-DD (default: config).")
    ] = None,
    psi_threshold: Annotated[
        float, typer.Option(help="Flag a segment whose profile PSI exceeds this.")
    ] = 0.25,
    size_change: Annotated[
        float, typer.Option(help="Flag a segment whose share moved more than this.")
    ] = 0.2,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Recompute features and segments, show migrations and flag drifted segments."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.refresh(
                names or None, as_of=as_of, psi_threshold=psi_threshold, size_change=size_change
            )

    with console.status("refreshing features and segments…", spinner="dots"):
        res = _run(go)
    print_result(res, as_json, print_refresh, to_json=_to_dict)


def print_refresh(res: Any) -> None:
    """Per segmentation: sizes before/after, drift flags, the top migrations."""
    console.print(f"features as of {res.as_of:%Y-%m-%d} (run {res.feature_run_id})")
    for s in res.segmentations:
        title = f"{s.segmentation}: run {s.run_id}"
        if s.previous_run_id is None:
            console.print(f"{title} (first run: nothing to compare)")
            continue
        t = Table(
            title=f"{title} vs {s.previous_run_id} — {s.moved:,} of {s.n_users:,} users moved; "
            f"size PSI {s.size_psi:.3f}"
        )
        for c in ("segment", "before", "after", "share change", "profile PSI", "drift"):
            t.add_column(c, justify="left" if c in ("segment", "drift") else "right")
        for r in s.sizes.itertuples(index=False):
            flags = []
            if r.size_flag:
                flags.append("size")
            if r.profile_flag:
                flags.append(f"profile ({r.profile_feature})")
            t.add_row(
                str(r.segment), f"{int(r.users_before):,}", f"{int(r.users_after):,}",
                _f(r.share_change, "+.1%"), _f(r.profile_psi, ".3f"),
                Text(", ".join(flags), style="bold yellow"),
            )  # fmt: skip
        console.print(t)
        if not s.migrations.empty:
            m = s.migrations.stack().rename("users").reset_index()
            m.columns = ["from", "to", "users"]
            m = m[(m["from"] != m["to"]) & (m["users"] > 0)].nlargest(5, "users")
            for r in m.itertuples(index=False):
                console.print(f"    {r.users:>7,}  {r[0]} -> {r[1]}")
    flagged = [(s.segmentation, f) for s in res.segmentations for f in s.flagged]
    if flagged:
        console.print(
            f"[yellow]drifted beyond the thresholds (profile PSI > {res.psi_threshold}, share "
            f"change > {res.size_change:.0%}):[/] "
            + ", ".join(f"{escape(a)}/{escape(b)}" for a, b in flagged),
            markup=True,
        )


def print_retention(wide: Any, repeat: Any, *, title: str, months: int) -> None:
    """A cohort x month retention table and the repeat-purchase rates."""
    t = Table(title=title)
    t.add_column("cohort")
    t.add_column("users", justify="right")
    shown = [c for c in wide.columns if c != "cohort_size"][: months + 1]
    for c in shown:
        t.add_column(f"m{c}", justify="right")
    for cohort, row in wide.iterrows():
        t.add_row(
            f"{cohort:%Y-%m}" if hasattr(cohort, "strftime") else str(cohort),
            _f(row["cohort_size"], ",.0f"),
            *[_f(row[c], ".0%") for c in shown],
        )
    console.print(t)
    for r in repeat.itertuples(index=False):
        seg = getattr(r, "segment", "(all)")
        console.print(
            f"  repeat-purchase rate {seg}: {_f(r.rate, '.1%')} "
            f"{_ci(r.ci_lo, r.ci_hi, '.1%')} of {_f(r.buyers, ',.0f')} buyers"
        )


def print_satisfaction(table: Any, title: str) -> None:
    """NPS and CSAT per segment with their intervals."""
    t = Table(title=title)
    for c in ("segment", "survey", "responses", "score", "95% CI"):
        t.add_column(c, justify="left" if c in ("segment", "survey") else "right")
    for r in table.itertuples(index=False):
        fmt = "+.1f" if r.survey == "nps" else ".2f"
        t.add_row(
            str(r.segment), str(r.survey), f"{int(r.responses):,}", _f(r.score, fmt),
            _ci(r.ci_lo, r.ci_hi, fmt),
        )  # fmt: skip
    console.print(t)


@app.command()
def retention(
    by: Annotated[str, typer.Option(help="Cohorts by 'first_purchase' or 'signup'.")] = (
        "first_purchase"
    ),
    months: Annotated[int, typer.Option(help="Months since the cohort to show.")] = 12,
    segmentation: Annotated[
        str | None, typer.Option(help="Also show retention and repeat rate by this run.")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Monthly cohort retention matrix, repeat-purchase rate, retention by segment."""
    from segmint import open_project

    if by not in ("first_purchase", "signup"):
        _run(lambda: (_ for _ in ()).throw(ConfigError("--by is first_purchase or signup")))

    def go() -> dict[str, Any]:
        with open_project(project) as p:
            return p.retention(cohort_by=by, max_months=months, segmentation=segmentation)

    out = _run(go)
    if as_json:
        print_json({k: (v.reset_index() if k == "matrix" else v) for k, v in out.items()})
        return
    print_retention(
        out["matrix"],
        out["repeat"],
        title=f"retention by {by.replace('_', ' ')} cohort (share active in month m)",
        months=months,
    )
    if "by_segment" in out:
        console.print(frame_table(out["by_segment"], f"retention by {segmentation}"))


@app.command()
def satisfaction(
    segmentation: Annotated[
        str | None, typer.Option(help="Segmentation (name or run id) to break down by.")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """NPS and CSAT survey responses by segment, with confidence intervals."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.satisfaction(segmentation)

    print_result(_run(go), as_json, _print_satisfaction_result, to_json=_to_dict)


def _print_satisfaction_result(res: Any) -> None:
    if res.table.empty:
        console.print(
            "no survey answers in the store (NPS and CSAT answers are events named 'nps' or "
            "'csat' with properties {\"score\": n}: ingest them with the events)"
        )
        return
    print_satisfaction(res.table, "satisfaction by segment (NPS -100..100, CSAT mean 1..5; 95% CI)")


@app.command("before-after")
def before_after(
    on: Annotated[str, typer.Option("--date", help="The date of the change (YYYY-MM-DD).")],
    metric: Annotated[str, typer.Option(help="revenue, orders, conversion or events.")] = (
        "revenue"
    ),
    window: Annotated[int, typer.Option(help="Days before and after.")] = 30,
    segment: Annotated[
        str | None,
        typer.Option(help="SEGMENTATION:SEGMENT as the treated group (default: everyone)."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(help="SEGMENTATION:SEGMENT as a comparison group: adds diff-in-diff."),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Before/after a date (NOT causal), with difference-in-differences given a comparison."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.before_after(
                date.fromisoformat(on), metric=metric, window_days=window, segment=segment,
                compare=compare,
            )  # fmt: skip

    print_result(
        _run(go), as_json, lambda res: _print_before_after(res, metric, on), to_json=_to_dict
    )


def _print_before_after(res: Any, metric: str, on: str) -> None:
    console.print(Text(res.warning, style="bold yellow"), soft_wrap=True)
    console.print(frame_table(res.table, f"{metric}: before and after {on}"))
    console.print(
        f"  after - before: {res.difference:+,.3f} {_ci(res.ci[0], res.ci[1], '+,.3f')}, "
        f"p = {_p(res.p_value)}"
    )
    if res.did is not None:
        console.print(frame_table(res.did, "difference in differences"))
