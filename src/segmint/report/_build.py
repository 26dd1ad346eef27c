"""Build the self-contained HTML report: gather, aggregate, chart, render one file.

The report reads the project through its public methods (status, segment runs, features,
migrations) and the personas of :mod:`segmint.profiles`; everything drawn is aggregated
first (segment x feature tables, a 5 x 5 RFM grid, a migration matrix, a 2-D histogram)
except the projection scatter, which shows a random sample of at most ``sample`` users.
plotly.js is embedded once from the installed ``plotly`` package, so the file opens
offline: no CDN, no fonts, no network.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segmint._output import cannot_write, output_file
from segmint.errors import NotFoundError
from segmint.report import _charts as charts

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from segmint.profiles import Persona
    from segmint.project import Project
    from segmint.segments import SegmentResult

log = logging.getLogger(__name__)

#: Methods whose runs are clusterings (projection, k selection and surrogate rules apply).
CLUSTER_METHODS = frozenset({"kmeans", "ward", "gmm", "dbscan", "hdbscan"})

#: Section id -> title, in the order the report shows them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("quality", "Data quality"),
    ("segments", "Segment sizes and revenue"),
    ("heatmap", "Feature profile per segment"),
    ("personas", "Personas"),
    ("rfm", "RFM grid"),
    ("projection", "Clusters in two dimensions (PCA)"),
    ("kselection", "Choosing the number of clusters"),
    ("rules", "Rules that describe the clusters"),
    ("migration", "Migration between runs"),
    ("campaigns", "Campaign results"),
    ("retention", "Retention cohorts"),
)

PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    path : Path
        The HTML file.
    size_bytes : int
        Its size.
    seconds : float
        Wall time of :func:`build_report`, end to end.
    run_ids : list of str
        The segmentation runs shown, in report order.
    as_of : datetime or None
        The data's as-of date (features count orders and events before it); None when no
        segmentation run was shown.
    sections : list of str
        Ids of the sections that show data (from ``overview``, ``quality``, ``segments``,
        ``heatmap``, ``personas``, ``rfm``, ``projection``, ``kselection``, ``rules``,
        ``migration``); the others show a short note saying why they are empty.
    """

    path: Path
    size_bytes: int
    seconds: float
    run_ids: list[str]
    as_of: datetime | None
    sections: list[str] = field(default_factory=list)


@dataclass
class _Section:
    id: str
    title: str
    note: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class _Figures:
    """Turns figures into HTML fragments (plotly.js not included) with unique div ids."""

    def __init__(self) -> None:
        self.n = 0

    def html(self, fig: go.Figure) -> str:
        self.n += 1
        out: str = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"figure-{self.n}",
            config=PLOTLY_CONFIG,
            default_width="100%",
            default_height=f"{fig.layout.height or 450}px",
        )
        return out


# -- the entry point -------------------------------------------------------------------------


def build_report(
    project: Project,
    out_path: str | os.PathLike[str] | None = None,
    *,
    runs: Sequence[str] | None = None,
    sample: int = 5000,
    callback: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write the project's self-contained HTML report.

    The file holds: overview KPIs, data quality, segment sizes and revenue shares, a
    feature heatmap per segmentation (segment mean / population mean), persona cards, the
    RFM grid, a PCA projection of a sample of each clustering run, its k-selection curves
    and surrogate-tree rules, and a migration Sankey per segmentation that has an earlier
    run. It states the data's as-of date and the run ids shown. Sections without data (no
    RFM run, no clustering, a single run) show a short note instead.

    Parameters
    ----------
    project : segmint.Project
        The project (see :func:`segmint.open_project`).
    out_path : path, optional
        Where to write; default ``<project root>/report.html``. Missing folders are
        created; an existing folder is an error (give a file name).
    runs : sequence of str, optional
        Segmentation names (their latest run) or run ids to show. Default: the latest run
        of every segmentation that has one.
    sample : int, default=5000
        At most this many users (a seeded random sample) are drawn in each projection
        scatter; the other charts are aggregates of every user.
    callback : callable, optional
        Called with a short description of each stage (for a progress display).

    Returns
    -------
    ReportResult
        The path, size, wall time, run ids, as-of date and the sections that show data.

    Raises
    ------
    NotFoundError
        A name or run id in ``runs`` does not exist.
    ConfigError
        ``out_path`` is an existing folder, or cannot be written.
    ValueError
        ``runs`` is a single string, or ``sample`` is below 1.
    """
    t0 = time.perf_counter()
    if isinstance(runs, str):
        raise ValueError(f"runs must be a list of names or run ids, e.g. [{runs!r}]")
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    path = Path(out_path) if out_path is not None else project.root / "report.html"
    # checked (and its folders created) before the work: a folder is not a file name
    path = output_file(path, example="report.html")

    def stage(text: str) -> None:
        log.debug("report: %s (%.2f s)", text, time.perf_counter() - t0)
        if callback is not None:
            callback(text)

    stage("loading runs")
    results = _resolve_runs(project, runs)
    listing = project.segment_runs()
    features: dict[str | None, pd.DataFrame | None] = {}
    for r in results:
        if r.feature_run_id not in features:
            features[r.feature_run_id] = _load_features(project, r.feature_run_id)
    primary = features[results[0].feature_run_id] if results else _load_features(project, None)
    as_of = _as_of(results)

    stage("data quality")
    status = project.status()
    figs = _Figures()
    sections = {sid: _Section(sid, title) for sid, title in SECTIONS}
    sections["overview"].data = _overview(status, primary, results, as_of)
    sections["quality"].data = _quality(status)

    colors = {r.run_id: charts.segment_colors(list(_sizes(r)["segment"])) for r in results}
    stage("personas")
    personas_by_run = {r.run_id: _personas(project, r, features[r.feature_run_id]) for r in results}

    stage("segment charts")
    _segments_section(sections["segments"], results, colors, figs)
    _heatmap_section(sections["heatmap"], results, personas_by_run, figs)
    _personas_section(sections["personas"], results, personas_by_run, colors)
    _rfm_section(sections["rfm"], results, figs)

    stage("clusterings")
    clusterings = [r for r in results if r.method in CLUSTER_METHODS]
    _projection_section(sections["projection"], clusterings, features, colors, figs, sample=sample)
    _kselection_section(sections["kselection"], clusterings, figs)
    _rules_section(sections["rules"], clusterings, colors)

    stage("migrations")
    _migration_section(sections["migration"], project, results, listing, colors, figs)

    stage("campaign results")
    _campaigns_section(sections["campaigns"], project, figs)
    _retention_section(sections["retention"], project, figs)

    stage("writing HTML")
    html = _render(
        project=project,
        sections=[sections[sid] for sid, _ in SECTIONS],
        results=results,
        as_of=as_of,
        n_figures=figs.n,
    )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    seconds = time.perf_counter() - t0
    shown = [sid for sid, _ in SECTIONS if sections[sid].note is None]
    result = ReportResult(
        path=path,
        size_bytes=path.stat().st_size,
        seconds=seconds,
        run_ids=[r.run_id for r in results],
        as_of=as_of,
        sections=shown,
    )
    log.info(
        "report written to %s: %d runs, %d figures, %d bytes in %.1f s",
        path,
        len(results),
        figs.n,
        result.size_bytes,
        seconds,
    )
    return result


# -- gathering -------------------------------------------------------------------------------


def _resolve_runs(project: Project, runs: Sequence[str] | None) -> list[SegmentResult]:
    """The runs to show: the given refs, or the latest run of every segmentation."""
    if runs is None:
        listing = project.segment_runs()
        latest = listing.drop_duplicates("segmentation")
        order = {name: i for i, name in enumerate(project.config.segmentations)}
        latest = latest.assign(
            _order=latest["segmentation"].map(order).fillna(len(order))
        ).sort_values(["_order", "segmentation"], kind="stable")
        refs = [str(x) for x in latest["run_id"]]
    else:
        refs = [str(x) for x in runs]
    out: list[SegmentResult] = []
    seen: set[str] = set()
    for ref in refs:
        run = project.segment_run(ref)
        if run.run_id not in seen:
            seen.add(run.run_id)
            out.append(run)
    return out


def _load_features(project: Project, run_id: str | None) -> pd.DataFrame | None:
    try:
        return project.features(run_id)
    except NotFoundError:
        return None


def _as_of(results: list[SegmentResult]) -> datetime | None:
    stamps = [pd.Timestamp(r.as_of) for r in results if r.as_of is not None]
    if not stamps:
        return None
    latest = max(stamps)
    if latest.tzinfo is None:
        latest = latest.tz_localize(UTC)
    out: datetime = latest.to_pydatetime()
    return out


def _num(frame: pd.DataFrame | None, col: str) -> pd.Series | None:
    if frame is None or col not in frame.columns:
        return None
    return pd.to_numeric(frame[col], errors="coerce").astype("float64")


def _overview(
    status: dict[str, Any],
    features: pd.DataFrame | None,
    results: list[SegmentResult],
    as_of: datetime | None,
) -> dict[str, Any]:
    tables = status.get("tables", {})
    orders_range = (tables.get("orders") or {}).get("date_range") or {}
    kpis: list[dict[str, Any]] = []
    freq, money = _num(features, "frequency"), _num(features, "monetary")
    if features is not None:
        kpis.append({"label": "users", "value": _compact(len(features))})
    else:
        kpis.append({"label": "users", "value": _fmt_int(tables.get("users", {}).get("rows"))})
    if freq is not None:
        n_buyers = int((freq > 0).sum())
        n_orders = float(freq.sum())
        share = n_buyers / len(freq) if len(freq) else 0.0
        kpis.append({"label": "buyers", "value": _compact(n_buyers), "sub": f"{share:.0%}"})
        kpis.append(
            {"label": "completed orders", "value": _compact(n_orders), "sub": "before as-of"}
        )
        if money is not None:
            revenue = float(money.sum())
            kpis.append({"label": "revenue", "value": _fmt_money(revenue)})
            aov = revenue / n_orders if n_orders else float("nan")
            kpis.append({"label": "average order value", "value": _fmt_money(aov, 2)})
    else:
        kpis.append(
            {"label": "orders in store", "value": _fmt_int(tables.get("orders", {}).get("rows"))}
        )
    lo, hi = orders_range.get("min"), orders_range.get("max")
    kpis.append(
        {
            "label": "orders between",
            "value": _day(lo) if lo else "no orders",
            "sub": f"and {_day(hi)}" if hi else "",
            "small": True,
        }
    )
    kpis.append(
        {
            "label": "data as of",
            "value": as_of.strftime("%Y-%m-%d") if as_of else "no run",
            "small": True,
        }
    )
    runs = [
        {
            "run_id": r.run_id,
            "segmentation": r.segmentation,
            "method": r.method,
            "created": pd.Timestamp(r.created_at).strftime("%Y-%m-%d %H:%M UTC"),
            "as_of": _day(r.as_of),
            "n_users": _fmt_int(len(r.assignments)),
            "n_segments": int(r.assignments["segment"].nunique()),
            "feature_run_id": r.feature_run_id or "–",
        }
        for r in results
    ]
    for k in kpis:
        k.setdefault("sub", "")
        k.setdefault("small", False)
    return {"kpis": kpis, "runs": runs}


def _quality(status: dict[str, Any]) -> dict[str, Any]:
    # rows rejected as the quarantine holds them now (a reload replaces its source's rows;
    # summing every load's rejects would count a file reloaded three times three times)
    rejected: dict[str, int] = {}
    for q in status.get("quarantine", []):
        if q.get("kind", "rejected") == "rejected":
            t = str(q.get("target_table"))
            rejected[t] = rejected.get(t, 0) + int(q.get("n") or 0)
    tables = []
    for name, t in status.get("tables", {}).items():
        missing = sorted(
            ((c, v) for c, v in (t.get("missing_pct") or {}).items() if v and v > 0),
            key=lambda cv: -cv[1],
        )
        outliers = [(c, o["n"]) for c, o in (t.get("outliers") or {}).items() if o.get("n")]
        rng = t.get("date_range") or {}
        rows = int(t.get("rows") or 0)
        n_rej = rejected.get(name, 0)
        tables.append(
            {
                "name": name,
                "rows": _fmt_int(rows),
                "rejected": _fmt_int(n_rej),
                "rejected_pct": f"{n_rej / (rows + n_rej):.1%}" if rows + n_rej else "",
                "bad_rejected": n_rej > 0,
                "duplicates": _fmt_int(t.get("duplicate_keys") or 0),
                "bad_duplicates": bool(t.get("duplicate_keys")),
                "missing": [
                    {"column": c, "pct": f"{v:.1f}%", "high": v >= 20} for c, v in missing[:4]
                ],
                "n_more_missing": max(0, len(missing) - 4),
                "outliers": ", ".join(f"{c} {_fmt_int(n)}" for c, n in outliers) or "none",
                "dates": f"{_day(rng.get('min'))} – {_day(rng.get('max'))}"
                if rng.get("min")
                else "–",
            }
        )
    integrity = [
        {
            "child": i["child"],
            "parent": i["parent"],
            "orphans": _fmt_int(i["orphans"]),
            "bad": bool(i["orphans"]),
        }
        for i in status.get("integrity", [])
    ]
    quarantine = [
        {
            "source": q.get("source"),
            "table": q.get("target_table"),
            "rule": str(q.get("rule"))
            + (" (field issue: value set to NULL)" if q.get("kind") == "field_issue" else ""),
            "n": _fmt_int(q.get("n")),
        }
        for q in status.get("quarantine", [])[:12]
    ]
    return {
        "tables": tables,
        "integrity": integrity,
        "quarantine": quarantine,
        "n_orphans": sum(int(i["orphans"]) for i in status.get("integrity", [])),
        "n_rejected": sum(rejected.values()),
    }


def _sizes(run: SegmentResult) -> pd.DataFrame:
    """segment, n_users, user_share, revenue_share; largest first."""
    m = run.metrics
    if m.get("sizes") and m.get("revenue_share"):
        sizes = pd.Series(m["sizes"], dtype="int64")
        revenue = pd.Series(m["revenue_share"], dtype="float64").reindex(sizes.index).fillna(0.0)
    else:
        sizes = run.assignments["segment"].astype(str).value_counts()
        revenue = pd.Series(np.nan, index=sizes.index)
    sizes = sizes.sort_values(ascending=False, kind="stable")
    total = int(sizes.sum()) or 1
    return pd.DataFrame(
        {
            "segment": sizes.index.astype(str),
            "n_users": sizes.to_numpy(),
            "user_share": sizes.to_numpy() / total,
            "revenue_share": revenue.reindex(sizes.index).to_numpy(),
        }
    )


def _personas(project: Project, run: SegmentResult, features: pd.DataFrame | None) -> list[Persona]:
    from segmint.profiles import personas

    if features is None:
        return []
    return personas(project.store, run, features=features)


# -- sections --------------------------------------------------------------------------------


def _run_label(run: SegmentResult) -> str:
    return f"{run.segmentation} ({run.method})"


def _segments_section(
    sec: _Section,
    results: list[SegmentResult],
    colors: dict[str, dict[str, str]],
    figs: _Figures,
) -> None:
    if not results:
        sec.note = "No segmentation run yet: run `segmint segment` to create one."
        return
    blocks = []
    for r in results:
        table = _sizes(r)
        top_value = table.assign(value=table["revenue_share"] / table["user_share"]).nlargest(
            1, "value"
        )
        highlight = ""
        if not top_value.empty and np.isfinite(top_value["value"].iloc[0]):
            row = top_value.iloc[0]
            highlight = (
                f"{row['segment']} is {row['user_share']:.0%} of users and brings "
                f"{row['revenue_share']:.0%} of revenue."
            )
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(charts.sizes_figure(table)),
                "caption": highlight,
            }
        )
    sec.data = {"blocks": blocks}


def _heatmap_section(
    sec: _Section,
    results: list[SegmentResult],
    personas_by_run: dict[str, list[Persona]],
    figs: _Figures,
) -> None:
    blocks = []
    for r in results:
        ps = personas_by_run.get(r.run_id) or []
        if not ps:
            continue
        segs = [p.segment for p in ps]
        ratio = pd.DataFrame([p.features["ratio"] for p in ps], index=segs)
        mean = pd.DataFrame([p.features["mean"] for p in ps], index=segs)
        std = pd.DataFrame([p.features["std_diff"] for p in ps], index=segs)
        pop = ps[0].features["population_mean"]
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(
                    charts.heatmap_figure(
                        ratio, segment_mean=mean, population_mean=pop, std_diff=std
                    )
                ),
            }
        )
    if not blocks:
        sec.note = "No segmentation run with features to profile."
    sec.data = {"blocks": blocks}


def _personas_section(
    sec: _Section,
    results: list[SegmentResult],
    personas_by_run: dict[str, list[Persona]],
    colors: dict[str, dict[str, str]],
) -> None:
    groups: list[dict[str, Any]] = []
    first_open = next((r.run_id for r in results if r.method in CLUSTER_METHODS), None)
    for r in results:
        ps = personas_by_run.get(r.run_id) or []
        if not ps:
            continue
        cards = []
        for p in ps:
            dist = p.distinguishing
            strongest = float(dist["std_diff"].abs().max()) if len(dist) else 1.0
            traits = [
                {
                    "label": str(row["label"]),
                    "feature": str(feature),
                    "std_diff": f"{row['std_diff']:+.2f}",
                    "up": bool(row["std_diff"] > 0),
                    "width": round(
                        100 * min(1.0, abs(float(row["std_diff"])) / max(strongest, 1e-9)), 1
                    ),
                }
                for feature, row in dist.iterrows()
            ]
            cats = [
                {
                    "category": str(c["category"]),
                    "share": f"{c['share']:.0%}",
                    "index": f"{c['index']:.2f}",
                    "over": bool(c["index"] >= 1.1),
                    "under": bool(c["index"] <= 0.9),
                }
                for _, c in p.top_categories.head(5).iterrows()
            ]
            cards.append(
                {
                    "segment": p.segment,
                    "color": colors.get(r.run_id, {}).get(p.segment, "#9aa5b1"),
                    "n_users": _fmt_int(p.n_users),
                    "user_share": f"{p.user_share:.1%}",
                    "revenue_share": f"{p.revenue_share:.1%}",
                    "summary": p.summary,
                    "traits": traits,
                    "categories": cats,
                }
            )
        groups.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "cards": cards,
                "open": r.run_id == first_open or (first_open is None and not groups),
            }
        )
    if not groups:
        sec.note = "No segmentation run with features to describe."
    sec.data = {"groups": groups}


def _rfm_section(sec: _Section, results: list[SegmentResult], figs: _Figures) -> None:
    from segmint.segments import RFM_GRID

    run = next((r for r in results if r.method == "rfm"), None)
    if run is None:
        sec.note = (
            "No RFM run shown: add `rfm: {type: rfm}` under `segmentations:` and run "
            "`segmint segment rfm`."
        )
        return
    detail = run.assignments["detail"]
    codes = detail[detail.notna()].astype(str).value_counts()
    valid = codes[codes.index.str.fullmatch(r"[1-5]{3}")]
    digits = valid.index.str
    r_score = digits[0].astype(int)
    fm_score = (digits[1].astype(int) + digits[2].astype(int) + 1) // 2
    grid = (
        pd.DataFrame({"r": r_score, "fm": fm_score, "n": valid.to_numpy()})
        .pivot_table(index="r", columns="fm", values="n", aggfunc="sum", fill_value=0)
        .reindex(index=[5, 4, 3, 2, 1], columns=[1, 2, 3, 4, 5], fill_value=0)
    )
    names = pd.DataFrame(
        [[RFM_GRID[r][fm - 1] for fm in range(1, 6)] for r in grid.index],
        index=grid.index,
        columns=grid.columns,
    )
    n_scored = int(valid.sum())
    sec.data = {
        "run_id": run.run_id,
        "title": _run_label(run),
        "figure": figs.html(charts.rfm_grid_figure(grid, names)),
        "n_scored": _fmt_int(n_scored),
        "n_unscored": _fmt_int(len(detail) - n_scored),
    }


def _scaled(frame: pd.DataFrame, run: SegmentResult, columns: list[str]) -> np.ndarray:
    """The run's features scaled the way the run scaled them (or standardized log1p)."""
    x = frame[columns].to_numpy(dtype="float64", na_value=np.nan)
    steps = run.details.get("scaling")
    if isinstance(steps, list) and all(isinstance(s, dict) and "feature" in s for s in steps):
        by_name = {str(s["feature"]): s for s in steps}  # match by name when recorded
        steps = [by_name[c] for c in columns] if set(columns) <= set(by_name) else None
    if isinstance(steps, list) and len(steps) == len(columns):
        median = np.array([float(s.get("median", 0.0)) for s in steps])
        is_log = np.array([bool(s.get("log1p")) for s in steps])
        center = np.array([float(s.get("center", 0.0)) for s in steps])
        scale = np.array([float(s.get("scale") or 1.0) for s in steps])
    else:  # no record: median-impute, log1p everything non-negative, standardize
        median = np.nanmedian(x, axis=0)
        is_log = np.nanmin(x, axis=0) >= 0
        center = scale = np.array([])
    x = np.where(np.isnan(x), median, x)
    x[:, is_log] = np.sign(x[:, is_log]) * np.log1p(np.abs(x[:, is_log]))
    if not len(center):
        center, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    out: np.ndarray = (x - center) / scale
    return out


def _projection_section(
    sec: _Section,
    clusterings: list[SegmentResult],
    features: dict[str | None, pd.DataFrame | None],
    colors: dict[str, dict[str, str]],
    figs: _Figures,
    *,
    sample: int,
) -> None:
    from sklearn.decomposition import PCA

    blocks = []
    for r in clusterings:
        feats = features.get(r.feature_run_id)
        columns = [str(c) for c in r.params.get("features") or []]
        if feats is None or len(columns) < 2:
            continue
        a = r.assignments[["user_id", "segment"]]
        by_user = feats.set_index("user_id")
        everyone = by_user.reindex(a["user_id"])
        n = len(a)
        take = min(sample, n)
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(n, size=take, replace=False))
        x_all = _scaled(everyone, r, columns)
        pca = PCA(n_components=2, random_state=0).fit(x_all[idx])
        proj_all = pca.transform(x_all)
        points = pd.DataFrame(
            {
                "pc1": proj_all[idx, 0],
                "pc2": proj_all[idx, 1],
                "segment": a["segment"].astype(str).to_numpy()[idx],
            }
        )
        lo = np.percentile(proj_all, 0.5, axis=0)
        hi = np.percentile(proj_all, 99.5, axis=0)
        density = None
        if n > take:
            counts, xe, ye = np.histogram2d(
                proj_all[:, 0],
                proj_all[:, 1],
                bins=60,
                range=[[lo[0], hi[0]], [lo[1], hi[1]]],
            )
            density = (counts, xe, ye)
        axes = []
        for component in pca.components_[:2]:
            top = np.argsort(-np.abs(component))[:3]
            axes.append(", ".join(f"{columns[j]} {component[j]:+.2f}" for j in top))
        fig = charts.projection_figure(
            points,
            colors=colors.get(r.run_id, {}),
            explained=pca.explained_variance_ratio_.tolist(),
            density=density,
        )
        fig.update_xaxes(range=[lo[0], hi[0]])
        fig.update_yaxes(range=[lo[1], hi[1]])
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(fig),
                "n_sample": _fmt_int(take),
                "n_users": _fmt_int(n),
                "sampled": n > take,
                "pc1": axes[0],
                "pc2": axes[1],
                "explained": f"{pca.explained_variance_ratio_.sum():.0%}",
            }
        )
    if not blocks:
        sec.note = _no_clustering_note()
    sec.data = {"blocks": blocks}


def _no_clustering_note() -> str:
    return (
        "No clustering run shown: add a segmentation with `type: kmeans` (and its "
        "`features`) to segmint.yaml and run `segmint segment`."
    )


def _kselection_section(sec: _Section, clusterings: list[SegmentResult], figs: _Figures) -> None:
    blocks = []
    for r in clusterings:
        scores = r.details.get("k_scores")
        if not scores:
            continue
        table = pd.DataFrame(scores).sort_values("k")
        chosen_k = r.details.get("n_clusters")
        if "chosen" in table:
            picked = table.loc[table["chosen"].astype(bool), "k"].tolist()
            chosen_k = picked[0] if picked else chosen_k
        elbow = r.details.get("elbow_k")
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(
                    charts.k_selection_figure(
                        table,
                        chosen_k=None if chosen_k is None else int(chosen_k),
                        elbow_k=None if elbow is None else int(elbow),
                    )
                ),
                "decision": r.details.get("decision") or "",
            }
        )
    if not blocks:
        sec.note = (
            _no_clustering_note()
            if not clusterings
            else "The clustering runs shown used a fixed k or a density method: no k scan."
        )
    sec.data = {"blocks": blocks}


def _rules_section(
    sec: _Section, clusterings: list[SegmentResult], colors: dict[str, dict[str, str]]
) -> None:
    blocks = []
    for r in clusterings:
        table = r.details.get("rule_table")
        if not table:
            continue
        frame = pd.DataFrame(table)
        order = {s: i for i, s in enumerate(colors.get(r.run_id, {}))}
        frame = frame.assign(_o=frame["segment"].map(order).fillna(len(order))).sort_values(
            ["_o", "n_users"], ascending=[True, False], kind="stable"
        )
        rows = [
            {
                "segment": str(row["segment"]),
                "color": colors.get(r.run_id, {}).get(str(row["segment"]), "#9aa5b1"),
                "rule": str(row["rule"]),
                "n_users": _fmt_int(row["n_users"]),
                "precision": f"{row['precision']:.0%}",
                "recall": f"{row['recall']:.0%}",
            }
            for _, row in frame.iterrows()
        ]
        fidelity = r.details.get("fidelity")
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "rows": rows,
                "fidelity": f"{float(fidelity):.1f}%" if fidelity is not None else "n/a",
            }
        )
    if not blocks:
        sec.note = _no_clustering_note() if not clusterings else "No surrogate-tree rules stored."
    sec.data = {"blocks": blocks}


def _migration_section(
    sec: _Section,
    project: Project,
    results: list[SegmentResult],
    listing: pd.DataFrame,
    colors: dict[str, dict[str, str]],
    figs: _Figures,
) -> None:
    blocks, single = [], []
    for r in results:
        same = listing[listing["segmentation"] == r.segmentation]
        created = pd.Timestamp(r.created_at)
        earlier = same[
            (same["created_at"] < created)
            | ((same["created_at"] == created) & (same["run_id"] < r.run_id))
        ]
        if earlier.empty:
            single.append(r.segmentation)
            continue
        prev = str(earlier["run_id"].iloc[0])
        prev_as_of = _day(earlier["as_of"].iloc[0])
        matrix = project.segments_diff(prev, r.run_id)
        rank = {s: i for i, s in enumerate(colors.get(r.run_id, {}))}

        def by_size(labels: pd.Index, rank: dict[str, int] = rank) -> pd.Index:
            return pd.Index([rank.get(str(s), len(rank)) for s in labels])

        matrix = matrix.sort_index(axis=0, key=by_size, kind="stable").sort_index(
            axis=1, key=by_size, kind="stable"
        )
        total = int(matrix.to_numpy().sum())
        common = [s for s in matrix.index if s in matrix.columns and s != "(absent)"]
        stayed = int(np.trace(matrix.loc[common, common].to_numpy())) if common else 0
        cols = dict(colors.get(r.run_id, {}))
        blocks.append(
            {
                "title": _run_label(r),
                "from_run": prev,
                "to_run": r.run_id,
                "from_as_of": prev_as_of,
                "to_as_of": _day(r.as_of),
                "figure": figs.html(
                    charts.sankey_figure(
                        matrix, colors=cols, from_label=f"run {prev}", to_label=f"run {r.run_id}"
                    )
                ),
                "stayed": f"{stayed / total:.1%}" if total else "n/a",
                "moved": _fmt_int(total - stayed),
            }
        )
    if not blocks:
        sec.note = (
            "Only one run of each segmentation shown, so there is nothing to compare yet: "
            "run `segmint segment` again after new data arrives to see who moved where."
            if results
            else "No segmentation run yet."
        )
    sec.data = {"blocks": blocks, "single": single}


def _ci_text(lo: Any, hi: Any, fmt: str) -> str:
    if lo is None or hi is None:
        return "n/a"
    return f"[{format(lo, fmt)}, {format(hi, fmt)}]"


def _campaigns_section(sec: _Section, project: Project, figs: _Figures) -> None:
    """Latest stored evaluation of every campaign: lift forest plots, tables, Qini."""
    from segmint.experiments._evaluate import latest_evaluations

    evals = latest_evaluations(project.store)
    if not evals:
        sec.note = (
            "No campaign evaluated yet: `segmint evaluate CAMPAIGN` measures a campaign "
            "against its holdout and stores the result shown here."
        )
        return

    def label(e: dict[str, Any]) -> str:
        return e["campaign"] + ("" if e["complete"] else " (interim)")

    def effect(e: dict[str, Any], metric: str, method: str) -> dict[str, Any] | None:
        for r in e["effects"]:
            if r["metric"] == metric and r["method"] == method:
                return dict(r)
        return None

    conv_rows, rev_rows = [], []
    for e in evals:
        if not e["observed_days"]:
            continue  # nothing after the send yet: no effect to draw
        c, r = effect(e, "conversion", "newcombe"), effect(e, "revenue_per_user", "welch")
        if c and c["diff_lo"] is not None:
            conv_rows.append(
                {"label": label(e), "diff": c["diff"], "lo": c["diff_lo"], "hi": c["diff_hi"],
                 "p": c["p_value"]}
            )  # fmt: skip
        if r and r["diff_lo"] is not None:
            rev_rows.append(
                {"label": label(e), "diff": r["diff"], "lo": r["diff_lo"], "hi": r["diff_hi"],
                 "p": r["p_value"]}
            )  # fmt: skip
    overview = []
    if conv_rows:
        overview.append(
            figs.html(
                charts.lift_forest_figure(
                    pd.DataFrame(conv_rows), percent=True, title="conversion lift (95% CI)"
                )
            )
        )
    if rev_rows:
        overview.append(
            figs.html(
                charts.lift_forest_figure(
                    pd.DataFrame(rev_rows), percent=False,
                    title="revenue per user lift (Welch 95% CI)",
                )
            )
        )  # fmt: skip
    blocks = []
    for e in evals:
        pct = {"conversion", "visit_rate"}
        effects = []
        waiting = not e["observed_days"]
        for r in e["effects"]:
            if waiting and not r["metric"].endswith("(balance)"):
                continue
            fmt = "+.2%" if r["metric"] in pct else "+,.2f"
            effects.append(
                {
                    "metric": r["metric"],
                    "method": r["method"],
                    "treatment": "n/a" if r["treatment"] is None else format(
                        r["treatment"], ".2%" if r["metric"] in pct else ",.2f"
                    ),
                    "control": "n/a" if r["control"] is None else format(
                        r["control"], ".2%" if r["metric"] in pct else ",.2f"
                    ),
                    "diff": "n/a" if r["diff"] is None else format(r["diff"], fmt),
                    "ci": _ci_text(r["diff_lo"], r["diff_hi"], fmt),
                    "p": "n/a" if r["p_value"] is None else f"{r['p_value']:.3g}",
                }
            )  # fmt: skip
        roi = [] if waiting else [
            {"item": r["item"].replace("_", " "),
             "value": "n/a" if r["value"] is None else
             format(r["value"], ".1%" if r["item"] == "roi" else ",.2f"),
             "ci": _ci_text(r["lo"], r["hi"], ".1%" if r["item"] == "roi" else ",.2f")}
            for r in e["roi"]
        ]  # fmt: skip
        seg_fig = None
        seg_rows = [
            {"label": r["segment"], "diff": r["lift"], "lo": r["lift_lo"], "hi": r["lift_hi"],
             "p": r["p_bh"]}
            for r in e["segments"] if r["lift_lo"] is not None
        ]  # fmt: skip
        if seg_rows and not waiting:
            seg_fig = figs.html(
                charts.lift_forest_figure(
                    pd.DataFrame(seg_rows), percent=True,
                    title=f"conversion lift by {e['segmentation']} segment (hover: BH p)",
                )
            )  # fmt: skip
        qini_fig, qini_coef = None, None
        if e.get("uplift"):
            qini_fig = figs.html(charts.qini_figure(pd.DataFrame(e["uplift"]["qini"])))
            qini_coef = f"{e['uplift']['qini_coefficient']:.3f}"
        srm = e["srm"]
        blocks.append(
            {
                "campaign": e["campaign"],
                "window": e["window_days"],
                "start": _day(e["start"]),
                "complete": e["complete"],
                "warnings": e["warnings"],
                "effects": effects,
                "roi": roi,
                "srm": f"chi2 = {srm['chi2']:.3f}, p = {srm['p']:.3g}"
                if srm["chi2"] is not None
                else "n/a",
                "srm_flagged": bool(srm["flagged"]),
                "cuped": "n/a"
                if e["cuped"]["variance_reduction"] is None
                else f"{e['cuped']['variance_reduction']:.1%}",
                "segment_figure": seg_fig,
                "qini_figure": qini_fig,
                "qini": qini_coef,
                "evaluated": _day(e["created_at"]),
            }
        )
    sec.data = {"overview": overview, "blocks": blocks}


def _retention_section(sec: _Section, project: Project, figs: _Figures) -> None:
    from segmint.experiments._retention import repeat_purchase_rate, retention_matrix

    result = retention_matrix(project.store, cohort_by="first_purchase", max_months=12)
    wide = result.wide()
    if wide.empty:
        sec.note = "No completed orders yet: retention needs first purchases."
        return
    wide = wide.tail(24)
    rep = repeat_purchase_rate(project.store)
    row = rep.iloc[0] if not rep.empty else None
    sec.data = {
        "figure": figs.html(charts.retention_heatmap_figure(wide)),
        "repeat": None
        if row is None
        else f"{row['rate']:.1%} of {int(row['buyers']):,} buyers "
        f"(95% CI {row['ci_lo']:.1%} to {row['ci_hi']:.1%})",
    }


# -- rendering -------------------------------------------------------------------------------


def _render(
    *,
    project: Project,
    sections: list[_Section],
    results: list[SegmentResult],
    as_of: datetime | None,
    n_figures: int,
) -> str:
    import jinja2
    from plotly.offline import get_plotlyjs

    import segmint

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("segmint.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ticks"] = _ticks
    template = env.get_template("report.html.j2")
    return template.render(
        title=f"segmint report — {project.root.name}",
        project_name=project.root.name,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        as_of=as_of.strftime("%Y-%m-%d") if as_of else None,
        run_ids=[r.run_id for r in results],
        sections=sections,
        n_figures=n_figures,
        version=segmint.__version__,
        plotly_js=get_plotlyjs() if n_figures else "",
    )


# -- formatting ------------------------------------------------------------------------------


def _ticks(text: str) -> Any:
    """Escape ``text`` and show its `backticked` spans as code."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{int(round(float(value))):,}"


def _fmt_money(value: float, digits: int = 0) -> str:
    if not np.isfinite(value):
        return "–"
    if digits == 0:
        return _compact(value)
    return f"{value:,.{digits}f}"


def _compact(value: float) -> str:
    """Full digits below ten million, else 18.6 M / 1.81 B (fits a KPI tile)."""
    if abs(value) >= 1e9:
        return f"{value / 1e9:,.2f} B"
    if abs(value) >= 1e7:
        return f"{value / 1e6:,.1f} M"
    return f"{value:,.0f}"


def _day(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return str(value)[:10]
