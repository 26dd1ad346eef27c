"""``segmint segment`` and ``segmint segments list|show|diff``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._app import app
from segmint.cli._common import JsonOpt, ProjectOpt, _num, _shown, console, err, print_json, spinner
from segmint.cli._common import run as _run

segments_app = typer.Typer(
    help="Inspect and compare stored segmentation runs.", no_args_is_help=True
)


def _pct_or_num(v: Any, rate: bool) -> str:
    if v is None:
        return "—"
    return f"{float(v):.1%}" if rate else _num(float(v))


def _print_supervised_result(r: Any) -> None:
    """A tree's leaves or a propensity model's groups: rule, users, share, rate, lift."""
    d, m = r.details, r.metrics
    rows = d.get("leaves") or d.get("groups") or []
    rate = d.get("target_kind") != "number"
    what = "rate" if rate else "mean"
    t = Table(title=f"{r.segmentation} ({r.method}) — run {r.run_id}")
    t.caption = f"target: {d.get('target', '?')}"
    t.add_column("segment")
    t.add_column("rule", overflow="fold")
    t.add_column("users", justify="right")
    t.add_column("share", justify="right")
    t.add_column(f"target {what}", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("lift", justify="right")
    t.add_column(f"holdout {what}", justify="right")
    for row in rows:
        lo, hi = row.get("rate_lo"), row.get("rate_hi")
        t.add_row(
            row["segment"],
            _shown(row.get("rule") or r.rules.get(row["segment"], ""), 200),
            f"{row['n_users']:,}",
            _pct_or_num(row.get("share"), True),
            _pct_or_num(row.get("rate"), rate),
            f"{_pct_or_num(lo, rate)} – {_pct_or_num(hi, rate)}",
            "—" if row.get("lift") is None else f"{row['lift']:.2f}",
            _pct_or_num(row.get("holdout_rate"), rate),
        )
    console.print(t)
    base = _pct_or_num(m.get("base_rate"), rate)
    line = f"  base {what} {base} over {m.get('n_target', 0):,} users with a target"
    if m.get("auc_holdout") is not None:
        line += f"; holdout AUC {m['auc_holdout']:.3f} ({m.get('n_holdout', 0):,} users)"
        if m.get("auc_train") is not None:
            line += f", training AUC {m['auc_train']:.3f}"
    if m.get("r2_holdout") is not None:
        line += f"; holdout R² {m['r2_holdout']:.3f} ({m.get('n_holdout', 0):,} users)"
    console.print(line)
    if d.get("calibration"):
        cal = Table(title="calibration on the holdout")
        for col in ("group", "holdout users", "mean predicted", "observed"):
            cal.add_column(col, justify="left" if col == "group" else "right")
        for c in d["calibration"]:
            cal.add_row(
                c["segment"],
                f"{c['n_holdout']:,}",
                _pct_or_num(c["predicted"], True),
                _pct_or_num(c["observed"], True),
            )
        console.print(cal)
    if d.get("importances"):
        top = ", ".join(f"{i['label']} {i['auc_drop']:+.3f}" for i in d["importances"][:10])
        console.print(f"  importance (AUC drop when shuffled): {top}")
    if d.get("features_dropped"):
        dropped = "; ".join(f"{k}: {v}" for k, v in d["features_dropped"].items())
        console.print(f"  left out: {dropped}")
    for w in d.get("warnings") or []:
        err.print(f"warning: {w}")


def _print_segment_result(r: Any) -> None:
    if r.method in ("tree", "propensity"):
        _print_supervised_result(r)
        return
    names = r.details.get("names", {})
    t = Table(title=f"{r.segmentation} ({r.method}) — run {r.run_id}")
    t.add_column("segment")
    if names:
        t.add_column("cluster")
    t.add_column("users", justify="right")
    t.add_column("share", justify="right")
    t.add_column("revenue share", justify="right")
    if r.rules:
        t.add_column("rule")
    m = r.metrics
    for seg, n in m["sizes"].items():
        row = [seg]
        if names:
            row.append(names.get(seg, ""))
        row += [f"{n:,}", f"{m['shares'][seg]:.1%}", f"{m['revenue_share'][seg]:.1%}"]
        if r.rules:
            row.append(r.rules.get(seg, ""))
        t.add_row(*row)
    console.print(t)
    quality = {
        k: m[k]
        for k in ("silhouette", "calinski_harabasz", "davies_bouldin", "sse", "stability")
        if k in m and m[k] is not None
    }
    if quality:
        console.print(
            "  quality: " + ", ".join(f"{k} {_num(float(v))}" for k, v in quality.items())
        )
    if "decision" in r.details:
        console.print(f"  k selection: {r.details['decision']}")
    if "fidelity" in r.details:
        console.print(f"  surrogate tree fidelity: {r.details['fidelity']:.1f}%")


def _result_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "segmentation": r.segmentation,
        "method": r.method,
        "as_of": str(r.as_of),
        "feature_run_id": r.feature_run_id,
        "params": r.params,
        "metrics": r.metrics,
        "rules": r.rules,
        "details": r.details,
    }


@app.command()
def segment(
    names: Annotated[list[str] | None, typer.Argument(help="Segmentations (default: all).")] = None,
    project: ProjectOpt = Path("."),
    as_of: Annotated[str | None, typer.Option(help="'latest', 'today' or YYYY-MM-DD.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute features, run segmentations and store each as a versioned run."""
    from segmint import open_project

    def go() -> list[Any]:
        with (
            open_project(project) as p,
            spinner(disable=as_json) as progress,
        ):
            task = progress.add_task("computing features", total=None)
            run = p.compute_features(as_of=as_of)
            out = p.segment(
                names or None,
                feature_run=run,
                callback=lambda n: progress.update(task, description=f"segment {n}"),
            )
            return out if isinstance(out, list) else [out]

    results = _run(go)
    if as_json:
        print_json([_result_json(r) for r in results])
        return
    for r in results:
        _print_segment_result(r)


@segments_app.command("list")
def segments_list(
    project: ProjectOpt = Path("."),
    segmentation: Annotated[str | None, typer.Option(help="Only this segmentation.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored segmentation runs, newest first."""
    from segmint import open_project

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            return p.segment_runs(segmentation), p.config.timezone

    runs, tz = _run(go)
    if as_json:
        print_json(runs)
        return
    if runs.empty:
        which = f" of {segmentation!r}" if segmentation else ""
        console.print(
            f"no segmentation runs{which} in the store yet: `segmint segment` computes the "
            "features and runs the segmentations of segmint.yaml"
        )
        return
    from segmint.cli._common import show_time

    t = Table(title=f"segment runs (newest first; times in {tz})")
    for c in runs.columns:
        t.add_column(c, overflow="fold")
    for row in runs.itertuples(index=False):
        t.add_row(
            *[
                show_time(v, tz)
                if c == "created_at"
                else show_time(v)  # as-of cut-offs are UTC days
                if c == "as_of"
                else str(v)
                for c, v in zip(runs.columns, row, strict=True)
            ]
        )
    console.print(t)


@segments_app.command("show")
def segments_show(
    run: Annotated[str, typer.Argument(help="Run id or segmentation name (its latest run).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show one run: sizes, shares, revenue shares, rules and quality metrics."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.segment_run(run)

    r = _run(go)
    if as_json:
        print_json(_result_json(r))
    else:
        _print_segment_result(r)


@segments_app.command("diff")
def segments_diff(
    run_a: Annotated[str, typer.Argument(help="Earlier run id (or segmentation name).")],
    run_b: Annotated[str, typer.Argument(help="Later run id (or segmentation name).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Migration matrix: how many users moved from each segment of A to each of B."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.segments_diff(run_a, run_b)

    m = _run(go)
    if as_json:
        print_json(m.to_dict(orient="index"))
        return
    t = Table(title=f"{m.index.name} -> {m.columns.name}")
    t.add_column("from \\ to")
    for c in m.columns:
        t.add_column(str(c), justify="right")
    for idx, row in m.iterrows():
        t.add_row(str(idx), *[f"{v:,}" for v in row])
    console.print(t)
    moved, total = _moved(m)
    console.print(f"  {moved:,} of {total:,} users changed segment")


def _moved(matrix: Any) -> tuple[int, int]:
    """(users who changed segment, all users) of a migration matrix."""
    total = int(matrix.to_numpy().sum())
    same = matrix.stack()
    stayed = int(same[same.index.get_level_values(0) == same.index.get_level_values(1)].sum())
    return total - stayed, total
