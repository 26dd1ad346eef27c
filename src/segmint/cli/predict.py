"""``segmint predict clv|churn|list|show|export``: customer value and churn risk, stored
as versioned runs (see docs/predict.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._common import JsonOpt, ProjectOpt, _num, console, err, print_json, spinner
from segmint.cli._common import run as _run
from segmint.cli.export import FormatOpt, OutOpt, _command_line, _print_paths

predict_app = typer.Typer(
    help="Customer lifetime value (BG/NBD + Gamma-Gamma) and churn risk, as versioned runs.",
    no_args_is_help=True,
)

AsOfOpt = Annotated[
    str | None,
    typer.Option(
        help="'latest' (the day after the newest activity), 'today' or YYYY-MM-DD: only "
        "orders before it count (default: features.as_of of segmint.yaml)."
    ),
]
TopOpt = Annotated[int, typer.Option("--top", "-n", min=0, help="How many top customers to show.")]

MODEL_NAMES = {
    "bgnbd": "BG/NBD (Fader, Hardie & Lee 2005)",
    "mbgnbd": "MBG/NBD (Batislam, Denizel & Filiztekin 2007)",
}
TOP_SHARE = 0.1
"""The share of customers whose part of the total CLV is reported (the top decile)."""


# -- figures drawn from a run -----------------------------------------------------------
def clv_summary(scores: Any) -> dict[str, Any]:
    """Total, mean and median CLV and the share of the total held by the top decile of
    customers (by CLV), from a ``clv`` run's scores."""
    import math

    clv = scores["clv"].astype(float).dropna().sort_values(ascending=False)
    total = float(clv.sum())
    n_top = math.ceil(len(clv) * TOP_SHARE)
    return {
        "n_customers": len(clv),
        "clv_total": total,
        "clv_mean": float(clv.mean()) if len(clv) else None,
        "clv_median": float(clv.median()) if len(clv) else None,
        "top_decile_share": float(clv.iloc[:n_top].sum()) / total if total > 0 else None,
        "p_alive_mean": float(scores["p_alive"].mean()) if len(scores) else None,
    }


def churn_summary(scores: Any) -> dict[str, Any]:
    """Mean churn risk and how many customers are more likely gone than not."""
    risk = scores["churn_risk"].astype(float).dropna()
    return {
        "n_customers": len(risk),
        "churn_risk_mean": float(risk.mean()) if len(risk) else None,
        "n_high_risk": int((risk >= 0.5).sum()),
    }


def top_customers(run: Any, n: int) -> Any:
    """The ``n`` customers with the highest CLV (``clv`` run) or churn risk (``churn``
    run): user ids and scores, nothing personal."""
    col = "clv" if run.kind == "clv" else "churn_risk"
    return run.scores.sort_values([col, "user_id"], ascending=[False, True]).head(n)


def run_json(run: Any, *, top: int | None = None) -> dict[str, Any]:
    """A run as ``--json`` prints it: ids, settings, metrics, details, a summary and (with
    ``top``) its top customers."""
    summary = clv_summary(run.scores) if run.kind == "clv" else churn_summary(run.scores)
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "kind": run.kind,
        "created_at": run.created_at,
        "as_of": run.as_of,
        "n_users": run.n_users,
        "params": run.params,
        "metrics": run.metrics,
        "summary": summary,
        "details": run.details,
    }
    if top is not None:
        out["top"] = top_customers(run, top)
    return out


# -- drawing ------------------------------------------------------------------------------
def _day(value: Any) -> str:
    import pandas as pd

    return "" if value is None else f"{pd.Timestamp(value):%Y-%m-%d}"


def _fit_table(title: str, fit: dict[str, Any]) -> Table:
    t = Table(title=title)
    # intervals from the observed information (docs/predict.md); the log-likelihood is left
    # out: the purchase model's is computed on rescaled times
    t.caption = f"fitted on {fit.get('n', 0):,} customers"
    for c in ("parameter", "estimate", "95% interval", "std. error"):
        t.add_column(c, justify="left" if c == "parameter" else "right")
    intervals = fit.get("intervals") or {}
    errors = fit.get("std_errors") or {}
    for name, value in (fit.get("params") or {}).items():
        low, high = (intervals.get(name) or (None, None))[:2]
        t.add_row(name, _num(value), f"{_num(low)} – {_num(high)}", _num(errors.get(name)))
    return t


def _groups_table(t: Table, header: str, key: str, rows: list[dict[str, Any]]) -> Table:
    """A holdout table: each group (``row[key]``, under ``header``), its customers, the
    actual and the predicted mean."""
    for c in (header, "customers", "actual", "predicted"):
        t.add_column(c, justify="right")
    for row in rows:
        t.add_row(str(row[key]), f"{row['n']:,}", _num(row["actual"]), _num(row["predicted"]))
    return t


def _print_holdout(details: dict[str, Any], currency: str = "") -> None:
    h = details.get("holdout")
    if not h:
        why = details.get("holdout_skipped")
        if why:
            console.print(f"  holdout check skipped: {why}")
        return
    t = Table(
        title=f"holdout check: fitted on orders before {_day(h['calibration_end'])}, "
        f"purchases from then to {_day(h['holdout_end'])} ({h['holdout_days']:.0f} days)"
    )
    t.caption = "mean purchases per customer in the holdout, by repeat purchases before it"
    console.print(
        _groups_table(t, "calibration purchases", "purchases", h["by_calibration_purchases"])
    )
    line = (
        f"  holdout total: {_num(h['total_actual'])} purchases made, "
        f"{_num(h['total_predicted'])} predicted"
    )
    if h.get("total_error") is not None:
        line += f" ({h['total_error']:+.1%})"
    line += f"; per-customer mean absolute error {_num(h.get('customer_mae'))}"
    if h.get("correlation") is not None:
        line += f", correlation {h['correlation']:.3f}"
    console.print(line)
    if h.get("value"):
        _print_value_check(h["value"], currency)


def _print_value_check(v: dict[str, Any], currency: str) -> None:
    """The holdout's revenue, predicted against made, by tenth of predicted revenue."""
    money = f" {currency}" if currency else ""
    t = Table(title="revenue in the holdout, by tenth of predicted revenue (10 = highest)")
    t.caption = f"mean revenue per customer{f' ({currency})' if currency else ''}"
    console.print(_groups_table(t, "tenth", "group", list(reversed(v["by_predicted_decile"]))))
    line = (
        f"  holdout revenue: {_num(v['total_actual'])}{money} made, "
        f"{_num(v['total_predicted'])}{money} predicted"
    )
    if v.get("total_error") is not None:
        line += f" ({v['total_error']:+.1%})"
    if v.get("top_group_share") is not None:
        line += f"; the top tenth by prediction made {v['top_group_share']:.0%} of it"
    if v.get("correlation") is not None:
        line += f"; correlation per customer {v['correlation']:.3f}"
    console.print(line)


def print_clv(run: Any, currency: str = "") -> None:
    """A ``clv`` run: the fits with 95 % intervals, the holdout check, the CLV summary."""
    m, p = run.metrics, run.params
    model = p.get("model", m.get("purchase_model", "bgnbd"))
    console.print(
        f"clv run {run.run_id}: as of {_day(run.as_of)}, {m.get('n_customers', run.n_users):,} "
        f"customers ({m.get('n_repeat_buyers', 0):,} repeat buyers)"
    )
    fit = m.get("purchase_fit") or {}
    console.print(_fit_table(f"purchase model: {MODEL_NAMES.get(model, model)}", fit))
    if fit and not fit.get("converged", True):
        err.print(f"warning: the purchase model did not converge ({fit.get('message', '')})")
    if m.get("spend_fit"):
        console.print(
            _fit_table("spend model: Gamma-Gamma (Fader, Hardie & Lee 2005)", m["spend_fit"])
        )
    else:
        console.print("  spend model: not fitted (too few repeat buyers); CLV uses mean spend")
    _print_holdout(run.details, currency)
    s = clv_summary(run.scores)
    money = f" {currency}" if currency else ""
    top = s["top_decile_share"]
    console.print(
        f"  CLV over {p.get('horizon_days', '?')} days (discount {p.get('discount_rate', 0):.0%} "
        f"a year, margin {p.get('margin', 1):.0%}): total {_num(s['clv_total'])}{money}, "
        f"median {_num(s['clv_median'])}{money}, mean {_num(s['clv_mean'])}{money}"
    )
    console.print(
        f"  the top 10% of customers hold {'-' if top is None else f'{top:.1%}'} of it; "
        f"mean P(alive) {_num(s['p_alive_mean'])}"
    )


def _verdict(auc: Any, days: Any) -> str | None:
    """When the model's lead over BG/NBD's P(no purchase) (the fair baseline) is not clear
    of zero: said in words, with the paired difference and its interval."""
    if not isinstance(auc, dict):
        return None
    lead = auc.get("model_minus_baseline_no_purchase")
    low, high = (auc.get(f"model_minus_baseline_no_purchase_{e}") for e in ("low", "high"))
    if lead is None or low is None or high is None or low > 0:
        return None
    return (
        f"the model ranks no better than BG/NBD's P(no purchase in {days} days) here (AUC "
        f"difference {lead:+.3f}, 95% {low:+.3f} to {high:+.3f}): either ranks customers as "
        "well (docs/churn.md, weak points)"
    )


def _pair(block: Any, days: Any) -> str:
    """``model 0.97 (95% 0.96 – 0.97) vs BG/NBD: 1 − P(alive) 0.72, P(no purchase in 90
    days) 0.94`` from an AUC or Brier entry of a churn run."""
    if not isinstance(block, dict):
        return _num(block)
    text = f"model {_num(block.get('model'))}"
    if block.get("model_low") is not None and block.get("model_high") is not None:
        text += f" (95% {_num(block['model_low'])} – {_num(block['model_high'])})"
    baselines = [
        f"{label} {_num(block[key])}"
        for key, label in (
            ("baseline_p_alive", "1 − P(alive)"),
            ("baseline_no_purchase", f"P(no purchase in {days} days)"),
        )
        if block.get(key) is not None
    ]
    if baselines:
        text += " vs BG/NBD: " + ", ".join(baselines)
    return text


def print_churn(run: Any) -> None:
    """A ``churn`` run: AUC and Brier score against the P(alive) baseline, calibration."""
    m, p = run.metrics, run.params
    days = p.get("churn_days", "?")
    console.print(
        f"churn run {run.run_id}: as of {_day(run.as_of)}, {run.n_users:,} customers; churn = "
        f"no completed order in the {days} days after"
    )
    if m.get("n_holdout") is not None and m.get("base_rate") is not None:
        console.print(
            f"  checked on a later cut-off: {m['n_holdout']:,} customers, "
            f"{_pct(m['base_rate'])} of them churned"
        )
    if m.get("auc") is not None:
        console.print(f"  AUC on the later holdout: {_pair(m['auc'], days)}")
        verdict = _verdict(m["auc"], days)
        if verdict:
            console.print(f"  {verdict}", markup=False)
    if m.get("brier") is not None:
        console.print(f"  Brier score (lower is better): {_pair(m['brier'], days)}")
    cal = run.details.get("calibration") or []
    if cal:
        t = Table(title="calibration on the holdout")
        for c in ("bin", "customers", "mean predicted", "observed"):
            t.add_column(c, justify="left" if c == "bin" else "right")
        for row in cal:
            t.add_row(
                str(row.get("bin", "")),
                f"{int(row.get('n', 0)):,}",
                _pct(row.get("predicted")),
                _pct(row.get("observed")),
            )
        console.print(t)
    s = churn_summary(run.scores)
    console.print(
        f"  mean churn risk {_pct(s['churn_risk_mean'])}; {s['n_high_risk']:,} customers at "
        "50% or more"
    )


def _pct(v: Any) -> str:
    return "-" if v is None or v != v else f"{float(v):.1%}"


def print_run(run: Any, currency: str = "", *, top: int = 0) -> None:
    """A run of either kind and (``top`` > 0) its top customers."""
    if run.kind == "clv":
        print_clv(run, currency)
    else:
        print_churn(run)
    if top > 0:
        from segmint.cli._common import frame_table

        title = f"top {top} customers by {'CLV' if run.kind == 'clv' else 'churn risk'}"
        table = frame_table(top_customers(run, top), title)
        table.min_width = len(title) + 4  # the title on one line
        console.print(table)


# -- commands -----------------------------------------------------------------------------
@predict_app.command("clv")
def predict_clv(
    project: ProjectOpt = Path("."),
    as_of: AsOfOpt = None,
    model: Annotated[
        str | None,
        typer.Option(help="Purchase model: bgnbd or mbgnbd (default: predict.model)."),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(help="CLV horizon in days (default: predict.horizon_days)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit BG/NBD (or MBG/NBD) and Gamma-Gamma on the orders before the as-of date, check
    them on a holdout and store every customer's P(alive), expected purchases and CLV."""
    from segmint import open_project

    def go() -> tuple[Any, str, str | None]:
        with open_project(project) as p, spinner(disable=as_json) as progress:
            progress.add_task("fitting BG/NBD and Gamma-Gamma", total=None)
            run = p.predict_clv(as_of, model=model, horizon_days=horizon)
            return run, p.config.currency, _not_latest(p.store, run)

    run, currency, note = _run(go)
    if as_json:
        print_json(run_json(run))
    else:
        print_clv(run, currency)
        _print_note(note)


@predict_app.command("churn")
def predict_churn(
    project: ProjectOpt = Path("."),
    as_of: AsOfOpt = None,
    days: Annotated[
        int | None,
        typer.Option(
            help="Churn = no completed order in this many days after the as-of date "
            "(default: predict.churn_days)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a churn model on earlier cut-offs, check it (AUC, calibration) against
    BG/NBD's P(alive) on a later one and store every customer's churn risk."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p, spinner(disable=as_json) as progress:
            progress.add_task("training the churn model", total=None)
            run = p.predict_churn(as_of, churn_days=days)
            return run, _not_latest(p.store, run)

    run, note = _run(go)
    if as_json:
        print_json(run_json(run))
    else:
        print_churn(run)
        _print_note(note)


def _not_latest(store: Any, run: Any) -> str | None:
    """A note when ``run`` (just made) is not the latest of its kind: an earlier as-of
    date than a stored run's, which stays what the product reads."""
    from segmint.store import latest_run_sql

    found = store.query(latest_run_sql("prediction", columns="run_id, as_of", kind=run.kind))
    if found.empty or str(found.iat[0, 0]) == run.run_id:
        return None
    return (
        f"this run is as of {_day(run.as_of)}, so it is not the latest {run.kind} run: "
        "profiles, the report, the decision endpoint and rules keep using "
        f"{found.iat[0, 0]} (as of {_day(found.iat[0, 1])}), the newest as-of date; this one "
        + ("can be the earlier state churn_risk_change compares with" if run.kind == "churn"
           else "is kept for comparison")
        + " (segmint predict list)"
    )  # fmt: skip


def _print_note(note: str | None) -> None:
    if note:
        console.print(f"  note: {note}", markup=False)


@predict_app.command("list")
def predict_list(
    project: ProjectOpt = Path("."),
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind: clv or churn.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored prediction runs, newest first."""
    from segmint import open_project

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            return p.prediction_runs(kind), p.config.timezone

    runs, tz = _run(go)
    if as_json:
        print_json(runs)
        return
    if runs.empty:
        which = f" of kind {kind}" if kind else ""
        console.print(
            f"no prediction runs{which} in the store yet: `segmint predict clv` and "
            "`segmint predict churn` make them"
        )
        return
    from segmint.cli._common import show_time

    t = Table(title=f"prediction runs (newest first; created in {tz}, as of in UTC)")
    for c in ("run_id", "kind", "created_at", "as_of", "users"):
        t.add_column(c, justify="right" if c == "users" else "left", overflow="fold")
    for r in runs.itertuples(index=False):
        t.add_row(r.run_id, r.kind, show_time(r.created_at, tz), _day(r.as_of), f"{r.n_users:,}")
    console.print(t)


@predict_app.command("show")
def predict_show(
    run: Annotated[
        str, typer.Argument(help="Run id (or its start), or clv / churn for the latest run.")
    ],
    project: ProjectOpt = Path("."),
    n: TopOpt = 10,
    as_json: JsonOpt = False,
) -> None:
    """Show a run: its fit, checks and summary, and its top customers by CLV or churn
    risk (user ids only)."""
    from segmint import open_project

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            return p.prediction_run(run), p.config.currency

    found, currency = _run(go)
    if as_json:
        print_json(run_json(found, top=n))
    else:
        print_run(found, currency, top=n)


@predict_app.command("export")
def predict_export(
    ctx: typer.Context,
    run: Annotated[
        str, typer.Argument(help="Run id (or its start), or clv / churn for the latest run.")
    ],
    out: OutOpt,
    fmt: FormatOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write a run's scores, one row per customer (user id and the run's columns), as
    CSV, Excel, Parquet or JSON; recorded in `segmint export log`."""
    from segmint import open_project

    def go() -> list[Path]:
        with open_project(project) as p:
            return p.export_predictions(run, out, fmt, command=_command_line(ctx))

    _print_paths(_run(go), as_json)
