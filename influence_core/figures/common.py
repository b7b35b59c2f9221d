"""Plotly figures shared by the pages (no streamlit here: pages only place them)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from influence_core import SIGN_CONVENTION

# Two palettes that never share a colour, both colour-blind-safe:
# - the sign (harmful / helpful) is ColorBrewer's diverging PuOr: orange = harmful (+), purple = helpful (−);
# - classes are Okabe–Ito's qualitative set without its orange and purple (blue, green, pink, sky, yellow, …);
#   the decision-region heatmap fades from class 0's colour through white to class 1's.
HARMFUL, HELPFUL, NEUTRAL = "#e66101", "#5e3c99", "#8c8c8c"
SIGN_COLOURSCALE = [[0.0, HELPFUL], [0.5, "#f7f7f7"], [1.0, HARMFUL]]
CLASS_COLOURS = ["#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999933", "#882255", "#44AA99", "#DDCC77"]
SIGN_LEGEND = {"harmful": "harmful (+): removing it lowers the test loss", "helpful": "helpful (−): removing it raises the test loss"}


def class_colourscale(first: int = 0, second: int = 1) -> list[list]:
    """Heatmap colours for P(second class): first class's colour → white → second class's."""
    return [[0.0, CLASS_COLOURS[first % 10]], [0.5, "#ffffff"], [1.0, CLASS_COLOURS[second % 10]]]


def _legend_swatch(fig: go.Figure, name: str, colour: str, symbol: str = "circle", group: str = "") -> None:
    """A legend entry only (no data): per-point colours give one trace, so the colours need their own entries."""
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=name,
            legendgroup=group,
            hoverinfo="skip",
            # an outline, so a white swatch (the flipped label's ⊗) shows on the white legend
            marker=dict(size=10, color=colour, symbol=symbol, line=dict(width=1.5, color="black" if colour == "white" else colour)),
        )
    )


def legend_below(fig: go.Figure, width_px: int = 600, axis_px: int = 70) -> go.Figure:
    """A horizontal legend under the x-axis title, never over it (a legend at a fixed paper y sat on the axis title at
    1280 px): anchored to the figure's bottom edge, with the bottom margin sized for the tick labels and axis title
    (``axis_px``) and the legend's rows, estimated for ``width_px`` of width at ~7 px a character.

    A legend that needs more than one row is laid out by plotly in columns as wide as its widest entry, not packed:
    the rows are counted that way, and where several entries fit a row each gets a fixed share of the width
    (``entrywidth``), so plotly draws the rows counted here."""
    shown = [t for t in fig.data if t.name and t.showlegend is not False]
    entries = [40 + 7 * len(t.name) for t in shown]
    legend = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")
    if any(t.legendgroup for t in shown) or sum(entries) <= width_px:  # grouped legends pack their groups
        rows, used = 1, 0
        for entry in entries:
            if used and used + entry > width_px:
                rows, used = rows + 1, 0
            used += entry
    else:
        per_row = max(1, min(len(entries), int(width_px // max(entries))))
        rows = -(-len(entries) // per_row)
        if per_row > 1:  # one a row is the most rows plotly can draw: its own columns then fit the margin
            legend.update(entrywidthmode="fraction", entrywidth=1 / per_row)
    fig.update_layout(legend=legend, margin=dict(b=axis_px + 24 * rows))
    return fig


# plotly's modebar (the toolbar a chart shows on hover, top right): 2 px from the figure's top, ~22 px tall
MODEBAR_PX = 28
TITLE_PX, TITLE_LINE_EM = 16, 1.3  # Streamlit's theme: 16-px titles


def clear_of_modebar(fig: go.Figure) -> go.Figure:
    """The title moved down under the modebar's band, the top margin grown by as much (and the height, where the
    figure sets one), so the plot and whatever sits between it and the title keep their room: in plotly's default
    place, the middle of the top margin, a title sat under the modebar (a long one in a narrow column behind it)."""
    title = fig.layout.title
    if not title.text:
        return fig
    margin_top = fig.layout.margin.t if fig.layout.margin.t is not None else 100
    height = TITLE_LINE_EM * (title.font.size or TITLE_PX) * (str(title.text).count("<br>") + 1)
    at_top = (title.yref or "container") == "container" and title.y == 1 and title.yanchor in ("top", None, "auto")
    if at_top:
        top = title.pad.t or 0
    elif title.y is None or title.y == "auto":
        top = margin_top / 2 - height / 2  # plotly: the title in the middle of the top margin
    else:
        return fig  # placed by the figure itself, somewhere else
    if top >= MODEBAR_PX:
        return fig
    shift = int(np.ceil(MODEBAR_PX - top))
    fig.update_layout(title=dict(yref="container", y=1, yanchor="top", pad=dict(t=MODEBAR_PX)), margin=dict(t=margin_top + shift))
    if fig.layout.height is not None:
        fig.update_layout(height=fig.layout.height + shift)
    return fig


def readable_axes(fig: go.Figure) -> go.Figure:
    """Tick labels a user reads on every axis: plotly's default exponent format ("B") writes small numbers with SI
    prefixes ("100µ" for 1e-4 s, "−200µ" for a score of −2e-4); "e" writes 1e−4 and −2e−4, and a log axis reads
    10⁻⁴, 10⁻³, … ("power": with "e" its decades mixed 1e−3 and 0.01). An axis that chose its own ``tickformat`` or
    ``exponentformat`` keeps it. Every figure passes here last: its title is also moved clear of the modebar."""
    for axis in (*fig.select_xaxes(), *fig.select_yaxes()):
        if axis.tickformat is None and axis.exponentformat is None:
            axis.exponentformat = "power" if axis.type == "log" else "e"
    return clear_of_modebar(fig)


def wrap_text(text: str, max_chars: int) -> str:
    """``text`` broken at spaces into lines of at most ``max_chars`` characters (a longer word keeps its own line),
    joined with plotly's ``<br>``: a subplot or axis title wider than its plot runs into its neighbour's."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= max(max_chars, 1):
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def number_format(values, signed: bool = False, printf: bool = False) -> str:
    """One format for a whole column of numbers, so its rows read alike ("+1.25e+03" beside "+852" did not): integers
    as integers; fixed decimals (3 significant digits on the largest) where every nonzero value then shows at least
    one digit; else scientific notation for all. A Python format spec ("+.2e"), or with ``printf`` a printf string
    for ``st.column_config.NumberColumn`` ("%+.2e")."""
    v = np.asarray(values, dtype=float).ravel()
    v = np.abs(v[np.isfinite(v)])
    sign = "+" if signed else ""
    if not len(v) or (v == np.round(v)).all() and v.max() < 1e6:
        spec = f"{sign}.0f"
    else:
        top, nonzero = float(v.max()), v[v > 0]
        decimals = int(np.clip(2 - np.floor(np.log10(top)), 0, 6))
        fixed = 1e-3 <= top < 1e5 and (not len(nonzero) or float(nonzero.min()) >= 10.0**-decimals)
        spec = f"{sign}.{decimals}f" if fixed else f"{sign}.2e"
    return "%" + spec if printf else spec


# a table's room at 1440 × 900: Streamlit's wide main column (980 px) less its border and scrollbar; in an expander or a
# bordered container, less their padding. Past it a table scrolls sideways and its last headers are cut at the edge.
TABLE_PX, TABLE_IN_BOX_PX = 960, 920


def column_widths(
    frame,
    formats: Optional[dict] = None,
    px_per_char: float = 7.0,
    most: int = 360,
    labels: Optional[dict] = None,
    total: Optional[int] = None,
    least: Optional[dict] = None,
) -> dict[str, int]:
    """Pixel widths for a table's columns that fit their header and their longest value as shown (``formats``: a
    Python format spec per numeric column), so nothing is cut to "cleanlab (own thres…": ~7 px a character of the
    14-px table font (Source Sans measures 5.5–6.4) and room for the header's sort mark; at most ``most``.

    ``labels``: the header a column shows where it is not the column's name. ``total``: the table's room (``TABLE_PX``):
    where the columns need more, the widest give way first, each down to its header's width, so every header shows
    whole ("repair accuracy (detected)" was cut at the window's edge) and only the longest values end in "…" (whole on
    hover); ``least``: characters a column keeps however little room there is (a method's name)."""
    widths, floors = {}, {}
    for name in frame.columns:
        spec = (formats or {}).get(name)
        header = str((labels or {}).get(name, name))
        texts = [format(v, spec) if spec and isinstance(v, (int, float, np.number)) and np.isfinite(v) else str(v) for v in frame[name]]
        chars = max([len(header), *map(len, texts)])
        widths[name] = int(min(most, max(56, np.ceil(28 + px_per_char * chars))))
        kept = max(len(header), (least or {}).get(name, 0))
        floors[name] = min(widths[name], int(max(56, np.ceil(28 + px_per_char * kept))))
    if total is not None and sum(widths.values()) > total:
        low, high = 0.0, float(max(widths.values()))  # the level the widest are cut to: bisected
        for _ in range(30):
            level = (low + high) / 2
            if sum(max(floors[c], min(w, level)) for c, w in widths.items()) > total:
                high = level
            else:
                low = level
        widths = {c: int(max(floors[c], min(w, low))) for c, w in widths.items()}
    return widths


def marker_sizes(values: np.ndarray, smallest: float = 5.0, largest: float = 26.0) -> np.ndarray:
    """Marker sizes proportional to |value| (square-root scaled, so area tracks magnitude)."""
    mag = np.sqrt(np.abs(np.asarray(values, dtype=float)))
    top = mag.max() if len(mag) and mag.max() > 0 else 1.0
    return smallest + (largest - smallest) * mag / top


def decision_region_figure(
    xs: Optional[np.ndarray],
    ys: Optional[np.ndarray],
    probs: Optional[np.ndarray],
    x_train: np.ndarray,
    y_train: np.ndarray,
    train_values: Optional[np.ndarray],
    flipped: np.ndarray,
    value_label: str,
    signed: bool = False,
    x_test: Optional[np.ndarray] = None,
    y_test: Optional[np.ndarray] = None,
    test_values: Optional[np.ndarray] = None,
    highlight: Optional[tuple[str, int]] = None,
    class_names: Sequence[str] = ("0", "1"),
    removed: Optional[np.ndarray] = None,
    height: int = 560,
    legend: bool = True,
    test_value_label: str = "influence",
) -> go.Figure:
    """Decision regions of a 2D binary classifier with training points sized by an influence value (``height`` px;
    ``legend`` False for a small copy that keeps no room for one). ``test_values``: what sizes the test points
    (influence from a chosen training point), named ``test_value_label`` in the legend beside the training points'.

    Unsigned values (self-influence) colour points by label (the class palette); signed values (influence on or
    from a chosen point) colour them by sign (orange = harmful, purple = helpful); the legend names both. Trace 1 =
    train, trace 2 = test, so a page can map click events back to ids; legend swatches come last.

    With no model yet (``probs`` and ``train_values`` None) it shows the data alone: trace 0 is then empty, and the
    training points share one size.
    """
    fig = go.Figure()
    if probs is None:
        fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip"))  # keeps the trace numbers
    else:
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=probs[..., -1],
                zmin=0,
                zmax=1,
                colorscale=class_colourscale(0, len(class_names) - 1),
                opacity=0.35,
                showscale=True,
                colorbar=dict(title=f"P({class_names[-1]})", len=0.5, y=0.8),
                hoverinfo="skip",
            )
        )
    sized = train_values is not None
    sizes = marker_sizes(train_values) if sized else np.full(len(x_train), 8.0)
    train_values = train_values if sized else np.full(len(x_train), np.nan)
    train_colour = (
        np.where(np.asarray(train_values) > 0, HARMFUL, HELPFUL) if signed else np.array([CLASS_COLOURS[int(c) % 10] for c in y_train])
    )
    fig.add_trace(
        go.Scatter(
            x=x_train[:, 0],
            y=x_train[:, 1],
            mode="markers",
            name="train (size = |" + value_label + "|)" if sized else "train",
            marker=dict(
                size=np.where(flipped, np.maximum(sizes, 12), sizes),
                color=train_colour,
                opacity=0.85,
                line=dict(width=np.where(flipped, 2.5, 0.5), color=np.where(flipped, "black", "white")),
                symbol=np.where(flipped, "circle-x", "circle"),
            ),
            customdata=np.c_[np.arange(len(x_train)), y_train, flipped.astype(int), train_values],
            hovertemplate="train #%{customdata[0]}<br>label %{customdata[1]} (flipped: %{customdata[2]})"
            + ("<br>" + value_label + " %{customdata[3]:.3g}" if sized else "")
            + "<extra></extra>",
        )
    )
    if x_test is not None:
        tv = np.zeros(len(x_test)) if test_values is None else test_values
        test_colour = np.where(tv > 0, HARMFUL, HELPFUL) if test_values is not None else NEUTRAL
        fig.add_trace(
            go.Scatter(
                x=x_test[:, 0],
                y=x_test[:, 1],
                mode="markers",
                # the legend names what sizes each kind of point: the training points kept "size = |self-influence|"
                # while the test points grew with the influence of the chosen training point, named nowhere
                name="test (size = |" + test_value_label + "|)" if test_values is not None else "test",
                marker=dict(
                    size=marker_sizes(tv, 4, 18) if test_values is not None else 5,
                    color=test_colour,
                    symbol="diamond",
                    opacity=0.6,
                    line=dict(width=0.5, color="white"),
                ),
                customdata=np.c_[np.arange(len(x_test)), y_test, tv],
                hovertemplate="test #%{customdata[0]}<br>label %{customdata[1]}"
                + ("<br>" + test_value_label + " %{customdata[2]:.3g}" if test_values is not None else "")
                + "<extra></extra>",
            )
        )
    if highlight is not None:
        which, idx = highlight
        pts = x_train if which == "train" else x_test
        fig.add_trace(
            go.Scatter(
                x=[pts[idx, 0]],
                y=[pts[idx, 1]],
                mode="markers",
                name=f"selected {which} #{idx}",
                hoverinfo="skip",
                marker=dict(size=24, symbol="circle-open", color="black", line=dict(width=3)),
            )
        )
    if removed is not None:  # where a training point was before an edit removed it
        fig.add_trace(
            go.Scatter(
                x=[removed[0]],
                y=[removed[1]],
                mode="markers",
                name="removed",
                hoverinfo="skip",
                marker=dict(size=18, symbol="x-thin-open", color="black", line=dict(width=3)),
            )
        )
    if signed or test_values is not None:
        _legend_swatch(fig, SIGN_LEGEND["harmful"], HARMFUL, group="sign")
        _legend_swatch(fig, SIGN_LEGEND["helpful"], HELPFUL, group="sign")
    if not signed:
        for c, name in enumerate(class_names):
            _legend_swatch(fig, f"class {name}", CLASS_COLOURS[c % 10], group="class")
    if flipped.any():
        _legend_swatch(fig, "flipped label", "white", symbol="circle-x", group="flip")
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(title="x1", constrain="domain"),
        yaxis=dict(title="x2", scaleanchor="x"),
        title=dict(
            text=(
                "colour = sign of the influence (orange harmful, purple helpful)"
                if signed
                else "colour = label, ⊗ = flipped label; "
                + ("background = P(" + str(class_names[-1]) + ")" if probs is not None else "the model is still training")
            ),
            font=dict(size=13),
        ),
        clickmode="event+select",
    )
    if not legend:
        return readable_axes(fig.update_layout(showlegend=False, margin=dict(b=10)))
    return readable_axes(legend_below(fig))


def epochs_figure(epochs: Sequence[int], share: np.ndarray, label: str, percent: bool = True) -> go.Figure:
    """A line of one quantity over training epochs (e.g. the flipped point's share of self-influence), a share in
    percent as the pages write shares (``percent=False`` for another quantity)."""
    fig = go.Figure(
        go.Scatter(
            x=list(epochs),
            y=share,
            mode="lines+markers",
            name=label,
            hovertemplate="epoch %{x}: %{y:" + (".2~%" if percent else ".3g") + "}<extra></extra>",
        )
    )
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch", yaxis_title=label)
    if percent:
        fig.update_yaxes(tickformat="~%")
    return readable_axes(fig)


def sign_note() -> str:
    return "Sign convention: " + SIGN_CONVENTION


def retraining_check_figure(check) -> go.Figure:
    """Predicted vs retrained loss changes of a :class:`~influence_core.retraining_check.RetrainingCheck`
    (one dot per removed training point and measured test point), with y = x where the scores are on that scale."""
    rows, cols = np.meshgrid(check.train_indices, check.test_indices, indexing="ij")
    predicted, actual = check.predicted.ravel(), check.actual.ravel()
    ok = np.isfinite(actual)
    noise = np.asarray(check.below_noise).ravel()[ok] if hasattr(check, "below_noise") else np.zeros(ok.sum(), bool)
    colour = np.where(noise, NEUTRAL, np.where(predicted[ok] < 0, HARMFUL, HELPFUL))
    fig = go.Figure(
        go.Scatter(
            x=predicted[ok],
            y=actual[ok],
            mode="markers",
            name="removals",
            marker=dict(size=9, color=colour, line=dict(width=0.5, color="white")),
            customdata=np.c_[rows.ravel()[ok], cols.ravel()[ok]],
            hovertemplate="without train #%{customdata[0]}, test #%{customdata[1]}<br>predicted %{x:.3g}<br>retrained %{y:.3g}<extra></extra>",
        )
    )
    if check.on_loss_scale and ok.any():
        lo, hi = float(min(predicted[ok].min(), actual[ok].min())), float(max(predicted[ok].max(), actual[ok].max()))
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x (exact)", hoverinfo="skip", line=dict(color=NEUTRAL, dash="dash"))
        )
    floor = float(getattr(check, "noise_floor", 0.0))
    if floor > 0:
        fig.add_hrect(y0=-floor, y1=floor, fillcolor=NEUTRAL, opacity=0.2, line_width=0)
        _legend_swatch(fig, f"within the retraining noise floor (±{floor:.1e})", NEUTRAL)
    _legend_swatch(fig, "removing it lowers the loss (harmful point)", HARMFUL)
    _legend_swatch(fig, "removing it raises the loss (helpful point)", HELPFUL)
    fig.update_layout(
        margin=dict(l=10, r=10, t=30),
        xaxis_title="predicted Δ test loss (−score / N)" if check.on_loss_scale else "−score / N (no H⁻¹: not a loss change)",
        yaxis_title="Δ test loss after retraining",
        title=dict(text="each dot: one removal, one test point", font=dict(size=13)),
    )
    legend_below(fig)
    # the plot keeps its height however many rows the legend takes (at 1280 px its long entries take one row each, and
    # the y-axis title outgrew a squeezed plot into the figure title)
    fig.update_layout(height=250 + fig.layout.margin.b)
    return readable_axes(fig)
