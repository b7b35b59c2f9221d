"""Mislabel ROC figure: each run's ROC faint, the mean per arm bold, the random baseline dashed."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from influence_core.figures.common import CLASS_COLOURS, legend_below, readable_axes, wrap_text
from influence_core.mislabel_roc import FPR_GRID, MislabelROCStudy

SUBPLOT_TITLE_PX, AXIS_TITLE_PX = 14, 14
CHAR_EM = 0.55  # a generous average character width, in font sizes (Source Sans measures about 0.45)
LINE_EM = 1.3  # line height, in font sizes


def roc_figure(study: MislabelROCStudy, plot_height: int = 300, width_px: int = 820) -> go.Figure:
    """Per regime: each run's ROC faint, the mean ROC per arm bold, the random baseline dashed.

    Laid out for ``width_px``, the narrowest it is drawn (the full width at 1280 px): the figure title sits at
    the top edge and the subplot titles in their own band under it (both in a 40-px top margin, they were drawn over
    each other), subplot and axis titles wrap to their subplot's width, and the legend sits under the plots in rows.
    ``plot_height`` is the plots' own height; the figure adds its margins to it."""
    regimes = list(dict.fromkeys(r.regime for r in study.runs))
    arms = list(dict.fromkeys(r.arm for r in study.runs))
    cols = max(len(regimes), 1)
    spacing = 0.08 if cols > 1 else 0.0
    column_px = (width_px - 80) * (1 - spacing * (cols - 1)) / cols  # less the margins and the y axis
    titles = [wrap_text(study.regime_label(r), int(column_px / (CHAR_EM * SUBPLOT_TITLE_PX))) for r in regimes]
    x_title = wrap_text("false-positive rate (clean points inspected)", int(column_px / (CHAR_EM * AXIS_TITLE_PX)))
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, shared_yaxes=True, horizontal_spacing=spacing)
    fig.update_annotations(font_size=SUBPLOT_TITLE_PX)  # the subplot titles: the only annotations here
    for c, regime in enumerate(regimes, start=1):
        for a, arm in enumerate(arms):
            colour = CLASS_COLOURS[a % len(CLASS_COLOURS)]
            runs = study.select(arm, regime)
            for r in runs:
                fpr, tpr = r.roc()
                fig.add_trace(
                    go.Scatter(
                        x=fpr,
                        y=tpr,
                        mode="lines",
                        line=dict(color=colour, width=1),
                        opacity=0.25,
                        showlegend=False,
                        hoverinfo="skip",
                        legendgroup=arm,
                    ),
                    row=1,
                    col=c,
                )
            if runs:
                auc = np.mean([r.auroc for r in runs])
                fig.add_trace(
                    go.Scatter(
                        x=FPR_GRID,
                        y=study.mean_roc(arm, regime),
                        mode="lines",
                        line=dict(color=colour, width=3),
                        name=f"{arm} (mean AUROC {auc:.3f})" if len(regimes) == 1 else arm,
                        legendgroup=arm,
                        showlegend=c == 1,
                    ),
                    row=1,
                    col=c,
                )
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="black", dash="dash"), name="random ranking", showlegend=c == 1),
            row=1,
            col=c,
        )
        fig.update_xaxes(title_text=x_title, range=[0, 1], row=1, col=c)
    fig.update_yaxes(title_text="true-positive rate (flipped labels found)", range=[0, 1.02], row=1, col=1)
    title_lines = max((t.count("<br>") + 1 for t in titles), default=0)
    top = 8 + int(LINE_EM * 16) + 6 + int(LINE_EM * SUBPLOT_TITLE_PX * title_lines) + 4
    fig.update_layout(
        title=dict(
            text="Cook's-distance ranking of flipped labels", x=0, xanchor="left", yref="container", y=1, yanchor="top", pad=dict(t=8)
        ),
        margin=dict(l=10, r=10, t=top),
    )
    legend_below(fig, width_px=width_px, axis_px=52 + int(LINE_EM * AXIS_TITLE_PX * (x_title.count("<br>") + 1)))
    fig.update_layout(height=plot_height + top + fig.layout.margin.b)
    return readable_axes(fig)
