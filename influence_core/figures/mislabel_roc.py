"""Mislabel ROC figure: each run's ROC faint, the mean per arm bold, the random baseline dashed."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from influence_core.figures.common import CLASS_COLOURS
from influence_core.mislabel_roc import FPR_GRID, MislabelROCStudy


def roc_figure(study: MislabelROCStudy, height: int = 420) -> go.Figure:
    """Per regime: each run's ROC faint, the mean ROC per arm bold, the random baseline dashed."""
    regimes = list(dict.fromkeys(r.regime for r in study.runs))
    arms = list(dict.fromkeys(r.arm for r in study.runs))
    fig = make_subplots(rows=1, cols=max(len(regimes), 1), subplot_titles=[study.regime_label(r) for r in regimes], shared_yaxes=True)
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
        fig.update_xaxes(title_text="false-positive rate (clean points inspected)", range=[0, 1], row=1, col=c)
    fig.update_yaxes(title_text="true-positive rate (flipped labels found)", range=[0, 1.02], row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), title="Cook's-distance ranking of flipped labels")
    return fig
