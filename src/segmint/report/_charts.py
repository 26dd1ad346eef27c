"""Plotly figures for the report, each built from small, already aggregated tables.

Every function takes pandas/numpy data that is at most a few thousand rows (the projection
sample) and returns a :class:`plotly.graph_objects.Figure`; none of them touches the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Qualitative palette (Tableau 10, then 10 lighter companions); cycled beyond 20 segments.
PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
    "#ff9d9a",
    "#86bcb6",
    "#f1ce63",
    "#d4a6c8",
    "#fabfd2",
    "#d7b5a6",
    "#79706e",
)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
USERS_COLOR = "#4e79a7"
REVENUE_COLOR = "#f28e2b"


def segment_colors(segments: Sequence[str]) -> dict[str, str]:
    """One colour per segment, in the order given (largest segment first by convention)."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, *, height: int, **kwargs: object) -> go.Figure:
    settings: dict[str, object] = {
        "template": "plotly_white",
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "font": {"family": FONT, "size": 12, "color": INK},
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    }
    settings.update(kwargs)
    fig.update_layout(height=height, **settings)
    return fig


def sizes_figure(table: pd.DataFrame) -> go.Figure:
    """Share of users next to share of revenue per segment (horizontal bars).

    Parameters
    ----------
    table : DataFrame
        Columns ``segment``, ``n_users``, ``user_share`` and ``revenue_share`` (0..1),
        largest segment first.
    """
    t = table.iloc[::-1]  # plotly draws the first category at the bottom
    fig = go.Figure()
    # horizontal groups stack the first trace at the bottom: revenue first, users on top
    for col, name, color in (
        ("revenue_share", "share of revenue", REVENUE_COLOR),
        ("user_share", "share of users", USERS_COLOR),
    ):
        fig.add_bar(
            y=t["segment"],
            x=t[col] * 100,
            orientation="h",
            name=name,
            marker_color=color,
            text=[f"{v:.1%}" for v in t[col]],
            textposition="outside",
            cliponaxis=False,
            customdata=t["n_users"],
            hovertemplate="%{y}<br>" + name + ": %{x:.1f}%<br>%{customdata:,} users<extra></extra>",
        )
    top = float(max(t["user_share"].max(), t["revenue_share"].max(), 0.01)) * 100
    fig.update_xaxes(title_text="% of all", range=[0, top * 1.18], gridcolor=GRID)
    fig.update_yaxes(automargin=True)
    return _layout(
        fig,
        height=90 + 44 * len(t),
        barmode="group",
        bargap=0.25,
        bargroupgap=0.05,
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.0,
            "x": 0,
            "traceorder": "reversed",
        },
    )


RATIO_TICKS = (0.25, 0.5, 1.0, 2.0, 4.0)


def heatmap_figure(
    ratio: pd.DataFrame,
    *,
    segment_mean: pd.DataFrame,
    population_mean: pd.Series,
    std_diff: pd.DataFrame,
) -> go.Figure:
    """Segments x features, coloured by the ratio of the segment's mean to the population's.

    The colour is ``log2(ratio)`` clipped to [-2, 2] (a quarter to four times), so half and
    double are equally far from white; cells without a ratio (population mean 0) are blank.

    Parameters
    ----------
    ratio, segment_mean, std_diff : DataFrame
        Indexed by segment (rows in display order), one column per feature.
    population_mean : Series
        Indexed by feature.
    """
    values = ratio.to_numpy(dtype="float64")
    valid = np.isfinite(values) & (values >= 0)
    clipped = np.clip(np.where(valid, values, 1.0), RATIO_TICKS[0], RATIO_TICKS[-1])
    z = np.where(valid, np.log2(clipped), np.nan)
    text = np.where(valid, np.char.mod("%.2g", np.where(valid, values, 0.0)), "")
    pop = np.broadcast_to(population_mean.reindex(ratio.columns).to_numpy(float), values.shape)
    custom = np.dstack(
        [segment_mean.to_numpy(dtype="float64"), pop, std_diff.to_numpy(dtype="float64")]
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(ratio.columns),
            y=list(ratio.index),
            text=text,
            texttemplate="%{text}",
            textfont={"size": 10},
            customdata=custom,
            colorscale="RdBu",
            zmid=0,
            zmin=-2,
            zmax=2,
            xgap=1,
            ygap=1,
            colorbar={
                "title": {"text": "x population", "side": "right"},
                "tickvals": np.log2(RATIO_TICKS).tolist(),
                "ticktext": ["¼", "½", "1", "2", "4"],
                "thickness": 12,
            },
            hovertemplate=(
                "%{y}<br>%{x}<br>segment mean %{customdata[0]:,.3g}"
                "<br>population mean %{customdata[1]:,.3g}<br>ratio %{text}"
                "<br>standardized difference %{customdata[2]:+.2f}<extra></extra>"
            ),
        )
    )
    fig.update_xaxes(tickangle=-40, side="bottom", automargin=True)
    fig.update_yaxes(autorange="reversed", automargin=True)
    return _layout(fig, height=150 + 30 * len(ratio))


def rfm_grid_figure(counts: pd.DataFrame, names: pd.DataFrame) -> go.Figure:
    """The RFM grid: users per (R score, FM score) cell, with the cell's segment name.

    Parameters
    ----------
    counts : DataFrame
        Index R score 1..5, columns FM score 1..5, values users.
    names : DataFrame
        Same shape: the segment each cell belongs to.
    """
    z = counts.to_numpy(dtype="float64")
    total = z.sum() or 1.0
    text = [
        [
            f"<b>{str(names.iat[i, j])}</b><br>{int(z[i, j]):,} ({z[i, j] / total:.1%})"
            for j in range(5)
        ]
        for i in range(5)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"FM {c}" for c in counts.columns],
            y=[f"R {r}" for r in counts.index],
            text=text,
            texttemplate="%{text}",
            textfont={"size": 11},
            colorscale="Blues",
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": "users", "side": "right"}, "thickness": 12},
            hovertemplate="%{y} · %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="frequency + monetary score (FM)", side="bottom")
    fig.update_yaxes(title_text="recency score (R)")
    return _layout(fig, height=460)


def projection_figure(
    points: pd.DataFrame,
    *,
    colors: dict[str, str],
    explained: Sequence[float],
    density: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> go.Figure:
    """2-D PCA projection of a sample of users, one trace per segment.

    Parameters
    ----------
    points : DataFrame
        Columns ``pc1``, ``pc2``, ``segment`` (the sample).
    colors : dict
        Segment -> colour; also the legend order.
    explained : sequence of float
        Explained variance ratio of the two components.
    density : (counts, x_edges, y_edges), optional
        A 2-D histogram of every user in the same projection, drawn as a grey backdrop.
    """
    fig = go.Figure()
    if density is not None:
        counts, xe, ye = density
        shade = np.log1p(counts.T)
        fig.add_heatmap(
            z=np.where(shade > 0, shade, np.nan),
            x=(xe[:-1] + xe[1:]) / 2,
            y=(ye[:-1] + ye[1:]) / 2,
            colorscale=[[0, "#f3f4f6"], [1, "#9aa5b1"]],
            showscale=False,
            zsmooth="best",
            hoverinfo="skip",
            name="all users",
        )
    for seg, color in colors.items():
        part = points[points["segment"] == seg]
        if part.empty:
            continue
        fig.add_scatter(
            x=part["pc1"].round(3),
            y=part["pc2"].round(3),
            mode="markers",
            name=seg,
            marker={"size": 4, "color": color, "opacity": 0.7},
            hovertemplate=f"{seg}<br>PC1 %{{x}}<br>PC2 %{{y}}<extra></extra>",
        )
    fig.update_xaxes(
        title_text=f"PC1 ({explained[0]:.0%} of variance)", zeroline=False, gridcolor=GRID
    )
    fig.update_yaxes(
        title_text=f"PC2 ({explained[1]:.0%} of variance)", zeroline=False, gridcolor=GRID
    )
    return _layout(fig, height=520, legend={"orientation": "v", "x": 1.02, "y": 1})


K_METRICS = (
    ("silhouette", "Silhouette (higher is better)"),
    ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
    ("davies_bouldin", "Davies-Bouldin (lower is better)"),
    ("inertia", "Inertia (look for the elbow)"),
)


def k_selection_figure(
    scores: pd.DataFrame, *, chosen_k: int | None, elbow_k: int | None
) -> go.Figure:
    """Silhouette, Calinski-Harabasz, Davies-Bouldin and inertia by k; chosen k marked.

    Parameters
    ----------
    scores : DataFrame
        Column ``k`` and any of the four metric columns.
    chosen_k, elbow_k : int or None
        The chosen k (star and dashed line on every panel) and the inertia elbow.
    """
    metrics = [(c, t) for c, t in K_METRICS if c in scores.columns]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[t for _, t in metrics],
        horizontal_spacing=0.1,
        vertical_spacing=0.18,
    )
    for i, (col, _) in enumerate(metrics):
        row, c = i // 2 + 1, i % 2 + 1
        fig.add_scatter(
            x=scores["k"],
            y=scores[col],
            mode="lines+markers",
            line={"color": USERS_COLOR, "width": 2},
            marker={"size": 6},
            name=col,
            showlegend=False,
            hovertemplate="k=%{x}<br>" + col + " %{y:,.4g}<extra></extra>",
            row=row,
            col=c,
        )
        if chosen_k is not None and (scores["k"] == chosen_k).any():
            y = float(scores.loc[scores["k"] == chosen_k, col].iloc[0])
            fig.add_scatter(
                x=[chosen_k],
                y=[y],
                mode="markers",
                marker={"size": 15, "symbol": "star", "color": REVENUE_COLOR},
                name=f"chosen k = {chosen_k}",
                showlegend=i == 0,
                hovertemplate=f"chosen k={chosen_k}<br>{col} %{{y:,.4g}}<extra></extra>",
                row=row,
                col=c,
            )
            fig.add_vline(
                x=chosen_k,
                line={"dash": "dash", "color": REVENUE_COLOR, "width": 1},
                row=row,
                col=c,
            )
        if col == "inertia" and elbow_k is not None and (scores["k"] == elbow_k).any():
            y = float(scores.loc[scores["k"] == elbow_k, col].iloc[0])
            fig.add_scatter(
                x=[elbow_k],
                y=[y],
                mode="markers",
                marker={"size": 12, "symbol": "circle-open", "color": INK, "line": {"width": 2}},
                name=f"inertia elbow k = {elbow_k}",
                hovertemplate=f"elbow k={elbow_k}<extra></extra>",
                row=row,
                col=c,
            )
    fig.update_xaxes(dtick=1, gridcolor=GRID, title_text="k")
    fig.update_yaxes(gridcolor=GRID)
    fig.update_annotations(font={"size": 12, "color": MUTED})
    return _layout(
        fig,
        height=600,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0},
    )


def sankey_figure(
    matrix: pd.DataFrame, *, colors: dict[str, str], from_label: str, to_label: str
) -> go.Figure:
    """Users moving from each segment of one run to each segment of a later run.

    Parameters
    ----------
    matrix : DataFrame
        Index: segment in the earlier run; columns: segment in the later run; values users
        (as :meth:`segmint.Project.segments_diff` returns).
    colors : dict
        Segment -> colour (segments not in it are grey).
    from_label, to_label : str
        Short names of the two runs, shown on hover.
    """
    sources = [str(s) for s in matrix.index]
    targets = [str(s) for s in matrix.columns]
    long = pd.Series(matrix.stack())
    long = long[long.to_numpy() > 0]
    src_pos = {s: i for i, s in enumerate(sources)}
    dst_pos = {s: len(sources) + i for i, s in enumerate(targets)}
    src_idx = [src_pos[str(a)] for a, _ in long.index]
    dst_idx = [dst_pos[str(b)] for _, b in long.index]
    node_colors = [colors.get(s, "#9aa5b1") for s in sources + targets]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": sources + targets,
                "color": node_colors,
                "pad": 12,
                "thickness": 16,
                "line": {"width": 0},
                "customdata": [from_label] * len(sources) + [to_label] * len(targets),
                "hovertemplate": "%{label}<br>%{customdata}<br>%{value:,} users<extra></extra>",
            },
            link={
                "source": src_idx,
                "target": dst_idx,
                "value": long.to_numpy().astype("int64"),
                "color": [_rgba(node_colors[i], 0.35) for i in src_idx],
                "hovertemplate": "%{source.label} → %{target.label}<br>%{value:,} users"
                "<extra></extra>",
            },
        )
    )
    return _layout(fig, height=max(360, 34 * max(len(sources), len(targets))))


def lift_forest_figure(rows: pd.DataFrame, *, percent: bool, title: str | None = None) -> go.Figure:
    """Effects with their confidence intervals as horizontal error bars (a forest plot).

    Parameters
    ----------
    rows : DataFrame
        ``label, diff, lo, hi`` and optionally ``p`` (shown on hover); one row per bar, top
        to bottom. Bars whose interval excludes 0 are drawn solid, the others hollow.
    percent : bool
        Values are proportions (shown as percentage points) rather than amounts.
    """
    scale = 100.0 if percent else 1.0
    diff = rows["diff"].to_numpy(float) * scale
    lo = rows["lo"].to_numpy(float) * scale
    hi = rows["hi"].to_numpy(float) * scale
    sig = (lo > 0) | (hi < 0)
    unit = " pp" if percent else ""
    p = rows["p"].to_numpy(float) if "p" in rows else np.full(len(rows), np.nan)
    fig = go.Figure(
        go.Scatter(
            x=diff,
            y=list(rows["label"].astype(str)),
            mode="markers",
            marker={
                "size": 10,
                "color": np.where(sig, USERS_COLOR, "white").tolist(),
                "line": {"color": USERS_COLOR, "width": 2},
            },
            error_x={
                "type": "data",
                "symmetric": False,
                "array": np.nan_to_num(hi - diff).tolist(),
                "arrayminus": np.nan_to_num(diff - lo).tolist(),
                "color": USERS_COLOR,
                "thickness": 2,
                "width": 6,
            },
            customdata=np.column_stack([lo, hi, p]),
            hovertemplate=(
                f"%{{y}}<br>lift %{{x:+.2f}}{unit}<br>CI [%{{customdata[0]:+.2f}}, "
                f"%{{customdata[1]:+.2f}}]{unit}<br>p %{{customdata[2]:.3g}}<extra></extra>"
            ),
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line_color=MUTED, line_dash="dash")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(
        title_text=("lift, percentage points" if percent else "lift per user"),
        zeroline=False,
        gridcolor=GRID,
    )
    extra = {"title": {"text": title, "font": {"size": 13}}} if title else {}
    return _layout(fig, height=max(220, 110 + 34 * len(rows)), **extra)


def qini_figure(qini: pd.DataFrame) -> go.Figure:
    """The Qini curve (incremental conversions by share targeted) against random targeting."""
    x = qini["fraction"].to_numpy(float) * 100
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=qini["qini"],
                name="targeted by predicted uplift",
                line={"color": USERS_COLOR, "width": 2},
                hovertemplate="top %{x:.0f}%: %{y:,.1f} incremental conversions<extra></extra>",
            ),
            go.Scatter(
                x=x,
                y=qini["random"],
                name="random targeting",
                line={"color": MUTED, "dash": "dash"},
                hovertemplate="random %{x:.0f}%: %{y:,.1f}<extra></extra>",
            ),
        ]
    )
    fig.update_xaxes(title_text="share of users targeted (%)", gridcolor=GRID)
    fig.update_yaxes(title_text="incremental conversions", gridcolor=GRID)
    return _layout(fig, height=320)


def retention_heatmap_figure(wide: pd.DataFrame) -> go.Figure:
    """Cohorts (rows) x months since the cohort (columns), coloured by retention share.

    ``wide`` is indexed by cohort month with a ``cohort_size`` column and one column per
    month since; missing cells (months not reached yet) stay blank.
    """
    months = [c for c in wide.columns if c != "cohort_size"]
    z = wide[months].to_numpy(dtype="float64")
    labels = [
        f"{pd.Timestamp(c):%Y-%m} ({int(n):,})" if not isinstance(c, str) else f"{c} ({int(n):,})"
        for c, n in zip(wide.index, wide["cohort_size"], strict=True)
    ]
    text = np.where(np.isfinite(z), np.char.mod("%.0f%%", np.nan_to_num(z) * 100), "")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"m{m}" for m in months],
            y=labels,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 9},
            colorscale="Blues",
            zmin=0,
            zmax=float(np.nanmax(z[:, 1:]))
            if z.shape[1] > 1 and np.isfinite(z[:, 1:]).any()
            else 1,
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": "retained", "side": "right"}, "tickformat": ".0%"},
            hovertemplate="cohort %{y}<br>%{x}: %{z:.1%} active<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(side="top")
    return _layout(fig, height=140 + 22 * len(wide))
