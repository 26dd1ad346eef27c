"""The report's "Customer value" section: the latest CLV run (fitted parameters with their
intervals, the holdout check as in Fader, Hardie & Lee 2005, figure 4, CLV by segment of
the report's main segmentation) and the latest churn run (AUC against BG/NBD's P(alive),
calibration). Shown only when a prediction run exists.

Everything drawn is aggregated first: the holdout table (8 rows), CLV quantiles per
segment, the calibration bins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from segmint._i18n import Language, language
from segmint.report._charts import (
    GRID,
    MUTED,
    REVENUE_COLOR,
    USERS_COLOR,
    _layout,
    _phone,
    _phone_categories,
    currency_symbol,
)

if TYPE_CHECKING:
    from segmint.predict import PredictionRun
    from segmint.profiles import Persona
    from segmint.project import Project
    from segmint.segments import SegmentResult

CHURN_THRESHOLD = 0.5
"""High churn risk starts here (as in the personas)."""
WHISKERS = (0.05, 0.95)
"""The CLV boxes' whiskers: 5th and 95th percentiles (CLV has a long right tail)."""
MODEL_NAMES = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD"}


# -- charts ----------------------------------------------------------------------------------


def _actual_predicted_figure(
    rows: list[dict[str, Any]],
    key: str,
    *,
    x_title: str,
    y_title: str,
    hover: str,
    lang: Language,
) -> go.Figure:
    """Two lines over the groups ``rows[i][key]``: actual (solid) and predicted (dashed)."""
    x = [str(r[key]) for r in rows]
    n = [lang.n("{n} customer", "{n} customers", int(r["n"])) for r in rows]
    fig = go.Figure()
    for col, name, color, dash in (
        ("actual", lang.t("actual"), USERS_COLOR, "solid"),
        ("predicted", lang.t("predicted"), REVENUE_COLOR, "dash"),
    ):
        # a group without a value (None in the stored run) is a gap in the line, not an error
        y = [None if r.get(col) is None else float(r[col]) for r in rows]
        fig.add_scatter(
            x=x,
            y=y,
            name=name,
            mode="lines+markers",
            line={"color": color, "width": 2, "dash": dash},
            marker={"size": 8, "color": color},
            customdata=np.column_stack(
                [["–" if v is None else lang.number(v, 3) for v in y], n]  # type: ignore[list-item]
            ),
            hovertemplate=hover + "<br>" + name + ": %{customdata[0]}<br>%{customdata[1]}"
            "<extra></extra>",
        )
    fig.update_xaxes(title_text=x_title, type="category", gridcolor=GRID)
    fig.update_yaxes(title_text=y_title, rangemode="tozero", gridcolor=GRID)
    _phone(fig, height=320, yaxis={"nticks": 5})
    return _layout(fig, height=360)


def holdout_figure(rows: list[dict[str, Any]], *, lang: Language | None = None) -> go.Figure:
    """Mean purchases per customer in the holdout period, actual against predicted, by the
    number of repeat purchases in the calibration period (0, 1, ..., 7+), as in Fader,
    Hardie & Lee (2005), figure 4.

    ``rows``: ``purchases`` (the group's label), ``n``, ``actual``, ``predicted``.
    """
    lang = lang or language()
    return _actual_predicted_figure(
        rows,
        "purchases",
        x_title=lang.t("repeat purchases in the calibration period"),
        y_title=lang.t("mean purchases in the holdout period"),
        hover=lang.t("{purchases} repeat purchases", purchases="%{x}"),
        lang=lang,
    )


def holdout_value_figure(
    rows: list[dict[str, Any]], currency: str, *, lang: Language | None = None
) -> go.Figure:
    """Mean revenue per customer in the holdout period, actual against predicted, by tenth
    of predicted revenue (1 = the lowest, 10 = the highest).

    ``rows``: ``group`` (1..10), ``n``, ``actual``, ``predicted``.
    """
    lang = lang or language()
    return _actual_predicted_figure(
        rows,
        "group",
        x_title=lang.t("tenth by predicted revenue (10 = top)"),
        y_title=lang.t("mean revenue ({currency})", currency=currency_symbol(currency, lang)),
        hover=lang.t("tenth {group}", group="%{x}"),
        lang=lang,
    )


def clv_by_segment_figure(
    stats: pd.DataFrame,
    *,
    colors: dict[str, str],
    currency: str,
    lang: Language | None = None,
) -> go.Figure:
    """Each segment's CLV distribution as a box: quartiles, median, whiskers at the 5th
    and 95th percentiles, the mean as a dashed line.

    ``stats``: one row per segment (top to bottom) with ``label``, ``segment``, ``n``,
    ``p05``, ``p25``, ``median``, ``p75``, ``p95``, ``mean``.
    """
    lang = lang or language()
    symbol = currency_symbol(currency, lang)
    fig = go.Figure()
    for row in stats.to_dict(orient="records"):
        color = colors.get(str(row["segment"]), MUTED)
        q = {k: float(row[k]) for k in ("p05", "p25", "median", "p75", "p95", "mean")}
        hover = "<br>".join(
            [
                str(row["label"]),
                lang.n("{n} customer", "{n} customers", int(row["n"])),
                lang.t("median {value}", value=lang.money(q["median"], currency)),
                lang.t("mean {value}", value=lang.money(q["mean"], currency)),
                lang.t(
                    "middle half {low} to {high}",
                    low=lang.money(q["p25"], currency),
                    high=lang.money(q["p75"], currency),
                ),
            ]
        )
        fig.add_box(
            y=[str(row["label"])],
            q1=[q["p25"]],
            median=[q["median"]],
            q3=[q["p75"]],
            lowerfence=[q["p05"]],
            upperfence=[q["p95"]],
            mean=[q["mean"]],
            boxmean=True,
            orientation="h",
            name=str(row["label"]),
            marker_color=color,
            fillcolor=color,
            line={"color": "#1f2933", "width": 1},
            opacity=0.85,
            showlegend=False,
            hoverinfo="text",
            hovertext=[hover],
        )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(
        title_text=lang.t("predicted value per customer ({currency})", currency=symbol),
        tickprefix=symbol if len(symbol) == 1 else "",
        rangemode="tozero",
        gridcolor=GRID,
    )
    labels = [str(x) for x in stats["label"]]
    _phone(fig, xaxis={"nticks": 4}, **_phone_categories("yaxis", labels))
    return _layout(fig, height=90 + 40 * len(stats))


def calibration_figure(bins: list[dict[str, Any]], *, lang: Language | None = None) -> go.Figure:
    """Observed churn rate against the mean predicted risk, per bin of predicted risk; a
    well calibrated model lies on the diagonal."""
    lang = lang or language()
    predicted = [float(b["predicted"]) * 100 for b in bins]
    observed = [float(b["observed"]) * 100 for b in bins]
    n = [lang.n("{n} customer", "{n} customers", int(b["n"])) for b in bins]
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 100],
        y=[0, 100],
        mode="lines",
        name=lang.t("perfectly calibrated"),
        line={"color": MUTED, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=predicted,
        y=observed,
        mode="lines+markers",
        cliponaxis=False,
        name=lang.t("churn model"),
        line={"color": USERS_COLOR, "width": 2},
        marker={"size": 8, "color": USERS_COLOR},
        customdata=np.column_stack(
            [
                [lang.percent(p / 100) for p in predicted],
                [lang.percent(o / 100) for o in observed],
                n,
            ]
        ),
        hovertemplate=lang.t("predicted {predicted}", predicted="%{customdata[0]}")
        + "<br>"
        + lang.t("observed {observed}", observed="%{customdata[1]}")
        + "<br>%{customdata[2]}<extra></extra>",
    )
    fig.update_xaxes(title_text=lang.t("predicted churn risk (%)"), range=[0, 100], gridcolor=GRID)
    fig.update_yaxes(title_text=lang.t("churned (%)"), range=[0, 100], gridcolor=GRID)
    _phone(fig, height=320, xaxis={"nticks": 5}, yaxis={"nticks": 5})
    return _layout(fig, height=360)


# -- the section -----------------------------------------------------------------------------


def _latest(project: Project, kind: str) -> PredictionRun | None:
    from segmint.predict import list_prediction_runs, load_prediction_run

    if list_prediction_runs(project.store, kind).empty:
        return None
    return load_prediction_run(project.store, kind)


def value_section(
    project: Project,
    results: list[SegmentResult],
    personas_by_run: dict[str, list[Persona]],
    colors: dict[str, dict[str, str]],
    figs: Any,
    tx: Any,
) -> dict[str, Any] | None:
    """The section's data, or None when the store has no prediction run (no section)."""
    clv, churn = _latest(project, "clv"), _latest(project, "churn")
    if clv is None and churn is None:
        return None
    data: dict[str, Any] = {"clv": None, "churn": None, "kpis": _kpis(clv, churn, tx)}
    if clv is not None:
        data["clv"] = _clv_part(clv, figs, tx)
        main = results[0] if results else None
        data["clv"]["segments"] = (
            _segment_part(clv, main, personas_by_run, colors, figs, tx) if main else None
        )
    if churn is not None:
        data["churn"] = _churn_part(churn, figs, tx)
    return data


def _horizon(run: PredictionRun, tx: Any) -> str:
    days = int(run.params.get("horizon_days", 365))
    if days in (365, 366):
        return str(tx.t("the next 12 months"))
    return str(tx.n("the next {n} day", "the next {n} days", days))


def _kpis(clv: PredictionRun | None, churn: PredictionRun | None, tx: Any) -> list[dict[str, Any]]:
    kpis: list[dict[str, Any]] = []
    if clv is not None:
        m = clv.metrics
        kpis += [
            {"id": "customers_scored", "label": tx.t("customers scored"),
             "value": tx.compact(m.get("n_customers", clv.n_users)), "money": False},
            {"id": "clv_total", "label": tx.t("predicted value"),
             "value": tx.compact_money(float(m.get("clv_total", np.nan))),
             "sub": _horizon(clv, tx), "money": True},
            {"id": "clv_median", "label": tx.t("median CLV per customer"),
             "value": tx.money(m.get("clv_median")), "money": True},
            {"id": "p_alive_mean", "label": tx.t("mean P(alive)"),
             "value": tx.pct(m.get("p_alive_mean"), 0), "money": False},
        ]  # fmt: skip
    if churn is not None:
        risk = pd.to_numeric(churn.scores["churn_risk"], errors="coerce").dropna()
        high = float((risk >= CHURN_THRESHOLD).mean()) if len(risk) else float("nan")
        kpis.append(
            {"id": "churn_high", "label": tx.t("at high risk of churning"),
             "value": tx.pct(high, 0),
             "sub": tx.t("risk ≥ {threshold}", threshold=tx.pct(CHURN_THRESHOLD, 0)),
             "money": False}
        )  # fmt: skip
    for k in kpis:
        k.setdefault("sub", "")
    return kpis


def _clv_part(run: PredictionRun, figs: Any, tx: Any) -> dict[str, Any]:
    """The lead, the parameters table and the holdout check of a CLV run."""
    p = run.params
    model = MODEL_NAMES.get(str(p.get("model", run.metrics.get("purchase_model"))), "BG/NBD")
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "lead": tx.t(
            "Every customer with a completed order before {date} is scored: {model} predicts "
            "how often they will buy and whether they are still a customer (P(alive)), "
            "Gamma-Gamma how much they spend per order. CLV is the margin ({margin} of "
            "revenue) they are expected to bring over {horizon}, discounted at {rate} a year; "
            "its interval ({level}) comes from the uncertainty of their order value.",
            date=tx.day(run.as_of),
            model=model,
            margin=tx.pct(float(p.get("margin", 1.0)), 0),
            horizon=_horizon(run, tx),
            rate=tx.pct(float(p.get("discount_rate", 0.1)), 0),
            level=tx.pct(float(p.get("interval", 0.9)), 0),
        ),
        "params": _parameter_rows(run, model, tx),
        "holdout": None,
        "holdout_note": None,
    }
    holdout = run.details.get("holdout")
    if holdout and holdout.get("by_calibration_purchases"):
        out["holdout"] = _holdout(holdout, figs, tx)
    else:
        out["holdout_note"] = tx.t(
            "No holdout check in this run: {why}.",
            why=run.details.get("holdout_skipped") or tx.t("it was not asked for"),
        )
    return out


def _parameter_rows(run: PredictionRun, model: str, tx: Any) -> list[dict[str, str]]:
    rows = []
    for name, key in ((model, "purchase_fit"), ("Gamma-Gamma", "spend_fit")):
        fit = run.metrics.get(key) or {}
        for param, value in (fit.get("params") or {}).items():
            se = (fit.get("std_errors") or {}).get(param)
            lo, hi = ((fit.get("intervals") or {}).get(param) or [None, None])[:2]
            rows.append(
                {
                    "model": name,
                    "param": str(param),
                    "value": _num(value, tx),
                    "se": _num(se, tx),
                    "ci": "–" if lo is None else f"{_num(lo, tx)} – {_num(hi, tx)}",
                    "n": tx.whole(fit.get("n")),
                }
            )
    return rows


def _num(x: Any, tx: Any) -> str:
    if x is None or not np.isfinite(float(x)):
        return "–"
    return str(tx.lang.number(float(x), 4))


def _holdout(holdout: dict[str, Any], figs: Any, tx: Any) -> dict[str, Any]:
    rows = holdout["by_calibration_purchases"]
    actual, predicted = holdout.get("total_actual"), holdout.get("total_predicted")
    error = holdout.get("total_error")
    corr = holdout.get("correlation")
    return {
        "figure": figs.html(holdout_figure(rows, lang=tx.lang)),
        "caption": tx.t(
            "Fitted on the orders before {start} only, then asked for the {days} days to {end}: "
            "{predicted} purchases predicted, {actual} made ({error}); per customer, "
            "predicted and actual correlate at {corr}.",
            start=tx.day(holdout.get("calibration_end")),
            days=tx.whole(holdout.get("holdout_days")),
            end=tx.day(holdout.get("holdout_end")),
            predicted=tx.whole(predicted),
            actual=tx.whole(actual),
            error=("+" if (error or 0) > 0 else "") + tx.pct(error, 1),
            corr="–" if corr is None else tx.lang.number(float(corr), 2),
        ),
        "rows": [
            {
                "purchases": str(r["purchases"]),
                "n": tx.whole(r["n"]),
                "actual": tx.lang.number(float(r["actual"]), 3),
                "predicted": tx.lang.number(float(r["predicted"]), 3),
            }
            for r in rows
        ],
        "value": _holdout_value(holdout.get("value"), figs, tx),
    }


def _holdout_value(value: dict[str, Any] | None, figs: Any, tx: Any) -> dict[str, Any] | None:
    """The revenue side of the holdout check (runs stored before it have none)."""
    if not value or not value.get("by_predicted_decile"):
        return None
    rows = value["by_predicted_decile"]
    error, share = value.get("total_error"), value.get("top_group_share")
    return {
        "figure": figs.html(holdout_value_figure(rows, tx.currency, lang=tx.lang)),
        "caption": tx.t(
            "Revenue in the same period: {predicted} predicted, {actual} made ({error}); the "
            "tenth of customers the model ranked highest made {share} of it.",
            predicted=tx.money(value.get("total_predicted")),
            actual=tx.money(value.get("total_actual")),
            error=("+" if (error or 0) > 0 else "") + tx.pct(error, 1),
            share=tx.pct(share, 0),
        ),
        "rows": [
            {
                "group": str(r["group"]),
                "n": tx.whole(r["n"]),
                "actual": tx.money(r["actual"]),
                "predicted": tx.money(r["predicted"]),
            }
            for r in reversed(rows)
        ],
    }


def _segment_part(
    clv: PredictionRun,
    run: SegmentResult,
    personas_by_run: dict[str, list[Persona]],
    colors: dict[str, dict[str, str]],
    figs: Any,
    tx: Any,
) -> dict[str, Any] | None:
    """CLV quantiles per segment of ``run`` (a box each) and the personas' value figures."""
    scores = clv.scores[["user_id", "clv"]].assign(user_id=lambda f: f["user_id"].astype(str))
    members = run.assignments[["user_id", "segment"]].assign(
        user_id=lambda f: f["user_id"].astype(str), segment=lambda f: f["segment"].astype(str)
    )
    frame = members.merge(scores, on="user_id", how="inner")
    frame["clv"] = pd.to_numeric(frame["clv"], errors="coerce")
    frame = frame.dropna(subset=["clv"])
    if frame.empty:
        return None
    ps = personas_by_run.get(run.run_id) or []
    order = [p.segment for p in ps] or list(frame["segment"].value_counts().index)
    by = frame.groupby("segment")["clv"]
    levels = {"p05": WHISKERS[0], "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": WHISKERS[1]}
    q = pd.DataFrame({name: by.quantile(level) for name, level in levels.items()})
    stats = q.assign(n=by.size(), mean=by.mean()).reindex([s for s in order if s in q.index])
    stats = stats.reset_index(names="segment")
    stats["label"] = stats["segment"].map(tx.segment)
    rows = []
    for p in ps:
        v = p.value
        if not v:
            continue
        rows.append(
            {
                "segment": tx.segment(p.segment),
                "color": colors.get(run.run_id, {}).get(p.segment, MUTED),
                "n_scored": tx.whole(v.get("n_scored")),
                "median": tx.money(v.get("clv_median")),
                "mean": tx.money(v.get("clv_mean")),
                "total": tx.compact_money(float(v.get("clv_total") or 0.0)),
                "share": tx.pct(v.get("clv_share"), 0),
                "p_alive": tx.pct(v.get("p_alive_mean"), 0),
                "churn": tx.pct(v.get("churn_high_share"), 0)
                if v.get("churn_high_share") is not None
                else "–",
            }
        )
    return {
        "title": f"{run.segmentation} ({run.method})",
        "run_id": run.run_id,
        "figure": figs.html(
            clv_by_segment_figure(
                stats,
                colors={s: colors.get(run.run_id, {}).get(s, MUTED) for s in stats["segment"]},
                currency=tx.currency,
                lang=tx.lang,
            )
        ),
        "rows": rows,
    }


def _churn_part(run: PredictionRun, figs: Any, tx: Any) -> dict[str, Any]:
    auc = run.metrics.get("auc") or {}
    days = run.params.get("churn_days")
    headline = None
    if auc.get("model") is not None:
        low, high = auc.get("model_low"), auc.get("model_high")
        base = auc.get("baseline_p_alive")
        more = ""
        if auc.get("baseline_no_purchase") is not None and days is not None:
            more = tx.t(
                ", its probability of no purchase in {days} days {value}",
                days=tx.whole(days),
                value=tx.lang.number(float(auc["baseline_no_purchase"]), 3),
            )
        headline = tx.t(
            "The churn model ranks who will churn with an AUC of {auc}{ci}; BG/NBD's P(alive) "
            "alone reaches {baseline}{more}.",
            more=more,
            auc=tx.lang.number(float(auc["model"]), 3),
            ci=""
            if low is None or high is None
            else tx.t(
                " (95% CI {low} to {high})",
                low=tx.lang.number(float(low), 3),
                high=tx.lang.number(float(high), 3),
            ),
            baseline="–" if base is None else tx.lang.number(float(base), 3),
        )
    rows = _auc_rows(run, tx)
    bins = run.details.get("calibration") or []
    return {
        "run_id": run.run_id,
        "lead": tx.t(
            "Churn: no completed order in the {days} days after {date}. The churn risk is a "
            "gradient boosting model's probability of it, checked on a later period it was "
            "not trained on.",
            days=tx.whole(days) if days is not None else "–",
            date=tx.day(run.as_of),
        ),
        "headline": headline,
        "auc_rows": rows,
        "auc_caption": _auc_caption(run, tx),
        "figure": figs.html(calibration_figure(bins, lang=tx.lang)) if bins else None,
    }


def _auc_rows(run: PredictionRun, tx: Any) -> list[dict[str, str]]:
    """The churn model and BG/NBD's two baselines on the holdout, named in the report's
    language (the run's own ``auc_table`` says the same in English)."""
    auc, brier = run.metrics.get("auc") or {}, run.metrics.get("brier") or {}
    name = MODEL_NAMES.get(str(run.params.get("model")), "BG/NBD")
    days = run.params.get("churn_days")
    labels = {
        "model": tx.t("gradient boosting"),
        "baseline_p_alive": f"{name} 1 − P(alive)",
        "baseline_no_purchase": tx.t(
            "{model} P(no purchase in {days} days)", model=name, days=tx.whole(days)
        ),
    }
    return [
        {
            "model": label,
            "auc": _num(auc.get(k), tx),
            "ci": "–"
            if auc.get(f"{k}_low") is None or auc.get(f"{k}_high") is None
            else f"{_num(auc[f'{k}_low'], tx)} – {_num(auc[f'{k}_high'], tx)}",
            "brier": _num(brier.get(k), tx),
        }
        for k, label in labels.items()
        if auc.get(k) is not None
    ]


def _auc_caption(run: PredictionRun, tx: Any) -> str | None:
    m = run.metrics
    holdout = (m.get("cutoffs") or {}).get("holdout")
    if holdout is None or m.get("n_holdout") is None:
        return None
    return str(
        tx.t(
            "On the holdout: {n} customers at {date}, {share} of whom made no completed order "
            "in the {days} days after.",
            n=tx.whole(m["n_holdout"]),
            date=tx.day(holdout),
            share=tx.pct(m.get("base_rate"), 0),
            days=tx.whole(run.params.get("churn_days")),
        )
    )
