"""Build the self-contained HTML report: gather, aggregate, chart, render one file.

The report reads the project through its public methods (status, segment runs, features,
migrations) and the personas of :mod:`segmint.profiles`; everything drawn is aggregated
first (segment x feature tables, a 5 x 5 RFM grid, a migration matrix, a 2-D histogram)
except the projection scatter, which shows a random sample of at most ``sample`` users.
plotly.js is embedded once from the installed ``plotly`` package, gzip-compressed and
base64-encoded (a third of its size); the page unpacks it with the browser's
``DecompressionStream`` before drawing, so the file opens offline: no CDN, no fonts, no
network. Text follows ``locale:`` (:mod:`segmint._i18n`), money ``currency:``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
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

from segmint._i18n import Language, language
from segmint._output import cannot_write, output_file
from segmint.errors import NotFoundError
from segmint.experiments import POOLED
from segmint.report import _charts as charts
from segmint.report._value import value_section

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from segmint.profiles import Persona
    from segmint.project import Project
    from segmint.segments import SegmentResult

log = logging.getLogger(__name__)

#: Methods whose runs are clusterings (projection, k selection and surrogate rules apply).
CLUSTER_METHODS = frozenset({"kmeans", "ward", "gmm", "dbscan", "hdbscan"})

#: Section id -> title (English; translated when rendered), in the order the report shows
#: them: what a marketer reads first, then the appendix (APPENDIX) on data and method.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("segments", "Segment sizes and revenue"),
    ("personas", "Personas"),
    ("value", "Customer value"),
    ("heatmap", "Feature profile per segment"),
    ("rfm", "RFM grid"),
    ("campaigns", "Campaign results"),
    ("retention", "Retention cohorts"),
    ("migration", "Migration between runs"),
    ("quality", "Data quality"),
    ("projection", "Clusters in two dimensions (PCA)"),
    ("kselection", "Choosing the number of clusters"),
    ("rules", "Rules that describe the clusters"),
)
#: Sections shown under the "Appendix" heading (data quality and how the clusters were made).
APPENDIX = frozenset({"quality", "projection", "kselection", "rules"})
#: Sections left out altogether (not even a note) when there is nothing to show: customer
#: value needs a prediction run (`segmint predict clv` or `segmint predict churn`).
OPTIONAL = frozenset({"value"})

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
        Ids of the sections that show data, in report order (see ``SECTIONS``); the others
        show a short note saying why they are empty, except the optional ones
        (``OPTIONAL``: customer value, without a prediction run), which are left out.
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
    appendix: bool = False


class _Figures:
    """Turns figures into HTML fragments: a div and the figure's JSON, drawn by the page.

    The JSON sits in ``<script type="application/json" class="segmint-figure">`` next to
    its div; the template's loader unpacks plotly.js, then draws each one (with the
    figure's phone overrides on a narrow screen).
    """

    def __init__(self) -> None:
        self.n = 0

    def html(self, fig: go.Figure) -> str:
        from markupsafe import escape

        self.n += 1
        div_id = f"figure-{self.n}"
        spec = json.loads(fig.to_json())
        spec["config"] = PLOTLY_CONFIG
        # "</" cannot end the script element early; JSON reads "<\/" as "</"
        payload = json.dumps(spec, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
        height = int(fig.layout.height or 450)
        return (
            f'<div id="{escape(div_id)}" class="plotly-graph-div" '
            f'style="height:{height}px; width:100%;"></div>'
            f'<script type="application/json" class="segmint-figure" data-div="{div_id}">'
            f"{payload}</script>"
        )


@dataclass(frozen=True)
class _Text:
    """The report's language and currency: every number and label goes through it."""

    lang: Language
    currency: str
    timezone: str = "UTC"

    def t(self, text: str, /, **values: Any) -> str:
        return self.lang.t(text, **values)

    def n(self, singular: str, plural: str, count: int, /, **values: Any) -> str:
        return self.lang.n(singular, plural, count, **values)

    def segment(self, name: Any) -> str:
        """A segment's name as people read it (RFM, lifecycle and tier names, cluster
        name words) in the report's language; the data keeps the stored name."""
        from segmint._labels import segment_label

        return segment_label(str(name), self.lang)

    def whole(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "–"
        return self.lang.integer(int(round(float(value))))

    def pct(self, value: Any, digits: int = 1) -> str:
        if value is None or not np.isfinite(float(value)):
            return "–"
        return self.lang.percent(float(value), digits)

    def money(self, value: Any, *, whole: bool | None = None) -> str:
        if value is None or not np.isfinite(float(value)):
            return "–"
        return self.lang.money(float(value), self.currency, whole=whole)

    def signed_money(self, value: Any) -> str:
        if value is None or not np.isfinite(float(value)):
            return "–"
        return ("+" if float(value) > 0 else "") + self.money(value, whole=False)

    def compact(self, value: float) -> str:
        """Full digits below ten million, else in millions / billions (fits a KPI tile)."""
        from babel.numbers import format_compact_decimal

        if abs(value) >= 1e7:
            return str(format_compact_decimal(value, locale=self.lang._babel, fraction_digits=2))
        return self.whole(value)

    def compact_money(self, value: float) -> str:
        """Money with its currency, compact at ten million and above."""
        from babel.numbers import format_compact_currency

        if not np.isfinite(value):
            return "–"
        if abs(value) >= 1e7:
            return str(
                format_compact_currency(
                    value, self.currency, locale=self.lang._babel, fraction_digits=2
                )
            )
        return self.money(value, whole=True)

    def day(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "–"
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            return str(value)[:10]
        if pd.isna(stamp):
            return "–"
        return self.lang.date(stamp.date())

    def stamp(self, value: datetime) -> str:
        """A moment in the project's time zone, with the zone's short name (CET, UTC)."""
        from zoneinfo import ZoneInfo

        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        local = value.astimezone(ZoneInfo(self.timezone))
        return f"{self.lang.date(local)} {local.tzname() or self.timezone}"


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
    run; with a prediction run, customer value (parameters with intervals, the holdout
    chart at ``#holdout-chart``, CLV by segment, churn AUC and calibration). It states the
    data's as-of date and the run ids shown. Sections without data (no RFM run, no
    clustering, a single run) show a short note instead.

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
    path = _checked_arguments(project, out_path, runs, sample)

    def stage(text: str) -> None:
        log.debug("report: %s (%.2f s)", text, time.perf_counter() - t0)
        if callback is not None:
            callback(text)

    tx = _Text(language(project.config.locale), project.config.currency, project.config.timezone)
    stage("loading runs")
    results = _resolve_runs(project, runs)
    listing = project.segment_runs()
    features = _features_by_run(project, results)
    as_of = _as_of(results)
    figs = _Figures()
    sections = _fill_sections(
        project, results, features, listing, as_of, figs, tx, sample=sample, stage=stage
    )

    stage("writing HTML")
    html = _render(
        project=project,
        sections=[sections[sid] for sid, _ in SECTIONS if sid in sections],
        results=results,
        as_of=as_of,
        n_figures=figs.n,
        tx=tx,
    )
    _write_html(path, html)
    return _written(path, t0, results, as_of, sections, n_figures=figs.n)


def _checked_arguments(
    project: Project,
    out_path: str | os.PathLike[str] | None,
    runs: Sequence[str] | None,
    sample: int,
) -> Path:
    """Check :func:`build_report`'s arguments; the output file (its folders created)."""
    if isinstance(runs, str):
        raise ValueError(f"runs must be a list of names or run ids, e.g. [{runs!r}]")
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    path = Path(out_path) if out_path is not None else project.root / "report.html"
    # checked (and its folders created) before the work: a folder is not a file name
    return output_file(path, example="report.html")


def _fill_sections(
    project: Project,
    results: list[SegmentResult],
    features: dict[str | None, pd.DataFrame | None],
    listing: pd.DataFrame,
    as_of: datetime | None,
    figs: _Figures,
    tx: _Text,
    *,
    sample: int,
    stage: Callable[[str], None],
) -> dict[str, _Section]:
    """Every section by id, filled (data, or a note saying why it is empty); figures are
    made in the order the stages run."""
    primary = features[results[0].feature_run_id] if results else _load_features(project, None)

    stage("data quality")
    status = project.status()
    sections = {
        sid: _Section(sid, tx.t(title), appendix=sid in APPENDIX) for sid, title in SECTIONS
    }
    sections["overview"].data = _overview(status, primary, results, as_of, tx)
    sections["quality"].data = _quality(status, tx)

    colors = {r.run_id: charts.segment_colors(list(_sizes(r)["segment"])) for r in results}
    stage("personas")
    personas_by_run = {r.run_id: _personas(project, r, features[r.feature_run_id]) for r in results}

    stage("segment charts")
    _segments_section(sections["segments"], results, colors, figs, tx)
    _heatmap_section(sections["heatmap"], results, personas_by_run, figs, tx)
    _personas_section(sections["personas"], results, personas_by_run, colors, tx)
    stage("customer value")
    value = value_section(project, results, personas_by_run, colors, figs, tx)
    if value is None:
        del sections["value"]  # no prediction run: no section (see OPTIONAL)
    else:
        sections["value"].data = value
    _rfm_section(sections["rfm"], results, figs, tx)

    stage("clusterings")
    clusterings = [r for r in results if r.method in CLUSTER_METHODS]
    _projection_section(
        sections["projection"], clusterings, features, colors, figs, tx, sample=sample
    )
    _kselection_section(sections["kselection"], clusterings, figs, tx)
    _rules_section(sections["rules"], clusterings, colors, tx)

    stage("migrations")
    _migration_section(sections["migration"], project, results, listing, colors, figs, tx)

    stage("campaign results")
    _campaigns_section(sections["campaigns"], project, figs, tx)
    _retention_section(sections["retention"], project, figs, tx)
    return sections


def _written(
    path: Path,
    t0: float,
    results: list[SegmentResult],
    as_of: datetime | None,
    sections: dict[str, _Section],
    *,
    n_figures: int,
) -> ReportResult:
    """What was written (wall time since ``t0``), logged."""
    seconds = time.perf_counter() - t0
    shown = [sid for sid, _ in SECTIONS if sid in sections and sections[sid].note is None]
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
        n_figures,
        result.size_bytes,
        seconds,
    )
    return result


def _write_html(path: Path, html: str) -> None:
    """Write ``html`` to ``path`` through a temporary file, so a reader never sees half."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None


# -- gathering -------------------------------------------------------------------------------


def _features_by_run(
    project: Project, results: list[SegmentResult]
) -> dict[str | None, pd.DataFrame | None]:
    """Each shown run's feature table, loaded once per feature run."""
    features: dict[str | None, pd.DataFrame | None] = {}
    for r in results:
        if r.feature_run_id not in features:
            features[r.feature_run_id] = _load_features(project, r.feature_run_id)
    return features


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
    tx: _Text,
) -> dict[str, Any]:
    tables = status.get("tables", {})
    orders_range = (tables.get("orders") or {}).get("date_range") or {}
    kpis: list[dict[str, Any]] = []
    freq, money = _num(features, "frequency"), _num(features, "monetary")
    if features is not None:
        kpis.append({"id": "users", "label": tx.t("users"), "value": tx.compact(len(features))})
    else:
        n_users = tables.get("users", {}).get("rows")
        kpis.append({"id": "users", "label": tx.t("users"), "value": tx.whole(n_users)})
    if freq is not None:
        n_buyers = int((freq > 0).sum())
        n_orders = float(freq.sum())
        share = n_buyers / len(freq) if len(freq) else 0.0
        kpis.append(
            {"id": "buyers", "label": tx.t("buyers"), "value": tx.compact(n_buyers),
             "sub": tx.pct(share, 0)}
        )  # fmt: skip
        kpis.append(
            {"id": "orders", "label": tx.t("completed orders"), "value": tx.compact(n_orders),
             "sub": tx.t("before as-of")}
        )  # fmt: skip
        if money is not None:
            revenue = float(money.sum())
            kpis.append(
                {"id": "revenue", "label": tx.t("revenue"), "value": tx.compact_money(revenue),
                 "money": True}
            )  # fmt: skip
            aov = revenue / n_orders if n_orders else float("nan")
            kpis.append(
                {"id": "aov", "label": tx.t("average order value"),
                 "value": tx.money(aov, whole=False), "money": True}
            )  # fmt: skip
    else:
        n_orders_stored = tables.get("orders", {}).get("rows")
        kpis.append(
            {"id": "orders", "label": tx.t("orders in store"), "value": tx.whole(n_orders_stored)}
        )
    lo, hi = orders_range.get("min"), orders_range.get("max")
    kpis.append(
        {
            "id": "orders_between",
            "label": tx.t("orders between"),
            "value": tx.day(lo) if lo else tx.t("no orders"),
            "sub": tx.t("and {date}", date=tx.day(hi)) if hi else "",
            "small": True,
        }
    )
    kpis.append(
        {
            "id": "as_of",
            "label": tx.t("data as of"),
            "value": tx.day(as_of) if as_of else tx.t("no run"),
            "small": True,
        }
    )
    runs = [
        {
            "run_id": r.run_id,
            "segmentation": r.segmentation,
            "method": r.method,
            "created": tx.stamp(pd.Timestamp(r.created_at).to_pydatetime()),
            "as_of": tx.day(r.as_of),
            "n_users": tx.whole(len(r.assignments)),
            "n_segments": int(r.assignments["segment"].nunique()),
            "feature_run_id": r.feature_run_id or "–",
        }
        for r in results
    ]
    for k in kpis:
        k.setdefault("sub", "")
        k.setdefault("small", False)
        k.setdefault("money", False)
    return {"kpis": kpis, "runs": runs}


def _quality(status: dict[str, Any], tx: _Text) -> dict[str, Any]:
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
                "rows": tx.whole(rows),
                "rejected": tx.whole(n_rej),
                "rejected_pct": tx.pct(n_rej / (rows + n_rej)) if rows + n_rej else "",
                "bad_rejected": n_rej > 0,
                "duplicates": tx.whole(t.get("duplicate_keys") or 0),
                "bad_duplicates": bool(t.get("duplicate_keys")),
                "missing": [
                    {"column": c, "pct": tx.pct(v / 100), "high": v >= 20} for c, v in missing[:4]
                ],
                "n_more_missing": max(0, len(missing) - 4),
                "outliers": ", ".join(f"{c} {tx.whole(n)}" for c, n in outliers) or tx.t("none"),
                "dates": f"{tx.day(rng.get('min'))} – {tx.day(rng.get('max'))}"
                if rng.get("min")
                else "–",
            }
        )
    integrity = [
        {
            "child": i["child"],
            "parent": i["parent"],
            "orphans": tx.whole(i["orphans"]),
            "bad": bool(i["orphans"]),
        }
        for i in status.get("integrity", [])
    ]
    quarantine = [
        {
            "source": q.get("source"),
            "table": q.get("target_table"),
            "rule": str(q.get("rule"))
            + (
                " (" + tx.t("field issue: value set to NULL or kept as stored") + ")"
                if q.get("kind") == "field_issue"
                else ""
            ),
            "n": tx.whole(q.get("n")),
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
    return personas(
        project.store,
        run,
        features=features,
        locale=project.config.locale,
        currency=project.config.currency,
    )


# -- sections --------------------------------------------------------------------------------


def _run_label(run: SegmentResult) -> str:
    return f"{run.segmentation} ({run.method})"


#: Built-in features that are amounts of money (shown with the currency).
def _money_features() -> frozenset[str]:
    from segmint.features import CATALOG

    return frozenset(name for name, spec in CATALOG.items() if spec.unit == "currency")


def _segments_section(
    sec: _Section,
    results: list[SegmentResult],
    colors: dict[str, dict[str, str]],
    figs: _Figures,
    tx: _Text,
) -> None:
    if not results:
        sec.note = tx.t("No segmentation run yet: run `segmint segment` to create one.")
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
            highlight = tx.t(
                "{segment} is {users} of users and brings {revenue} of revenue.",
                segment=tx.segment(row["segment"]),
                users=tx.pct(row["user_share"], 0),
                revenue=tx.pct(row["revenue_share"], 0),
            )
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(
                    charts.sizes_figure(
                        table.assign(segment=table["segment"].map(tx.segment)), lang=tx.lang
                    )
                ),
                "caption": highlight,
            }
        )
    sec.data = {"blocks": blocks}


def _heatmap_section(
    sec: _Section,
    results: list[SegmentResult],
    personas_by_run: dict[str, list[Persona]],
    figs: _Figures,
    tx: _Text,
) -> None:
    blocks = []
    money_features = _money_features()
    for r in results:
        ps = personas_by_run.get(r.run_id) or []
        if not ps:
            continue
        segs = [tx.segment(p.segment) for p in ps]
        ratio = pd.DataFrame([p.features["ratio"] for p in ps], index=segs)
        mean = pd.DataFrame([p.features["mean"] for p in ps], index=segs)
        std = pd.DataFrame([p.features["std_diff"] for p in ps], index=segs)
        pop = ps[0].features["population_mean"]
        words = (
            ps[0].features["label"].astype(str).to_dict()
            if "label" in ps[0].features.columns
            else {}
        )
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(
                    charts.heatmap_figure(
                        ratio,
                        segment_mean=mean,
                        population_mean=pop,
                        std_diff=std,
                        labels={str(k): str(v) for k, v in words.items()},
                        money_features=money_features,
                        currency=tx.currency,
                        lang=tx.lang,
                    )
                ),
            }
        )
    if not blocks:
        sec.note = tx.t("No segmentation run with features to profile.")
    sec.data = {"blocks": blocks}


def _personas_section(
    sec: _Section,
    results: list[SegmentResult],
    personas_by_run: dict[str, list[Persona]],
    colors: dict[str, dict[str, str]],
    tx: _Text,
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
                    "share": tx.pct(c["share"], 0),
                    "index": tx.lang.number(float(c["index"]), 3),
                    "over": bool(c["index"] >= 1.1),
                    "under": bool(c["index"] <= 0.9),
                }
                for _, c in p.top_categories.head(5).iterrows()
            ]
            cards.append(
                {
                    "segment": tx.segment(p.segment),
                    "color": colors.get(r.run_id, {}).get(p.segment, "#9aa5b1"),
                    "n_users": tx.whole(p.n_users),
                    "n_users_text": tx.n("{n} user", "{n} users", int(p.n_users)),
                    "user_share": tx.pct(p.user_share),
                    "revenue_share": tx.pct(p.revenue_share),
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
        sec.note = tx.t("No segmentation run with features to describe.")
    sec.data = {"groups": groups}


def _rfm_section(sec: _Section, results: list[SegmentResult], figs: _Figures, tx: _Text) -> None:
    from segmint.segments import RFM_GRID

    run = next((r for r in results if r.method == "rfm"), None)
    if run is None:
        sec.note = tx.t(
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
        "figure": figs.html(charts.rfm_grid_figure(grid, names, lang=tx.lang)),
        "n_scored": tx.whole(n_scored),
        "n_unscored": tx.whole(len(detail) - n_scored),
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
    tx: _Text,
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
                "segment": a["segment"].astype(str).map(tx.segment).to_numpy()[idx],
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
            lang=tx.lang,
        )
        fig.update_xaxes(range=[lo[0], hi[0]])
        fig.update_yaxes(range=[lo[1], hi[1]])
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "figure": figs.html(fig),
                "n_sample": tx.whole(take),
                "n_users": tx.whole(n),
                "sampled": n > take,
                "pc1": axes[0],
                "pc2": axes[1],
                "explained": tx.pct(float(pca.explained_variance_ratio_.sum()), 0),
            }
        )
    if not blocks:
        sec.note = _no_clustering_note(tx)
    sec.data = {"blocks": blocks}


def _no_clustering_note(tx: _Text) -> str:
    return tx.t(
        "No clustering run shown: add a segmentation with `type: kmeans` (and its "
        "`features`) to segmint.yaml and run `segmint segment`."
    )


def _kselection_section(
    sec: _Section, clusterings: list[SegmentResult], figs: _Figures, tx: _Text
) -> None:
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
                        lang=tx.lang,
                    )
                ),
                "decision": r.details.get("decision") or "",
            }
        )
    if not blocks:
        sec.note = (
            _no_clustering_note(tx)
            if not clusterings
            else tx.t("The clustering runs shown used a fixed k or a density method: no k scan.")
        )
    sec.data = {"blocks": blocks}


def _rules_section(
    sec: _Section,
    clusterings: list[SegmentResult],
    colors: dict[str, dict[str, str]],
    tx: _Text,
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
                "segment": tx.segment(row["segment"]),
                "color": colors.get(r.run_id, {}).get(str(row["segment"]), "#9aa5b1"),
                "rule": str(row["rule"]),
                "n_users": tx.whole(row["n_users"]),
                "precision": tx.pct(row["precision"], 0),
                "recall": tx.pct(row["recall"], 0),
            }
            for _, row in frame.iterrows()
        ]
        fidelity = r.details.get("fidelity")
        blocks.append(
            {
                "title": _run_label(r),
                "run_id": r.run_id,
                "rows": rows,
                "fidelity": tx.pct(float(fidelity) / 100) if fidelity is not None else "–",
            }
        )
    if not blocks:
        sec.note = (
            _no_clustering_note(tx) if not clusterings else tx.t("No surrogate-tree rules stored.")
        )
    sec.data = {"blocks": blocks}


def _migration_section(
    sec: _Section,
    project: Project,
    results: list[SegmentResult],
    listing: pd.DataFrame,
    colors: dict[str, dict[str, str]],
    figs: _Figures,
    tx: _Text,
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
        prev_as_of = tx.day(earlier["as_of"].iloc[0])
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
                "to_as_of": tx.day(r.as_of),
                "figure": figs.html(
                    charts.sankey_figure(
                        matrix,
                        colors=cols,
                        from_label=tx.t("run {run_id}", run_id=prev),
                        to_label=tx.t("run {run_id}", run_id=r.run_id),
                        lang=tx.lang,
                    )
                ),
                "stayed": tx.pct(stayed / total) if total else "–",
                "moved": tx.whole(total - stayed),
            }
        )
    if not blocks:
        sec.note = (
            tx.t(
                "Only one run of each segmentation shown, so there is nothing to compare yet: "
                "run `segmint segment` again after new data arrives to see who moved where."
            )
            if results
            else tx.t("No segmentation run yet.")
        )
    sec.data = {"blocks": blocks, "single": single}


#: Campaign metrics in words (the stored ids are kept in the hover and the JSON).
METRIC_WORDS = {
    "conversion": "conversion",
    "revenue_per_user": "revenue per user",
    "orders_per_user": "orders per user",
    "visit_rate": "visit rate",
    "events_per_user": "events per user",
    "pre_revenue_per_user (balance)": "revenue per user before the send (balance check)",
}
#: Return items in words.
ROI_WORDS = {
    "incremental_revenue": "incremental revenue",
    "incremental_conversions": "incremental conversions",
    "cost": "cost",
    "net": "net",
    "roi": "return on investment",
    "cost_per_incremental_conversion": "cost per incremental conversion",
}
_PROPORTIONS = frozenset({"conversion", "visit_rate"})
_MONEY_METRICS = frozenset({"revenue_per_user", "pre_revenue_per_user (balance)"})
_MONEY_ITEMS = frozenset({"incremental_revenue", "cost", "net", "cost_per_incremental_conversion"})


def _arm_word(tx: Any, arm: Any) -> str:
    """An arm's name as the user wrote it; the pooled comparison in the report's language."""
    return tx.t(POOLED) if arm == POOLED else str(arm or "")


def _metric_value(tx: _Text, metric: str, value: Any, *, signed: bool = False) -> str:
    """A campaign metric: percent for proportions, money for revenue, a number otherwise."""
    if value is None or not np.isfinite(float(value)):
        return "–"
    x = float(value)
    if metric in _PROPORTIONS:
        out = tx.pct(x, 2)
        return ("+" + out) if signed and x > 0 else out
    if metric in _MONEY_METRICS:
        return tx.signed_money(x) if signed else tx.money(x, whole=False)
    out = tx.lang.number(x, 3)
    return ("+" + out) if signed and x > 0 else out


def _roi_value(tx: _Text, item: str, value: Any) -> str:
    if value is None or not np.isfinite(float(value)):
        return "–"
    if item == "roi":
        return tx.pct(float(value))
    if item in _MONEY_ITEMS:
        return tx.money(float(value))
    return tx.lang.number(float(value), 3)


def _ci(lo: str, hi: str) -> str:
    return "–" if "–" in (lo, hi) else f"[{lo}, {hi}]"


def _campaigns_section(sec: _Section, project: Project, figs: _Figures, tx: _Text) -> None:
    """Latest stored evaluation of every campaign: lift forest plots, tables, Qini."""
    from segmint.experiments import latest_evaluations

    evals = latest_evaluations(project.store)
    if not evals:
        sec.note = tx.t(
            "No campaign evaluated yet: `segmint evaluate CAMPAIGN` measures a campaign "
            "against its holdout and stores the result shown here."
        )
        return
    overview = _lift_overview(evals, figs, tx)
    blocks = [_campaign_block(e, figs, tx) for e in evals]
    sec.data = {"overview": overview, "blocks": blocks}


def _eval_label(e: dict[str, Any], tx: _Text) -> str:
    """The campaign's name, marked "(interim)" while its window is still open."""
    return e["campaign"] + ("" if e["complete"] else " " + tx.t("(interim)"))


def _many_arms(e: dict[str, Any]) -> bool:
    """Whether the evaluation has several treatment arms."""
    return len(e.get("treatments") or ["treatment"]) > 1


def _lift_rows(
    evals: list[dict[str, Any]], tx: _Text
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One forest-plot row per campaign arm: (conversion rows, revenue-per-user rows)."""
    conv_rows, rev_rows = [], []
    for e in evals:
        if not e["observed_days"]:
            continue  # nothing after the send yet: no effect to draw
        for r in e["effects"]:
            arm = r.get("arm")
            if arm == POOLED or r["diff_lo"] is None:
                continue  # one marker per arm; the pooled row is in the table
            name = f"{_eval_label(e, tx)} · {arm}" if _many_arms(e) else _eval_label(e, tx)
            row = {"label": name, "diff": r["diff"], "lo": r["diff_lo"], "hi": r["diff_hi"],
                   "p": r["p_value"]}  # fmt: skip
            if (r["metric"], r["method"]) == ("conversion", "newcombe"):
                conv_rows.append(row)
            elif (r["metric"], r["method"]) == ("revenue_per_user", "welch"):
                rev_rows.append(row)
    return conv_rows, rev_rows


def _lift_overview(evals: list[dict[str, Any]], figs: _Figures, tx: _Text) -> list[str]:
    """The forest plots over every campaign: conversion lift, then revenue-per-user lift."""
    conv_rows, rev_rows = _lift_rows(evals, tx)
    overview = []
    if conv_rows:
        overview.append(
            figs.html(
                charts.lift_forest_figure(
                    pd.DataFrame(conv_rows), percent=True,
                    title=tx.t("conversion lift (95% CI)"), lang=tx.lang,
                )
            )
        )  # fmt: skip
    if rev_rows:
        overview.append(
            figs.html(
                charts.lift_forest_figure(
                    pd.DataFrame(rev_rows), percent=False,
                    title=tx.t("revenue per user lift (Welch 95% CI)"),
                    currency=tx.currency, lang=tx.lang,
                )
            )
        )  # fmt: skip
    return overview


def _campaign_block(e: dict[str, Any], figs: _Figures, tx: _Text) -> dict[str, Any]:
    """One campaign's block: effects, ROI, segment lifts, Qini, breakdowns, checks.

    While nothing has been observed after the send (``waiting``), only the balance rows
    are shown."""
    waiting = not e["observed_days"]
    effects = _effect_rows(e, tx, waiting=waiting)
    roi = [] if waiting else _roi_rows(e, tx)
    seg_fig = _segment_lift_figure(e, figs, tx, waiting=waiting)
    qini_fig, qini_coef = _qini(e, figs, tx)
    breakdowns = _breakdown_rows(e, tx) if not waiting else []
    srm = e["srm"]
    return {
        "campaign": e["campaign"],
        "many": _many_arms(e),
        "breakdowns": breakdowns,
        "window": e["window_days"],
        "start": tx.day(e["start"]),
        "complete": e["complete"],
        "warnings": e["warnings"],
        "effects": effects,
        "roi": roi,
        "srm": f"chi2 = {srm['chi2']:.3f}, p = {srm['p']:.3g}" if srm["chi2"] is not None else "–",
        "srm_flagged": bool(srm["flagged"]),
        "cuped": "–"
        if e["cuped"]["variance_reduction"] is None
        else tx.pct(e["cuped"]["variance_reduction"]),
        "segment_figure": seg_fig,
        "qini_figure": qini_fig,
        "qini": qini_coef,
        "evaluated": tx.day(e["created_at"]),
    }


def _effect_rows(e: dict[str, Any], tx: _Text, *, waiting: bool) -> list[dict[str, Any]]:
    """The effects table (only the balance checks while ``waiting``)."""
    effects = []
    for r in e["effects"]:
        metric = r["metric"]
        if waiting and not metric.endswith("(balance)"):
            continue
        effects.append(
            {
                "arm": _arm_word(tx, r.get("arm")),
                "metric": tx.t(METRIC_WORDS.get(metric, metric)),
                "metric_id": metric,
                "method": r["method"],
                "treatment": _metric_value(tx, metric, r["treatment"]),
                "control": _metric_value(tx, metric, r["control"]),
                "diff": _metric_value(tx, metric, r["diff"], signed=True),
                "ci": _ci(
                    _metric_value(tx, metric, r["diff_lo"], signed=True),
                    _metric_value(tx, metric, r["diff_hi"], signed=True),
                ),
                "p": "–" if r["p_value"] is None else f"{r['p_value']:.3g}",
                "verdict": tx.t(r["verdict"]) if r.get("verdict") else "",
            }
        )
    return effects


def _roi_rows(e: dict[str, Any], tx: _Text) -> list[dict[str, Any]]:
    """The ROI table: each item per arm with its interval."""
    return [
        {"arm": _arm_word(tx, r.get("arm")),
         "item": tx.t(ROI_WORDS.get(r["item"], r["item"].replace("_", " "))),
         "value": _roi_value(tx, r["item"], r["value"]),
         "ci": _ci(_roi_value(tx, r["item"], r["lo"]), _roi_value(tx, r["item"], r["hi"]))}
        for r in e["roi"]
    ]  # fmt: skip


def _segment_lift_figure(
    e: dict[str, Any], figs: _Figures, tx: _Text, *, waiting: bool
) -> str | None:
    """The conversion lift per segment as a forest plot (None while waiting or empty)."""
    seg_rows = [
        {"label": tx.segment(r["segment"]), "diff": r["lift"], "lo": r["lift_lo"], "hi": r["lift_hi"],
         "p": r["p_bh"]}
        for r in e["segments"] if r["lift_lo"] is not None
    ]  # fmt: skip
    if not seg_rows or waiting:
        return None
    return figs.html(
        charts.lift_forest_figure(
            pd.DataFrame(seg_rows), percent=True,
            title=tx.t(
                "conversion lift by {segmentation} segment (hover: BH p)",
                segmentation=e["segmentation"],
            ),
            lang=tx.lang,
        )
    )  # fmt: skip


def _qini(e: dict[str, Any], figs: _Figures, tx: _Text) -> tuple[str | None, str | None]:
    """The uplift model's Qini curve and coefficient (None, None without a model)."""
    if not e.get("uplift"):
        return None, None
    qini_fig = figs.html(charts.qini_figure(pd.DataFrame(e["uplift"]["qini"]), lang=tx.lang))
    return qini_fig, f"{e['uplift']['qini_coefficient']:.3f}"


def _breakdown_rows(e: dict[str, Any], tx: _Text) -> list[dict[str, Any]]:
    """The conversion lift per level of each breakdown variable, per arm."""
    return [
        {"variable": r["variable"], "level": r["level"], "arm": _arm_word(tx, r["arm"]),
         "n": tx.whole(r["n_arm"]), "n_control": tx.whole(r["n_control"]),
         "lift": _metric_value(tx, "conversion", r["lift"], signed=True),
         "ci": _ci(_metric_value(tx, "conversion", r["lift_lo"], signed=True),
                   _metric_value(tx, "conversion", r["lift_hi"], signed=True)),
         "p": "–" if r["p_value"] is None else f"{r['p_value']:.3g}",
         "p_holm_family": "–" if r["p_holm_family"] is None else f"{r['p_holm_family']:.3g}"}
        for r in e.get("breakdowns") or []
    ]  # fmt: skip


def _retention_section(sec: _Section, project: Project, figs: _Figures, tx: _Text) -> None:
    from segmint.experiments import repeat_purchase_rate, retention_matrix

    result = retention_matrix(project.store, cohort_by="first_purchase", max_months=12)
    wide = result.wide()
    if wide.empty:
        sec.note = tx.t("No completed orders yet: retention needs first purchases.")
        return
    wide = wide.tail(24)
    rep = repeat_purchase_rate(project.store)
    row = rep.iloc[0] if not rep.empty else None
    sec.data = {
        "figure": figs.html(charts.retention_heatmap_figure(wide, lang=tx.lang)),
        "repeat": None
        if row is None
        else tx.t(
            "{rate} of {buyers} (95% CI {lo} to {hi})",
            rate=tx.pct(row["rate"]),
            buyers=tx.n("{n} buyer", "{n} buyers", int(row["buyers"])),
            lo=tx.pct(row["ci_lo"]),
            hi=tx.pct(row["ci_hi"]),
        ),
    }


# -- rendering -------------------------------------------------------------------------------


def _render(
    *,
    project: Project,
    sections: list[_Section],
    results: list[SegmentResult],
    as_of: datetime | None,
    n_figures: int,
    tx: _Text,
) -> str:
    import jinja2

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
    now = datetime.now(UTC)
    main = [s for s in sections if not s.appendix]
    appendix = [s for s in sections if s.appendix]
    return template.render(
        t=tx.t,
        n=tx.n,
        html_lang=tx.lang.name,
        title=tx.t("segmint report — {project}", project=project.root.name),
        project_name=project.root.name,
        generated=tx.stamp(now),
        as_of_iso=as_of.strftime("%Y-%m-%d") if as_of else "",
        as_of=tx.day(as_of) if as_of else None,
        run_ids=[r.run_id for r in results],
        sections=main,
        appendix=appendix,
        n_figures=n_figures,
        version=segmint.__version__,
        plotly_gz=plotly_js_gzip_base64() if n_figures else "",
    )


@functools.cache
def plotly_js_gzip_base64() -> str:
    """The installed plotly.js, gzip-compressed (level 9, no timestamp) and base64-encoded.

    4.8 MB of JavaScript becomes about 2.0 MB of text; the page decodes it with the
    browser's ``DecompressionStream('gzip')``. Computed once per process.
    """
    from plotly.offline import get_plotlyjs

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


# -- formatting ------------------------------------------------------------------------------


def _ticks(text: str) -> Any:
    """Escape ``text`` and show its `backticked` spans as code."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))
