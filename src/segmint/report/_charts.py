"""Plotly figures for the report, each built from small, already aggregated tables.

Every function takes pandas/numpy data that is at most a few thousand rows (the projection
sample) and returns a :class:`plotly.graph_objects.Figure`; none of them touches the store.

Text people read (titles, axes, hover labels) comes from a :class:`segmint._i18n.Language`;
money is shown with its currency. Text drawn on coloured cells is black or white, whichever
contrasts more with the cell (WCAG 2 relative luminance, at least 4.5:1). Each figure may
carry phone overrides in ``layout.meta["phone"]``, merged by the report's loader when the
viewport is narrow (legend below, fewer ticks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from segmint._i18n import Language, language

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
#: Latin system fonts first, then the common CJK fonts so Chinese names render where present.
FONT = (
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, "
    "'Noto Sans CJK SC', 'Noto Sans SC', 'PingFang SC', 'Microsoft YaHei', "
    "'Hiragino Sans GB', 'Source Han Sans SC', 'WenQuanYi Micro Hei', sans-serif"
)
#: Smallest font size drawn anywhere in a chart (cell text, ticks, legends).
MIN_FONT = 11
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
USERS_COLOR = "#4e79a7"
REVENUE_COLOR = "#f28e2b"


def currency_symbol(currency: str, lang: Language) -> str:
    """The currency's symbol in the language (``$``, ``€``, ``¥``; ``CHF`` where none)."""
    from babel.numbers import get_currency_symbol

    return str(get_currency_symbol(currency, locale=lang.name.replace("-", "_")))


def segment_colors(segments: Sequence[str]) -> dict[str, str]:
    """One colour per segment, in the order given (largest segment first by convention)."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}


def _rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` or ``rgb(r, g, b)`` as three 0..255 integers."""
    c = color.strip()
    if c.startswith("#"):
        h = c[1:]
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    inner = c[c.index("(") + 1 : c.index(")")]
    r, g, b = (int(round(float(v))) for v in inner.split(",")[:3])
    return r, g, b


def relative_luminance(color: str) -> float:
    """WCAG 2 relative luminance of a colour (0 for black, 1 for white)."""

    def channel(v: int) -> float:
        x = v / 255
        return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (same) to 21 (black on white)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def text_color(background: str) -> str:
    """Black or white, whichever contrasts more with ``background`` (always >= 4.58:1)."""
    black, white = "#000000", "#ffffff"
    return (
        black if contrast_ratio(background, black) >= contrast_ratio(background, white) else white
    )


def cell_colors(
    z: np.ndarray, colorscale: Any, *, zmin: float, zmax: float
) -> list[list[str | None]]:
    """The colour plotly paints each heatmap cell (None where ``z`` is not finite)."""
    span = zmax - zmin if zmax > zmin else 1.0
    frac = np.clip((np.asarray(z, dtype="float64") - zmin) / span, 0.0, 1.0)
    ok = np.isfinite(frac)
    flat = sample_colorscale(
        [list(x) for x in colorscale], np.where(ok, frac, 0.0).ravel().tolist()
    )
    colors = np.asarray(flat, dtype=object).reshape(frac.shape)
    return [
        [colors[i, j] if ok[i, j] else None for j in range(frac.shape[1])]
        for i in range(frac.shape[0])
    ]


#: Name of the two transparent heatmap layers that carry the cell text (black, white).
CELL_TEXT = "cell text"
_CLEAR = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]


def _cell_text_layers(
    fig: go.Figure, text: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """``text`` split by the colour it is drawn in: (black cells, white cells)."""
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype="float64")
    colors = cell_colors(z, heat.colorscale, zmin=float(heat.zmin), zmax=float(heat.zmax))
    black = [["" for _ in row] for row in text]
    white = [["" for _ in row] for row in text]
    for i, row in enumerate(text):
        for j, label in enumerate(row):
            bg = colors[i][j]
            if label and bg is not None:
                (black if text_color(str(bg)) == "#000000" else white)[i][j] = label
    return black, white


def _cell_text(fig: go.Figure, text: Sequence[Sequence[str]], *, size: int = MIN_FONT) -> None:
    """Write ``text`` on the cells of the figure's heatmap, each in a contrasting colour.

    Plotly's own ``texttemplate`` colours every label one way (or by its own light/dark
    rule); here each cell's label is black or white by WCAG contrast with the cell. The
    labels are two transparent heatmap layers over the first (black text, white text),
    named ``CELL_TEXT``, skipped by the hover: 4-5 times faster to draw than one annotation
    per cell.
    """
    heat = fig.data[0]
    black, white = _cell_text_layers(fig, text)
    for color, layer in (("#000000", black), ("#ffffff", white)):
        fig.add_heatmap(
            z=heat.z,
            x=heat.x,
            y=heat.y,
            text=layer,
            texttemplate="%{text}",
            textfont={"size": size, "color": color},
            colorscale=_CLEAR,
            showscale=False,
            hoverinfo="skip",
            name=CELL_TEXT,
        )


def _phone(fig: go.Figure, **overrides: Any) -> go.Figure:
    """Layout overrides the report applies below 600 px (see the template's loader)."""
    meta = dict(fig.layout.meta or {}) if isinstance(fig.layout.meta, dict) else {}
    phone = dict(meta.get("phone") or {})
    phone.update(overrides)
    meta["phone"] = phone
    fig.update_layout(meta=meta)
    return fig


def wrap_label(text: str, width: int = 14) -> str:
    """``text`` broken into lines of about ``width`` characters with ``<br>`` (for phones).

    Breaks after `` · `` first (the separator of generated segment names), then at spaces.
    """
    words = str(text).replace(" · ", " ·\0").replace(" ", "\0").split("\0")
    lines: list[str] = []
    line = ""
    for w in words:
        candidate = f"{line} {w}" if line else w
        if line and len(candidate) > width:
            lines.append(line)
            line = w
        else:
            line = candidate
    if line:
        lines.append(line)
    return "<br>".join(lines)


def _phone_categories(axis: str, categories: Sequence[str], width: int = 14) -> dict[str, Any]:
    """Phone override for a category axis: the same categories, labels wrapped."""
    cats = [str(c) for c in categories]
    return {
        axis: {
            "tickmode": "array",
            "tickvals": cats,
            "ticktext": [wrap_label(c, width) for c in cats],
        }
    }


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
    # tick labels and titles push the margins out instead of being clipped
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def sizes_figure(table: pd.DataFrame, *, lang: Language | None = None) -> go.Figure:
    """Share of users next to share of revenue per segment (horizontal bars).

    Parameters
    ----------
    table : DataFrame
        Columns ``segment``, ``n_users``, ``user_share`` and ``revenue_share`` (0..1),
        largest segment first.
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    t = table.iloc[::-1]  # plotly draws the first category at the bottom
    fig = go.Figure()
    # horizontal groups stack the first trace at the bottom: revenue first, users on top
    users = [lang.n("{n} user", "{n} users", int(n)) for n in t["n_users"]]
    for col, name, color in (
        ("revenue_share", lang.t("share of revenue"), REVENUE_COLOR),
        ("user_share", lang.t("share of users"), USERS_COLOR),
    ):
        shares = [lang.percent(float(v)) for v in t[col]]
        fig.add_bar(
            y=t["segment"],
            x=t[col] * 100,
            orientation="h",
            name=name,
            marker_color=color,
            text=shares,
            textposition="outside",
            cliponaxis=False,
            customdata=np.column_stack([shares, users]),
            hovertemplate="%{y}<br>" + name + ": %{customdata[0]}<br>%{customdata[1]}"
            "<extra></extra>",
        )
    top = float(max(t["user_share"].max(), t["revenue_share"].max(), 0.01)) * 100
    fig.update_xaxes(title_text=lang.t("% of all"), range=[0, top * 1.25], gridcolor=GRID)
    _phone(fig, xaxis={"nticks": 4}, **_phone_categories("yaxis", list(t["segment"])))
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
    labels: dict[str, str] | None = None,
    money_features: frozenset[str] = frozenset(),
    currency: str = "USD",
    lang: Language | None = None,
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
    labels : dict, optional
        Feature -> the words shown on the axis (default: the feature name).
    money_features : frozenset of str
        Features that are amounts of money: their means are shown with ``currency``.
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    labels = labels or {}
    z, text = _ratio_cells(ratio, lang)
    features = [labels.get(c, c) for c in (str(c) for c in ratio.columns)]
    hover = _heatmap_hover(
        ratio, text, segment_mean=segment_mean, population_mean=population_mean,
        std_diff=std_diff, labels=labels, money_features=money_features, currency=currency,
        lang=lang,
    )  # fmt: skip
    fig = _ratio_heatmap(z, text, hover, rows=list(ratio.index), columns=features, lang=lang)
    fig.update_xaxes(tickangle=-40, side="bottom")
    fig.update_yaxes(autorange="reversed")
    _cell_text(fig, text)
    _layout(fig, height=170 + 32 * len(ratio))
    phone = _heatmap_phone(z, text, hover, segments=list(ratio.index), features=features, lang=lang)
    _phone(fig, figure=json.loads(phone.to_json()))
    return fig


def _ratio_cells(ratio: pd.DataFrame, lang: Language) -> tuple[np.ndarray, list[list[str]]]:
    """The colour of each cell (``log2`` of the ratio clipped to the ticks; NaN where there
    is no ratio) and its text (the ratio, blank where there is none)."""
    values = ratio.to_numpy(dtype="float64")
    valid = np.isfinite(values) & (values >= 0)
    clipped = np.clip(np.where(valid, values, 1.0), RATIO_TICKS[0], RATIO_TICKS[-1])
    z = np.where(valid, np.log2(clipped), np.nan)
    text = [
        [lang.number(float(v), 2) if ok else "" for v, ok in zip(row, oks, strict=True)]
        for row, oks in zip(values, valid, strict=True)
    ]
    return z, text


def _heatmap_hover(
    ratio: pd.DataFrame,
    text: list[list[str]],
    *,
    segment_mean: pd.DataFrame,
    population_mean: pd.Series,
    std_diff: pd.DataFrame,
    labels: dict[str, str],
    money_features: frozenset[str],
    currency: str,
    lang: Language,
) -> list[list[str]]:
    """Each cell's hover text: segment, feature, both means, the ratio and the
    standardized difference."""
    pop = population_mean.reindex(ratio.columns).to_numpy(float)
    means = segment_mean.to_numpy(dtype="float64")
    stds = std_diff.to_numpy(dtype="float64")
    columns = [str(c) for c in ratio.columns]

    def amount(x: float, feature: str) -> str:
        if not np.isfinite(x):
            return "–"
        return lang.money(x, currency) if feature in money_features else lang.number(x)

    return [
        [
            "<br>".join(
                [
                    f"{seg}",
                    labels.get(col, col),
                    lang.t("segment mean {value}", value=amount(means[i, j], col)),
                    lang.t("population mean {value}", value=amount(pop[j], col)),
                    lang.t("ratio {value}", value=text[i][j] or "–"),
                    lang.t(
                        "standardized difference {value}",
                        value=f"{stds[i, j]:+.2f}" if np.isfinite(stds[i, j]) else "–",
                    ),
                ]
            )
            for j, col in enumerate(columns)
        ]
        for i, seg in enumerate(ratio.index)
    ]


def _heatmap_phone(
    z: np.ndarray,
    text: list[list[str]],
    hover: list[list[str]],
    *,
    segments: list[Any],
    features: list[str],
    lang: Language,
) -> go.Figure:
    """The heatmap for a phone: the table turned, features down the side (they are many),
    segments across (with their ratios while they fit, about six columns)."""
    upright = len(segments) <= 4
    phone = _ratio_heatmap(
        z.T,
        [list(r) for r in zip(*text, strict=True)],
        [list(r) for r in zip(*hover, strict=True)],
        rows=features,
        columns=[wrap_label(str(s), 12) if upright else str(s) for s in segments],
        lang=lang,
    )
    phone.update_traces(showscale=False)
    # every column labelled (plotly would skip every other one when crowded)
    heads = list(phone.data[0].x)
    phone.update_xaxes(
        side="top", tickangle=0 if upright else -90, tickmode="array", tickvals=heads,
        ticktext=heads,
    )  # fmt: skip
    phone.update_yaxes(autorange="reversed")
    if len(segments) <= 6:
        _cell_text(phone, [list(r) for r in zip(*text, strict=True)])
    _layout(phone, height=120 + 26 * len(features), margin={"l": 4, "r": 16, "t": 10, "b": 10})
    return phone


def _ratio_heatmap(
    z: np.ndarray,
    text: Sequence[Sequence[str]],
    hover: Sequence[Sequence[str]],
    *,
    rows: list[str],
    columns: list[str],
    lang: Language,
) -> go.Figure:
    return go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=rows,
            text=text,
            hovertext=hover,
            colorscale="RdBu",
            zmid=0,
            zmin=-2,
            zmax=2,
            xgap=1,
            ygap=1,
            colorbar={
                "title": {"text": lang.t("× population"), "side": "right"},
                "tickvals": np.log2(RATIO_TICKS).tolist(),
                "ticktext": ["¼", "½", "1", "2", "4"],
                "thickness": 12,
            },
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )


def rfm_grid_figure(
    counts: pd.DataFrame, names: pd.DataFrame, *, lang: Language | None = None
) -> go.Figure:
    """The RFM grid: users per (R score, FM score) cell, with the cell's segment name.

    Parameters
    ----------
    counts : DataFrame
        Index R score 1..5, columns FM score 1..5, values users.
    names : DataFrame
        Same shape: the segment each cell belongs to.
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    z = counts.to_numpy(dtype="float64")
    total = z.sum() or 1.0
    text = [
        [
            f"<b>{str(names.iat[i, j])}</b><br>{lang.integer(z[i, j])} "
            f"({lang.percent(z[i, j] / total)})"
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
            colorscale="Blues",
            zmin=0,
            zmax=float(z.max()) or 1.0,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": lang.t("users"), "side": "right"}, "thickness": 12},
            hovertemplate="%{y} · %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=lang.t("frequency + monetary score (FM)"), side="bottom")
    fig.update_yaxes(title_text=lang.t("recency score (R)"))
    _cell_text(fig, text)
    # a phone cell is ~60 px wide: the count only (the segment is in the hover)
    black, white = _cell_text_layers(fig, [[lang.integer(v) for v in row] for row in z])
    _phone(fig, showscale=False, traces=[{}, {"text": black}, {"text": white}])
    return _layout(fig, height=460)


def projection_figure(
    points: pd.DataFrame,
    *,
    colors: dict[str, str],
    explained: Sequence[float],
    density: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    lang: Language | None = None,
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
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
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
            name=lang.t("all users"),
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
    for axis, pc, share in ((fig.update_xaxes, "PC1", explained[0]),
                            (fig.update_yaxes, "PC2", explained[1])):  # fmt: skip
        axis(
            title_text=lang.t(
                "{component} ({share} of variance)", component=pc, share=lang.percent(share, 0)
            ),
            zeroline=False,
            gridcolor=GRID,
        )
    _phone(
        fig,
        height=480,
        legend={"orientation": "h", "x": 0, "y": -0.18, "yanchor": "top"},
        xaxis={"nticks": 5},
        yaxis={"nticks": 6},
    )
    return _layout(fig, height=520, legend={"orientation": "v", "x": 1.02, "y": 1})


K_METRICS = (
    ("silhouette", "Silhouette (higher is better)"),
    ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
    ("davies_bouldin", "Davies-Bouldin (lower is better)"),
    ("inertia", "Inertia (look for the elbow)"),
)


def k_selection_figure(
    scores: pd.DataFrame,
    *,
    chosen_k: int | None,
    elbow_k: int | None,
    lang: Language | None = None,
) -> go.Figure:
    """Silhouette, Calinski-Harabasz, Davies-Bouldin and inertia by k; chosen k marked.

    Parameters
    ----------
    scores : DataFrame
        Column ``k`` and any of the four metric columns.
    chosen_k, elbow_k : int or None
        The chosen k (star and dashed line on every panel) and the inertia elbow.
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    metrics = [(c, lang.t(t)) for c, t in K_METRICS if c in scores.columns]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[t for _, t in metrics],
        horizontal_spacing=0.1,
        vertical_spacing=0.18,
    )
    for i, (col, _) in enumerate(metrics):
        _k_panel(fig, scores, col, i, chosen_k=chosen_k, elbow_k=elbow_k, lang=lang)
    fig.update_xaxes(dtick=1, gridcolor=GRID, title_text="k")
    fig.update_yaxes(gridcolor=GRID)
    fig.update_annotations(font={"size": 12, "color": MUTED})
    _k_phone(fig, [text for _, text in metrics])
    return _layout(
        fig,
        height=600,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0},
    )


def _k_panel(
    fig: go.Figure,
    scores: pd.DataFrame,
    col: str,
    i: int,
    *,
    chosen_k: int | None,
    elbow_k: int | None,
    lang: Language,
) -> None:
    """Panel ``i`` (of a 2 x 2 grid): metric ``col`` by k, the chosen k starred and
    dashed (its legend entry on the first panel only), the inertia elbow circled."""
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
            name=lang.t("chosen k = {k}", k=chosen_k),
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
            name=lang.t("inertia elbow k = {k}", k=elbow_k),
            hovertemplate=f"elbow k={elbow_k}<extra></extra>",
            row=row,
            col=c,
        )


def _k_phone(fig: go.Figure, titles: list[str]) -> None:
    """A phone stacks the panels: one column, each panel a quarter of the height, its
    title above it."""
    n = len(titles)
    gap = 0.08
    size = (1 - gap * (n - 1)) / max(n, 1)
    stacked: dict[str, Any] = {}
    annotations = []
    for i, text in enumerate(titles):
        top = 1 - i * (size + gap)
        suffix = "" if i == 0 else str(i + 1)
        stacked[f"xaxis{suffix}"] = {"domain": [0, 1], "nticks": 6}
        stacked[f"yaxis{suffix}"] = {"domain": [top - size, top], "nticks": 4}
        annotations.append(
            {"text": text, "x": 0.5, "xref": "paper", "xanchor": "center", "y": top,
             "yref": "paper", "yanchor": "bottom", "showarrow": False,
             "font": {"size": 12, "color": MUTED}}
        )  # fmt: skip
    _phone(fig, height=260 * n + 60, annotations=annotations, **stacked)


def sankey_figure(
    matrix: pd.DataFrame,
    *,
    colors: dict[str, str],
    from_label: str,
    to_label: str,
    lang: Language | None = None,
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
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    sources = [str(s) for s in matrix.index]
    targets = [str(s) for s in matrix.columns]
    long = pd.Series(matrix.stack())
    long = long[long.to_numpy() > 0]
    src_pos = {s: i for i, s in enumerate(sources)}
    dst_pos = {s: len(sources) + i for i, s in enumerate(targets)}
    src_idx = [src_pos[str(a)] for a, _ in long.index]
    dst_idx = [dst_pos[str(b)] for _, b in long.index]
    node_colors = [colors.get(s, "#9aa5b1") for s in sources + targets]
    values = long.to_numpy().astype("int64")
    node_totals = [int(matrix.loc[s].sum()) for s in matrix.index] + [
        int(matrix[c].sum()) for c in matrix.columns
    ]
    node_text = [
        f"{run}<br>{lang.n('{n} user', '{n} users', n)}"
        for run, n in zip(
            [from_label] * len(sources) + [to_label] * len(targets), node_totals, strict=True
        )
    ]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": sources + targets,
                "color": node_colors,
                "pad": 12,
                "thickness": 16,
                "line": {"width": 0},
                "customdata": node_text,
                "hovertemplate": "%{label}<br>%{customdata}<extra></extra>",
            },
            link={
                "source": src_idx,
                "target": dst_idx,
                "value": values,
                "color": [_rgba(node_colors[i], 0.35) for i in src_idx],
                "customdata": [lang.n("{n} user", "{n} users", int(v)) for v in values],
                "hovertemplate": "%{source.label} → %{target.label}<br>%{customdata}"
                "<extra></extra>",
            },
        )
    )
    _phone(
        fig,
        traces=[{"node": {"label": [wrap_label(x, 12) for x in sources + targets]}}],
        height=max(400, 56 * max(len(sources), len(targets))),
    )
    return _layout(fig, height=max(360, 34 * max(len(sources), len(targets))))


def lift_forest_figure(
    rows: pd.DataFrame,
    *,
    percent: bool,
    title: str | None = None,
    currency: str = "USD",
    lang: Language | None = None,
) -> go.Figure:
    """Effects with their confidence intervals as horizontal error bars (a forest plot).

    Parameters
    ----------
    rows : DataFrame
        ``label, diff, lo, hi`` and optionally ``p`` (shown on hover); one row per bar, top
        to bottom. Bars whose interval excludes 0 are drawn solid, the others hollow.
    percent : bool
        Values are proportions (shown as percentage points) rather than amounts of money
        (shown with ``currency``).
    title : str, optional
        Shown above the plot.
    lang : Language, optional
        Text and number formatting (default English).
    """
    lang = lang or language()
    scale = 100.0 if percent else 1.0
    diff = rows["diff"].to_numpy(float) * scale
    lo = rows["lo"].to_numpy(float) * scale
    hi = rows["hi"].to_numpy(float) * scale
    sig = (lo > 0) | (hi < 0)
    p = rows["p"].to_numpy(float) if "p" in rows else np.full(len(rows), np.nan)
    hover = _lift_hover(diff, lo, hi, p, percent=percent, currency=currency, lang=lang)
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
            customdata=hover,
            hovertemplate="%{y}<br>%{customdata}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line_color=MUTED, line_dash="dash")
    fig.update_yaxes(autorange="reversed")
    _lift_axis(fig, percent=percent, currency=currency, lang=lang)
    _phone(fig, xaxis={"nticks": 5})
    extra = {"title": {"text": title, "font": {"size": 13}}} if title else {}
    return _layout(fig, height=max(220, 110 + 34 * len(rows)), **extra)


def _lift_hover(
    diff: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    p: np.ndarray,
    *,
    percent: bool,
    currency: str,
    lang: Language,
) -> list[str]:
    """Each bar's hover text: the lift, its interval and the p-value."""

    def show(x: float) -> str:
        if not np.isfinite(x):
            return "–"
        if percent:
            return lang.t("{value} pp", value=f"{x:+.2f}")
        sign = "+" if x > 0 else ""
        return sign + lang.money(x, currency, whole=False)

    return [
        "<br>".join(
            [
                lang.t("lift {value}", value=show(d)),
                lang.t("95% CI [{lo}, {hi}]", lo=show(a), hi=show(b)),
                "p " + ("–" if not np.isfinite(q) else f"{q:.3g}"),
            ]
        )
        for d, a, b, q in zip(diff, lo, hi, p, strict=True)
    ]


def _lift_axis(fig: go.Figure, *, percent: bool, currency: str, lang: Language) -> None:
    """The lift axis: percentage points, or money per user with the currency's symbol."""
    symbol = currency_symbol(currency, lang)
    fig.update_xaxes(
        title_text=(
            lang.t("lift, percentage points")
            if percent
            else lang.t("lift per user ({currency})", currency=symbol)
        ),
        zeroline=False,
        gridcolor=GRID,
    )
    if not percent:
        fig.update_xaxes(tickprefix=symbol if len(symbol) == 1 else "")


def qini_figure(qini: pd.DataFrame, *, lang: Language | None = None) -> go.Figure:
    """The Qini curve (incremental conversions by share targeted) against random targeting."""
    lang = lang or language()
    x = qini["fraction"].to_numpy(float) * 100
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=qini["qini"],
                name=lang.t("targeted by predicted uplift"),
                line={"color": USERS_COLOR, "width": 2},
                hovertemplate="%{x:.0f}%: %{y:,.1f}<extra></extra>",
            ),
            go.Scatter(
                x=x,
                y=qini["random"],
                name=lang.t("random targeting"),
                line={"color": MUTED, "dash": "dash"},
                hovertemplate="%{x:.0f}%: %{y:,.1f}<extra></extra>",
            ),
        ]
    )
    fig.update_xaxes(title_text=lang.t("share of users targeted (%)"), gridcolor=GRID)
    fig.update_yaxes(title_text=lang.t("incremental conversions"), gridcolor=GRID)
    _phone(fig, xaxis={"nticks": 5})
    return _layout(fig, height=320)


def retention_heatmap_figure(wide: pd.DataFrame, *, lang: Language | None = None) -> go.Figure:
    """Cohorts (rows) x months since the cohort (columns), coloured by retention share.

    ``wide`` is indexed by cohort month with a ``cohort_size`` column and one column per
    month since; missing cells (months not reached yet) stay blank. On a phone the cells
    are too narrow for their text: the hover and the colour scale carry the values.
    """
    lang = lang or language()
    months = [c for c in wide.columns if c != "cohort_size"]
    z = wide[months].to_numpy(dtype="float64")
    labels = [
        f"{pd.Timestamp(c):%Y-%m} ({lang.integer(n)})"
        if not isinstance(c, str)
        else f"{c} ({lang.integer(n)})"
        for c, n in zip(wide.index, wide["cohort_size"], strict=True)
    ]
    text = [[lang.percent(float(v), 0) if np.isfinite(v) else "" for v in row] for row in z]
    hover = [
        [
            lang.t("cohort {cohort}", cohort=y) + f"<br>m{m}: "
            + lang.t("{share} active", share=lang.percent(float(v)) if np.isfinite(v) else "–")
            for m, v in zip(months, row, strict=True)
        ]
        for y, row in zip(labels, z, strict=True)
    ]  # fmt: skip
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"m{m}" for m in months],
            y=labels,
            text=text,
            hovertext=hover,
            colorscale="Blues",
            zmin=0,
            zmax=float(np.nanmax(z[:, 1:]))
            if z.shape[1] > 1 and np.isfinite(z[:, 1:]).any()
            else 1,
            xgap=1,
            ygap=1,
            colorbar={
                "title": {"text": lang.t("retained"), "side": "right"},
                "tickformat": ".0%",
                "thickness": 12,
            },
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    _cell_text(fig, text)
    _phone(fig, traces=[{}, {"visible": False}, {"visible": False}], xaxis={"nticks": 7})
    return _layout(fig, height=140 + 24 * len(wide))
