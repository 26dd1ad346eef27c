"""``segmint profile`` and ``segmint persona``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from segmint.cli._app import app
from segmint.cli._common import (
    _LOCALE,
    JsonOpt,
    ProjectOpt,
    _num,
    console,
    print_json,
    print_result,
)
from segmint.cli._common import run as _run


@app.command()
def profile(
    user_id: Annotated[str, typer.Argument(help="The user's id, as stored.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One user's profile: attributes, features, categories, channels, segments, consent."""
    from segmint import open_project

    currency = ["EUR"]

    def go() -> Any:
        with open_project(project) as p:
            _LOCALE[:] = [p.config.locale, p.config.timezone]
            currency[0] = p.config.currency
            return p.profile(user_id, why="segmint profile")

    print_result(
        _run(go),
        as_json,
        lambda pr: _print_profile(pr, currency[0]),
        to_json=lambda pr: pr.to_dict(),
    )


_PROFILE_FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "orders_90d",
    "spend_365d",
    "refund_rate",
    "discount_share",
    "last_active_days",
    "events_30d",
    "sessions_30d",
    "offline_share",
    "app_share",
)
"""The features ``segmint profile`` shows, in this order."""


def _print_profile(pr: Any, currency: str = "EUR") -> None:
    """One user's profile: who, features, predicted value, tastes, segments, consent."""
    _print_who(pr)
    f = pr.features
    t = Table(title="behaviour and transactions", show_header=False)
    t.add_column("feature")
    t.add_column("value", justify="right")
    for k in _PROFILE_FEATURES:
        if k in f:
            t.add_row(k, _num(f[k]))
    console.print(t)
    _print_value(pr, currency)
    _print_tastes(pr)
    s = Table(title="segments")
    for c in ("segmentation", "segment", "detail", "run"):
        s.add_column(c)
    for r in pr.segments.itertuples():
        s.add_row(
            r.segmentation,
            r.segment,
            "" if r.detail is None or r.detail != r.detail else str(r.detail),
            r.run_id,
        )
    console.print(s)
    if pr.consents.empty:
        console.print("  consent: none recorded (nothing may be sent)")
    else:
        console.print(
            "  consent: "
            + ", ".join(
                f"{r.channel}/{r.purpose} {'granted' if r.granted else 'denied'}"
                for r in pr.consents.itertuples()
            )
        )


def _print_who(pr: Any) -> None:
    """The user's id and attributes, when they signed up, the features' as-of."""
    from segmint.cli._common import show_time

    a = pr.attributes
    console.print(
        f"[bold]{escape(pr.user_id)}[/]  "
        + "  ".join(
            f"{k}: {escape(str(a[k]))}"
            for k in ("gender", "age", "country", "city", "acquisition_channel", "email")
            if a.get(k) is not None
        ),
        markup=True,
    )
    tz = _LOCALE[1]
    console.print(
        f"  signed up {show_time(a.get('created_at'), tz) or 'unknown'}; features as of "
        f"{show_time(pr.as_of)} ({pr.feature_run_id})"  # as-of cut-offs are UTC days
    )


def _print_value(pr: Any, currency: str) -> None:
    """CLV with its interval, P(alive), expected purchases and order value, churn risk,
    and the prediction runs they come from."""
    from segmint._i18n import language
    from segmint.cli._common import show_time

    v = pr.value
    if not v:
        console.print(
            "  predicted value: no prediction run yet (`segmint predict clv`, "
            "`segmint predict churn`)",
            markup=False,
        )
        return
    lang = language(_LOCALE[0])

    def money(x: Any) -> str:
        return "-" if x is None else lang.money(float(x), currency)

    runs = [
        f"{kind} run {v[f'{kind}_run_id']} (as of {show_time(v[f'{kind}_as_of'])[:10]})"
        for kind in ("clv", "churn")
        if f"{kind}_run_id" in v
    ]
    if v.get("churn_risk_change") is not None:
        runs.append(
            f"change against churn run {v['churn_previous_run_id']} "
            f"(as of {show_time(v['churn_previous_as_of'])[:10]})"
        )
    t = Table(title="predicted value", show_header=False, caption="; ".join(runs))
    t.add_column("what")
    t.add_column("value", justify="right")
    if "clv_run_id" in v:
        days = v["horizon_days"]
        if v["scored"]:
            level = f"{v['interval']:.0%}"
            t.add_row(f"CLV, next {days} days", money(v["clv"]))
            t.add_row(f"  {level} interval", f"{money(v['clv_low'])} to {money(v['clv_high'])}")
            t.add_row("P(alive)", lang.percent(v["p_alive"], 1))
            t.add_row(f"expected purchases, next {days} days", _num(v["expected_purchases"]))
            t.add_row("expected order value", money(v["expected_order_value"]))
        else:
            before = show_time(v["clv_as_of"])[:10]
            t.add_row("CLV", f"not scored: no completed order before {before}")
    if "churn_run_id" in v:
        if v["churn_scored"]:
            high = " (high)" if v["high_churn_risk"] else ""
            t.add_row("churn risk", lang.percent(v["churn_risk"], 1) + high)
            change = v.get("churn_risk_change")
            if change is not None:
                since = show_time(v["churn_previous_as_of"])[:10]
                before = lang.percent(v["churn_risk"] - change, 1)
                word = "up" if change > 0 else "down" if change < 0 else "unchanged"
                shown = f"{word} {lang.number(abs(change) * 100, 3)} pts" if change else word
                t.add_row(f"  change since {since}", f"{shown}, from {before}")
        else:
            t.add_row("churn risk", "not scored")
    console.print(t)


def _print_tastes(pr: Any) -> None:
    """Favourite categories and the channel mix of orders and events."""
    if not pr.favourite_categories.empty:
        console.print(
            "  favourite categories: "
            + ", ".join(f"{r.category} {r.share:.0%}" for r in pr.favourite_categories.itertuples())
        )
    for kind, mix in pr.channel_mix.items():
        if mix:
            console.print(
                f"  {kind} by channel: "
                + ", ".join(f"{c} {v['count']:,} ({v['share']:.0%})" for c, v in mix.items())
            )


def _print_persona(p: Any) -> None:
    console.print(
        f"\n[bold]{escape(p.segment)}[/] — {p.n_users:,} user{'' if p.n_users == 1 else 's'} "
        f"({p.user_share:.1%}), "
        f"{p.revenue_share:.1%} of revenue  [dim]{escape(p.segmentation)} run {p.run_id}[/]",
        markup=True,
    )
    console.print(f"  {p.summary}")
    t = Table(title="most distinguishing features (standardized difference)")
    for c in (
        "feature",
        "median",
        "population median",
        "mean",
        "population mean",
        "ratio",
        "std diff",
    ):
        t.add_column(c, justify="left" if c == "feature" else "right")
    from segmint._labels import feature_label

    for name, r in p.distinguishing.iterrows():
        t.add_row(
            feature_label(str(name)),
            _num(r["median"]),
            _num(r["population_median"]),
            _num(r["mean"]),
            _num(r["population_mean"]),
            _num(r["ratio"]),
            f"{r['std_diff']:+.2f}",
        )
    console.print(t)
    if not p.top_categories.empty:
        console.print(
            "  top categories: "
            + ", ".join(
                f"{r.category} {r.share:.0%} (x{r.index:.1f})"
                for r in p.top_categories.itertuples()
            )
        )
    if not p.top_items.empty:
        console.print(
            "  top items: "
            + ", ".join(
                f"{r.title or r.item_id} ({r.buyers:,} buyers)" for r in p.top_items.itertuples()
            )
        )
    for dim, frame in p.demographics.items():
        console.print(
            f"  {dim}: "
            + ", ".join(
                f"{r.value} {r.share:.0%} (all {r.population_share:.0%})"
                for r in frame.head(4).itertuples()
            )
        )
    if not p.lifecycle.empty:
        console.print(
            "  lifecycle: "
            + ", ".join(f"{r.value} {r.share:.0%}" for r in p.lifecycle.itertuples())
        )


@app.command()
def persona(
    segmentation: Annotated[str, typer.Argument(help="Segmentation name (latest run) or run id.")],
    segment: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Who the people in a segment are, against the whole population."""
    from segmint import open_project

    def go() -> list[Any]:
        with open_project(project) as p:
            _LOCALE[0] = p.config.locale
            return [p.persona(segmentation, segment)] if segment else p.personas(segmentation)

    found = _run(go)
    if as_json:
        print_json([x.to_dict() for x in found])
        return
    for x in found:
        _print_persona(x)
