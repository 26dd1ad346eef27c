"""``segmint demo``: generate the demo shop and run every step on it (the orchestration
that calls several layers lives here, above them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segmint.cli._app import app
from segmint.cli._common import JsonOpt, console, print_json, spinner
from segmint.cli._common import run as _run
from segmint.cli.experiments import (
    print_evaluation,
    print_refresh,
    print_retention,
    print_satisfaction,
)
from segmint.cli.ingest import _ingest, _print_loads, _print_status
from segmint.cli.recommend import _print_evaluation
from segmint.cli.report import _write_report
from segmint.cli.segments import _print_segment_result


@app.command()
def demo(
    dir: Annotated[
        Path, typer.Option("--dir", "--project", "-p", help="Where to write the demo project.")
    ] = Path("segmint-demo"),
    users: Annotated[int, typer.Option(help="Number of demo users.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    dirty: Annotated[bool, typer.Option(help="Inject defects at known rates.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate a realistic demo shop, ingest it through the real path and report on it."""
    from segmint import open_project

    def go() -> dict[str, Any]:
        store_file = _demo_shop(dir, users, seed, dirty)
        with open_project(dir) as p:
            results = _ingest(p, None, True, False)
            _print_loads(results)
            _print_status(p.status())
            refreshed, segs = _demo_segments(p)
            predicted = _demo_predictions(p, refreshed.as_of)
            _demo_recommenders(p)
        campaigns = _demo_campaigns(dir)
        run_demo_measurement(dir, list(campaigns.reports))
        res = _write_report(open_project(dir), None, None, 5000, quiet=as_json)
        login = _demo_login(dir)
        console.print(f"store: {store_file}  (try: segmint status -p {dir})")
        console.print(
            f"report: {res.path.resolve()} ({res.size_bytes / 2**20:.1f} MiB; "
            "open it in a browser, it works offline)"
        )
        return {
            "path": Path(dir).resolve(),
            "store": store_file.resolve(),
            "report": res.path.resolve(),
            "users": users,
            "seed": seed,
            "feature_run_id": refreshed.feature_run_id,
            "segment_runs": {r.segmentation: r.run_id for r in segs},
            "prediction_runs": {r.kind: r.run_id for r in predicted},
            "campaigns": list(campaigns.reports),
            "workspace_login": str(login),
        }

    if not as_json:
        _run(go)
        return
    console.quiet = True  # the JSON summary alone on stdout
    try:
        summary = _run(go)
    finally:
        console.quiet = False
    print_json(summary)


def _demo_login(dir: Path) -> Path:
    """An editor account ``demo`` for the workspace (``segmint serve``, then ``/``), with a
    random password kept in ``.segmint/workspace-login.txt`` (readable by its owner only;
    a rerun keeps the same one)."""
    import secrets

    from segmint import open_project
    from segmint.web import add_person

    path = Path(dir) / ".segmint" / "workspace-login.txt"
    if path.exists():
        password = path.read_text(encoding="utf-8").split()[-1]
    else:
        password = secrets.token_urlsafe(12)
    with open_project(dir) as p:
        add_person(p.store, "demo", password, "editor")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: demo\npassword: {password}\n", encoding="utf-8")
    path.chmod(0o600)
    console.print(f"workspace: sign in as demo with the password in {path}")
    key = Path(dir) / ".segmint" / "master.key"
    if key.exists():  # made on first use when SEGMINT_MASTER_KEY is not set
        console.print(
            f"personal data (e-mails, phones, birthdays, names) is sealed with the key in {key}; "
            "see docs/privacy.md"
        )
    return path


def _demo_shop(dir: Path, users: int, seed: int, dirty: bool) -> Path:
    """Write the demo's raw exports; returns the store file, deleted (the demo is rebuilt
    from its files every time)."""
    from segmint.demo import generate_demo

    with spinner() as progress:
        progress.add_task(f"generating {users:,} demo users (seed {seed})", total=None)
        summary = generate_demo(dir, n_users=users, seed=seed, dirty=dirty)
    console.print(f"demo exports written to {summary.out_dir}")
    store_file = Path(dir) / "demo.duckdb"
    store_file.unlink(missing_ok=True)
    return store_file


def _demo_segments(p: Any) -> tuple[Any, list[Any]]:
    """Features and segments a month ago, then a refresh as of now, shown; returns the
    refresh and its segmentation runs."""
    with spinner() as progress:
        task = progress.add_task("computing features", total=None)
        # segments a month earlier too, so that the refresh (and the report) can
        # show who moved since then and which segments drifted
        month_ago = p.compute_features(as_of=_month_before(p))
        p.segment(["rfm", "lifecycle"], feature_run=month_ago)
        progress.update(task, description="refresh: features and segments as of now")
        refreshed = p.refresh(["rfm", "lifecycle", "value", "clv_tiers", "winback", "clusters"])
    segs = [p.segment_run(s.run_id) for s in refreshed.segmentations]
    console.print(
        f"features: run {refreshed.feature_run_id}, {len(segs[0].assignments):,} users as of "
        f"{refreshed.as_of:%Y-%m-%d}"
    )
    for r in segs:
        _print_segment_result(r)
    console.print(f"refresh (segments as of {month_ago.as_of:%Y-%m-%d} -> now):")
    print_refresh(refreshed)
    return refreshed, segs


def _demo_predictions(p: Any, as_of: Any) -> list[Any]:
    """CLV (BG/NBD + Gamma-Gamma) and churn risk as of the refresh, shown in a few lines:
    the fitted parameters, the holdout check, the churn model against P(alive), and the
    cluster with the highest value; returns the two runs. A run the refresh already made
    (a segmentation on predicted CLV computes it) is shown, not made again."""
    import time

    runs, seconds = [], []
    with spinner() as progress:
        task = progress.add_task("", total=None)
        for kind, what in (
            ("clv", "customer value: BG/NBD and Gamma-Gamma"),
            ("churn", "churn risk: gradient boosting on earlier cut-offs"),
        ):
            progress.update(task, description=what)
            started = time.perf_counter()
            run = _run_as_of(p, kind, as_of)
            if run is None:
                run = p.predict_clv(as_of) if kind == "clv" else p.predict_churn(as_of)
                seconds.append(f"{kind} took {time.perf_counter() - started:.1f} s")
            else:
                seconds.append(f"{kind} made by the refresh")
            runs.append(run)
    console.rule("customer value and churn")
    for line in demo_prediction_lines(runs[0], runs[1], p.config.currency):
        console.print(line)
    console.print(f"  details: segmint predict show clv | churn ({', '.join(seconds)})")
    persona = _valuable_cluster(p, p.config.currency)
    if persona:
        console.print(persona)
    return runs


def _run_as_of(p: Any, kind: str, as_of: Any) -> Any:
    """The latest run of ``kind`` if it is as of ``as_of``, else None."""
    import pandas as pd

    runs = p.prediction_runs(kind)
    if runs.empty:
        return None
    latest, wanted = pd.Timestamp(runs["as_of"].iloc[0]), pd.Timestamp(as_of)
    latest = latest.tz_localize("UTC") if latest.tzinfo is None else latest
    wanted = wanted.tz_localize("UTC") if wanted.tzinfo is None else wanted
    return p.prediction_run(str(runs["run_id"].iloc[0])) if latest == wanted else None


def demo_prediction_lines(clv: Any, churn: Any, currency: str) -> list[str]:
    """The demo's summary of a clv and a churn run (see ``segmint predict show``)."""
    from segmint.cli._common import _num
    from segmint.cli.predict import MODEL_NAMES, clv_summary

    def fitted(fit: dict[str, Any] | None) -> str:
        if not fit:
            return "not fitted"
        return ", ".join(
            f"{k} {_num(v)} ({_num(fit['intervals'][k][0])}-{_num(fit['intervals'][k][1])})"
            for k, v in fit["params"].items()
        )

    m = clv.metrics
    model = MODEL_NAMES.get(clv.params.get("model", "bgnbd"), "").split(" (")[0]
    lines = [
        f"{model}: {fitted(m.get('purchase_fit'))}; 95% intervals",
        f"Gamma-Gamma: {fitted(m.get('spend_fit'))}",
    ]
    h = clv.details.get("holdout")
    if h:
        # a share or a correlation is None where it has no value (no purchase in the holdout)
        error = "" if h.get("total_error") is None else f" ({h['total_error']:+.1%})"
        corr = h.get("correlation")
        corr_text = "" if corr is None else f"; correlation per customer {corr:.3f}"
        lines.append(
            f"holdout (fitted before {h['calibration_end'][:10]}, next "
            f"{h['holdout_days']:.0f} days): {_num(h['total_actual'])} purchases made, "
            f"{_num(h['total_predicted'])} predicted{error}{corr_text}"
        )
        v = h.get("value") or {}
        if v.get("total_error") is not None and v.get("top_group_share") is not None:
            lines.append(
                f"holdout revenue: {_num(v['total_actual'])} {currency} made, "
                f"{v['total_error']:+.1%} predicted; the top tenth by predicted value made "
                f"{v['top_group_share']:.0%} of it"
            )
    s = clv_summary(clv.scores)
    lines.append(
        f"CLV over {clv.params['horizon_days']} days: total {_num(s['clv_total'])} {currency}, "
        f"median {_num(s['clv_median'])} {currency}; the top 10% of customers hold "
        f"{s['top_decile_share']:.0%} of it"
    )
    auc = churn.metrics.get("auc") or {}
    if auc:
        low, high = auc.get("model_low"), auc.get("model_high")
        ci = f" (95% {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
        days = churn.params.get("churn_days", "?")
        base = [
            f"{label} {auc[key]:.3f}"
            for key, label in (
                ("baseline_p_alive", "1 - P(alive)"),
                ("baseline_no_purchase", "P(no purchase)"),
            )
            if auc.get(key) is not None
        ]
        lines.append(
            f"churn (no order in {days} days), AUC on a later holdout: {auc['model']:.3f}{ci}; "
            f"BG/NBD's {', '.join(base) or '-'}"
        )
    return ["  " + line for line in lines]


def _valuable_cluster(p: Any, currency: str) -> str | None:
    """One line on the cluster with the highest mean CLV: its size, CLV and churn risk."""
    from segmint.cli._common import _num

    run = p.segment_run("clusters")
    scored = run.assignments[["user_id", "segment"]].merge(p.predictions(), on="user_id")
    if scored.empty:
        return None
    by = scored.groupby("segment", observed=True).agg(
        n=("user_id", "size"), clv=("clv", "mean"), churn=("churn_risk", "mean")
    )
    top = by["clv"].idxmax()
    row = by.loc[top]
    name = run.details.get("names", {}).get(top)
    return (
        f"persona {top}{f' ({name})' if name else ''}: {int(row['n']):,} customers, mean CLV "
        f"{_num(row['clv'])} {currency} (all customers {_num(scored['clv'].mean())}), churn "
        f"risk {row['churn']:.0%} (all {scored['churn_risk'].mean():.0%})"
    )


def _demo_recommenders(p: Any) -> None:
    """Evaluate the recommenders, recommend with the best, show two personas."""
    with spinner(elapsed=False) as progress:
        progress.add_task("evaluating recommenders on a time split", total=None)
        evaluation = p.evaluate_recommenders()
        p.recommend_all("best")
    _print_evaluation(evaluation)
    personas = p.personas("clusters")
    for x in personas[:2]:
        console.print(f"persona: {x.summary}")


def _demo_campaigns(dir: Path) -> Any:
    """Plan and send the demo's campaigns to the local sinks, shown; returns their summary."""
    from segmint.demo import run_demo_campaigns

    with spinner(elapsed=False) as progress:
        task = progress.add_task("campaigns", total=None)
        campaigns = run_demo_campaigns(
            dir, callback=lambda stage: progress.update(task, description=stage)
        )
    print_summary(campaigns, console)
    return campaigns


def print_summary(summary: Any, console: Any) -> None:
    """Draw a demo summary with Rich (used by ``segmint demo``)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title="campaigns (planned and sent to a local SMTP sink)")
    frame = summary.table()
    for c in frame.columns:
        t.add_column(c, justify="left" if c in ("campaign", "segmentation") else "right")
    for r in frame.itertuples(index=False):
        t.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in r])
    console.print(t)
    for name, why in summary.skipped.items():
        console.print(f"  {name}: not planned - {why}")
    first = summary.plans.get(summary.preview_campaign or "") or next(
        iter(summary.plans.values()), None
    )
    if first is not None:
        f = Table(title=f"funnel of {first.campaign}")
        for c in ("step", "excluded", "remaining"):
            f.add_column(c, justify="left" if c == "step" else "right")
        fu = first.funnel
        for step, excluded, remaining in zip(
            fu["step"].tolist(), fu["excluded"].tolist(), fu["remaining"].tolist(), strict=True
        ):
            f.add_row(str(step), f"{int(excluded):,}", f"{int(remaining):,}")
        console.print(f)
    for m in summary.previews:
        console.rule(f"{m.segment} · {m.channel} · {m.to or m.user_id}")
        console.print(Text.assemble(("Subject: ", "bold"), m.subject))
        console.print(m.body)
    console.print(
        f"SMTP sink received {summary.smtp_received:,} messages for "
        f"{summary.smtp_recipients:,} recipients; webhook sink {summary.webhook_received:,} "
        f"pushes; control-group users received {summary.control_received}"
    )


def _month_before(p: Any) -> Any:
    from datetime import timedelta

    from segmint.features import default_as_of

    return default_as_of(p.store) - timedelta(days=30)


def run_demo_measurement(project_path: Path, own_campaigns: list[str]) -> None:
    """The demo's measuring step: import and evaluate the shop's planted past campaign,
    evaluate the demo's own largest campaign (interim: its window lies in the future of the
    data), show retention cohorts and satisfaction by lifecycle segment."""
    from segmint import open_project
    from segmint.demo import (
        CAMPAIGN_CONTROL_SHARE,
        CAMPAIGN_NAME,
        CAMPAIGN_WINDOW_DAYS,
    )

    with open_project(project_path) as p:
        out = p.import_campaign(
            CAMPAIGN_NAME,
            f"campaigns/{CAMPAIGN_NAME}.csv",
            control_share=CAMPAIGN_CONTROL_SHARE,
            columns={"user_id": "customer_id"},
            cost_per_message=0.05,
            cost_per_redemption=4.90,
        )
        console.rule(f"measuring: the past campaign {CAMPAIGN_NAME}")
        console.print(
            f"imported {out['imported']:,} assignments ({out['treatment']:,} treatment, "
            f"{out['control']:,} control) from campaigns/{CAMPAIGN_NAME}.csv"
        )
        with console.status("evaluating…", spinner="dots"):
            ev = p.evaluate(
                CAMPAIGN_NAME, window_days=CAMPAIGN_WINDOW_DAYS, segmentation="lifecycle"
            )
        print_evaluation(ev)
        if own_campaigns:
            sizes = {
                c: int(
                    p.store.scalar(
                        "SELECT count(*) FROM campaign_assignments WHERE campaign = ?", [c]
                    )
                    or 0
                )
                for c in own_campaigns
            }
            own = max(sizes, key=lambda c: sizes[c])
            console.rule(f"measuring: the demo's own campaign {own} (sent just now)")
            with console.status("evaluating…", spinner="dots"):
                ev2 = p.evaluate(own, window_days=30, uplift=False)
            print_evaluation(ev2)
        console.rule("retention and satisfaction")
        ret = p.retention(max_months=12, segmentation="lifecycle")
        print_retention(
            ret["matrix"].tail(6),
            ret["repeat"],
            title="retention by first-purchase cohort (last 6 cohorts, months 0-6)",
            months=6,
        )
        sat = p.satisfaction("lifecycle")
        print_satisfaction(sat.table, "satisfaction by lifecycle segment (95% CI)")
