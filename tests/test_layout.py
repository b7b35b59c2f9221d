"""Figures that read at the widths the app draws them (issue 34, item 7, "Hard to read"): no two text boxes drawn over
each other (labels beside points, titles, annotations, axis titles, the legend), none leaving the figure, and no axis
writing small numbers with SI prefixes ("100µ" for 1e-4 s).

Pure Python over the plotly figure objects, no browser: each text's box is estimated from the layout as Streamlit's
theme draws it (Source Sans; 16-px bold titles at the top left, 14-px axis titles, 12-px text), with a generous
character width (0.5 em, 0.55 bold; Source Sans measures 0.40–0.46 in Chromium), so an estimate that fits leaves the
real text room.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

# where the app draws them (Chromium, Streamlit's wide layout): a full-width figure, a [3, 2] column's right part and
# a [1, 3] column's wide part, at 1440 and at 1280 px
FULL, RIGHT_TWO_FIFTHS, WIDE_THREE_QUARTERS = (980, 820), (384, 320), (727, 607)

CHAR_EM, BOLD_CHAR_EM, LINE_EM = 0.5, 0.55, 1.3
TEXT_PX, TITLE_PX, AXIS_TITLE_PX, TICK_PX = 12, 16, 14, 12
READABLE_EXPONENTS = {"e", "E", "power", "none"}


# ------------------------------------------------------------------ text boxes of a figure, in pixels


def _lines(text: str) -> list[str]:
    """Plotly's text as the lines it draws: <br> breaks, other tags take no room."""
    return [re.sub(r"<[^>]+>", "", line) for line in re.split(r"<br\s*/?>", str(text))]


def _size(text: str, font_px: float, bold: bool = False) -> tuple[float, float]:
    lines = _lines(text)
    return max(len(line) for line in lines) * (BOLD_CHAR_EM if bold else CHAR_EM) * font_px, len(lines) * LINE_EM * font_px


def _anchor(position: float, extent: float, anchor: str | None, fraction: float) -> float:
    """The start of a box of ``extent`` anchored at ``position`` ('auto' as plotly: by thirds of the plot)."""
    if anchor in (None, "auto"):
        anchor = "left" if fraction <= 1 / 3 else "right" if fraction >= 2 / 3 else "center"
    return {"left": position, "bottom": position - extent, "right": position - extent, "top": position}.get(anchor, position - extent / 2)


class Layout:
    """Where plotly puts a figure's plot area and axes at ``width`` px (the layout's own width where it has one)."""

    def __init__(self, fig, width: int):
        lay = fig.layout
        self.fig = fig
        self.W = lay.width or width
        self.H = lay.height or 450
        m = lay.margin
        # Streamlit's theme: l = r = 0; plotly's t = 100, b = 80
        left, r = (m.l if m.l is not None else 0), (m.r if m.r is not None else 0)
        t, b = (m.t if m.t is not None else 100), (m.b if m.b is not None else 80)
        self.t = t
        # the axes push their margins (automargin) to fit tick labels and titles
        y_title = any(a.title.text for a in fig.select_yaxes())
        left_needed = 5 * 0.55 * TICK_PX + 8 + (24 + LINE_EM * AXIS_TITLE_PX if y_title else 0)
        x_title_lines = max((len(_lines(a.title.text)) for a in fig.select_xaxes() if a.title.text), default=0)
        self.x_title_top = LINE_EM * TICK_PX + 8 + 20  # below the plot: tick labels, pad, title standoff
        bottom_needed = self.x_title_top + x_title_lines * LINE_EM * AXIS_TITLE_PX
        self.legend = self._legend_box_size()
        if self.legend and self.legend["orientation"] == "v":
            r = max(r, self.legend["w"] + 10)
        self.left, self.right = max(left, left_needed), self.W - r
        self.top, self.bottom = t, self.H - max(b, bottom_needed)
        if self.legend and self.legend["orientation"] == "h" and self.fig.layout.legend.yref == "container":
            # a legend at the figure's bottom edge reserves its height below what the axes push (plotly's
            # _reservedMargin): the margin grows to the axis's room plus the legend's, where it is smaller
            self.bottom = self.H - max(b, bottom_needed + self._legend_height())
        assert self.right - self.left > 40 and self.bottom - self.top > 40, "no room left for the plot"

    # ---- axes
    def _axis(self, ref: str):
        """'x', 'x2', 'y3' → the layout axis."""
        letter, number = ref[0], ref[1:]
        return self.fig.layout[f"{letter}axis{number}"]

    def _range(self, ref: str) -> tuple[float, float]:
        axis = self._axis(ref)
        log = axis.type == "log"
        if axis.range is not None:
            lo, hi = axis.range
        else:  # autorange over the data drawn on this axis, plus plotly's padding
            values = []
            for trace in self.fig.data:
                if (getattr(trace, ref[0] + "axis", None) or ref[0]) != ref:
                    continue
                data = getattr(trace, ref[0], None)
                if data is None:
                    continue
                arr = pd.to_numeric(pd.Series(np.ravel(np.asarray(data, dtype=object))), errors="coerce").to_numpy(float)
                arr = arr[np.isfinite(arr)]
                values.append(np.log10(arr[arr > 0]) if log else arr)
            values = np.concatenate(values) if values else np.array([0.0, 1.0])
            lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
            pad = 0.06 * (hi - lo) if hi > lo else 1.0
            lo, hi = lo - pad, hi + pad
        if axis.autorange == "reversed":
            lo, hi = hi, lo
        return lo, hi

    def domain_px(self, ref: str) -> tuple[float, float]:
        d0, d1 = self._axis(ref).domain or (0, 1)
        if ref[0] == "x":
            return self.left + d0 * (self.right - self.left), self.left + d1 * (self.right - self.left)
        return self.bottom - d1 * (self.bottom - self.top), self.bottom - d0 * (self.bottom - self.top)  # top, bottom

    def to_px(self, ref: str, value) -> float:
        """A data value on axis ``ref`` → pixels from the figure's left (x) or top (y) edge."""
        lo, hi = self._range(ref)
        v = float(value)
        if self._axis(ref).type == "log":
            v = np.log10(max(v, 1e-300))
        frac = (v - lo) / (hi - lo) if hi != lo else 0.5
        p0, p1 = self.domain_px(ref)
        return p0 + frac * (p1 - p0) if ref[0] == "x" else p1 - frac * (p1 - p0)

    def ref_px(self, ref: str | None, value: float, letter: str) -> tuple[float, float]:
        """(pixels, fraction across the plot) of a position given in ``ref`` coordinates (paper, 'x2 domain', 'y')."""
        ref = ref or "paper"
        if ref == "paper" or ref.endswith("domain"):
            if ref == "paper":
                p0, p1 = (self.left, self.right) if letter == "x" else (self.bottom, self.top)
            else:
                top, bottom = self.domain_px(ref.split()[0])
                p0, p1 = (top, bottom) if letter == "x" else (bottom, top)
            return p0 + value * (p1 - p0), value
        px = self.to_px(ref, value)
        span = (self.right - self.left) if letter == "x" else (self.bottom - self.top)
        frac = (px - self.left) / span if letter == "x" else (self.bottom - px) / span
        return px, frac

    # ---- the legend
    def _legend_entries(self):
        shown = [t for t in self.fig.data if t.name and t.showlegend is not False]
        if self.fig.layout.showlegend is False or (self.fig.layout.showlegend is None and len(shown) < 2):
            return []
        return shown

    def _legend_box_size(self):
        entries = self._legend_entries()
        if not entries:
            return None
        legend = self.fig.layout.legend
        widths = [40 + len(t.name) * 0.5 * TEXT_PX for t in entries]
        row_px = LINE_EM * TEXT_PX + 4
        if legend.orientation != "h":
            return {"orientation": "v", "w": max(widths) + 10, "h": len(entries) * row_px + 10}
        return {"orientation": "h", "widths": widths, "row_px": row_px, "groups": [t.legendgroup or "" for t in entries]}

    def _legend_rows(self, room: float) -> int:
        """Plotly's horizontal legend: one row if every entry fits the plot's width; else columns as wide as the widest
        entry (or the share ``entrywidth`` sets); grouped legends stack each group in a column."""
        legend = self.fig.layout.legend
        widths, groups = self.legend["widths"], self.legend["groups"]
        if any(groups):
            columns: dict[str, list[float]] = {}
            for g, w in zip(groups, widths):
                columns.setdefault(g or str(len(columns)), []).append(w)
            rows, used, tallest = 0, 0.0, 0
            for col in columns.values():
                if used and used + max(col) > room:
                    rows, used, tallest = rows + tallest, 0.0, 0
                used += max(col) + 10
                tallest = max(tallest, len(col))
            rows += tallest
        elif legend.entrywidthmode == "fraction" and legend.entrywidth:
            per_row = max(1, int(round(1 / legend.entrywidth)))
            assert max(widths) <= room / per_row + 1, f"a legend entry is wider than its share: {max(widths):.0f} > {room / per_row:.0f} px"
            rows = -(-len(widths) // per_row)
        elif sum(widths) <= room:
            rows = 1
        else:
            rows = -(-len(widths) // max(1, int(room // max(widths))))
        return rows

    def _legend_height(self) -> float:
        # the plot's width before the margins settle: the legend spans it
        room = self.W - max(self.fig.layout.margin.l or 0, 5 * 0.55 * TICK_PX + 8 + 42) - (self.fig.layout.margin.r or 0)
        return self._legend_rows(room) * self.legend["row_px"] + 10

    def legend_box(self):
        if not self.legend:
            return None
        legend = self.fig.layout.legend
        if self.legend["orientation"] == "v":
            x0 = self.right + 0.02 * (self.right - self.left)
            return (x0, self.top, x0 + self.legend["w"], self.top + self.legend["h"])
        room, widths = self.right - self.left, self.legend["widths"]
        rows = self._legend_rows(room)
        height = rows * self.legend["row_px"] + 10
        if legend.yref == "container":
            y = (1 - (legend.y if legend.y is not None else 1)) * self.H
        else:
            y = self.bottom - (legend.y if legend.y is not None else 1) * (self.bottom - self.top)
        top = y - height if legend.yanchor == "bottom" else y
        return (self.left, top, self.left + min(room, sum(widths) if rows == 1 else room), top + height)


def text_boxes(fig, width: int) -> tuple[list[tuple[str, str, tuple[float, float, float, float]]], Layout]:
    """(kind, text, (left, top, right, bottom)) of every text plotly draws on ``fig`` at ``width`` px, but tick labels."""
    lay = Layout(fig, width)
    boxes = []
    title = fig.layout.title
    if title.text:
        w, h = _size(title.text, title.font.size or TITLE_PX, bold=True)
        x = title.x if title.x is not None else 0.0
        if (title.xref or "container") == "container":
            xp = x * lay.W
        else:
            xp = lay.left + x * (lay.right - lay.left)
        pad = (title.pad.l if title.pad.l is not None else 4) if (title.xanchor or "left") == "left" else 0
        x0 = _anchor(xp + pad, w, title.xanchor or "left", x)
        if title.y in (None, "auto"):  # plotly: the middle of the top margin
            y0 = lay.t / 2 - h / 2
        else:
            yp = (1 - title.y) * lay.H if (title.yref or "container") == "container" else lay.bottom - title.y * (lay.bottom - lay.top)
            anchor = title.yanchor if title.yanchor not in (None, "auto") else ("top" if title.y >= 0.5 else "bottom")
            y0 = yp + (title.pad.t or 0) if anchor == "top" else yp - h - (title.pad.b or 0) if anchor == "bottom" else yp - h / 2
        boxes.append(("title", _lines(title.text)[0], (x0, y0, x0 + w, y0 + h)))
    for ann in fig.layout.annotations:
        if not ann.text or ann.visible is False:
            continue
        w, h = _size(ann.text, (ann.font.size if ann.font and ann.font.size else TEXT_PX))
        w, h = w + 4, h + 4  # borderpad
        xp, xf = lay.ref_px(ann.xref, ann.x if ann.x is not None else 0.5, "x")
        yp, yf = lay.ref_px(ann.yref, ann.y if ann.y is not None else 0.5, "y")
        if ann.showarrow is not False:  # the text sits at the arrow's tail, centred
            xp, yp = xp + (ann.ax if ann.ax is not None else -10), yp + (ann.ay if ann.ay is not None else -30)
            x0, y0 = xp - w / 2, yp - h / 2
        else:
            x0 = _anchor(xp + (ann.xshift or 0), w, ann.xanchor, xf)
            ya = ann.yanchor if ann.yanchor not in (None, "auto") else ("bottom" if yf <= 1 / 3 else "top" if yf >= 2 / 3 else "middle")
            y0 = (yp - (ann.yshift or 0)) - {"bottom": h, "top": 0}.get(ya, h / 2)
        boxes.append(("annotation", _lines(ann.text)[0], (x0, y0, x0 + w, y0 + h)))
    for axis in fig.select_xaxes():
        if axis.title.text and axis.visible is not False:
            ref = "x" + axis.plotly_name[5:]
            w, h = _size(axis.title.text, axis.title.font.size or AXIS_TITLE_PX)
            d0, d1 = lay.domain_px(ref)
            y0 = lay.bottom + lay.x_title_top
            boxes.append(("x-axis title", _lines(axis.title.text)[0], ((d0 + d1) / 2 - w / 2, y0, (d0 + d1) / 2 + w / 2, y0 + h)))
    for axis in fig.select_yaxes():
        if axis.title.text and axis.visible is not False:
            ref = "y" + axis.plotly_name[5:]
            h, w = _size(axis.title.text, axis.title.font.size or AXIS_TITLE_PX)  # drawn turned a quarter
            top, bottom = lay.domain_px(ref)
            beside = lay.domain_px(axis.anchor)[0] if axis.anchor and axis.anchor.startswith("x") else lay.left  # its plot's left
            x1 = beside - 5 * 0.55 * TICK_PX - 8 - 24
            boxes.append(("y-axis title", _lines(axis.title.text)[0], (x1 - w, (top + bottom) / 2 - h / 2, x1, (top + bottom) / 2 + h / 2)))
    for trace in fig.data:  # labels drawn beside points
        if trace.type != "scatter" or "text" not in (trace.mode or "") or trace.text is None:
            continue
        texts = np.atleast_1d(np.asarray(trace.text, dtype=object))
        positions = np.broadcast_to(np.asarray(trace.textposition or "middle center", dtype=object), texts.shape)
        sizes = np.broadcast_to(np.asarray(trace.marker.size if trace.marker.size is not None else 6, dtype=float), texts.shape)
        font = trace.textfont.size if trace.textfont and trace.textfont.size else TEXT_PX
        xref, yref = trace.xaxis or "x", trace.yaxis or "y"
        for text, x, y, position, size in zip(texts, trace.x, trace.y, positions, sizes):
            if text is None or x is None or y is None:
                continue
            w, h = _size(str(text), font)
            xp, yp = lay.to_px(xref, x), lay.to_px(yref, y)
            vertical, _, horizontal = str(position).partition(" ")
            gap = size / 2 + 2
            x0 = {"left": xp - gap - w, "right": xp + gap}.get(horizontal, xp - w / 2)
            y0 = {"top": yp - gap - h, "bottom": yp + gap}.get(vertical, yp - h / 2)
            boxes.append(("text label", str(text), (x0, y0, x0 + w, y0 + h)))
    legend = lay.legend_box()
    if legend is not None:
        boxes.append(("legend", "", legend))
    return boxes, lay


def layout_problems(fig, width: int) -> list[str]:
    """Every pair of text boxes drawn over each other, and every title, annotation, label or legend leaving the figure."""
    boxes, lay = text_boxes(fig, width)
    problems = []
    for kind, text, (x0, y0, x1, y1) in boxes:
        if kind not in ("x-axis title", "y-axis title") and (x0 < -2 or y0 < -2 or x1 > lay.W + 2 or y1 > lay.H + 2):
            problems.append(f"{kind} {text!r} leaves the {lay.W}×{lay.H} figure: ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})")
    for i, (kind_a, text_a, a) in enumerate(boxes):
        for kind_b, text_b, b in boxes[i + 1 :]:
            if min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1:
                problems.append(f"{kind_a} {text_a!r} overlaps {kind_b} {text_b!r} at {width} px")
    return problems


def si_prefixed_axes(fig) -> list[str]:
    """Axes left to plotly's default exponent format ("B"): small numbers come out as 100µ, −200µ."""
    return [
        axis.plotly_name
        for axis in (*fig.select_xaxes(), *fig.select_yaxes())
        if not axis.tickformat and axis.exponentformat not in READABLE_EXPONENTS
    ]


# ------------------------------------------------------------------ adversarial inputs


def _trust_table(identical: bool = True) -> pd.DataFrame:
    """Seven methods: IP and TracIn at the same LDS and cost (TracIn with one checkpoint is IP scaled), three influence@
    curvatures within a hair of each other, one method off at the right edge."""
    return pd.DataFrame(
        {
            "method": ["magic", "influence@exact", "influence@ekfac", "influence@last_layer", "trak", "tracin", "ip"],
            "lds": [0.97, 0.62, 0.615, 0.61, 0.40, 0.31, 0.31 if identical else 0.312],
            "lds_low": [0.9, 0.5, 0.5, 0.5, 0.3, 0.2, 0.2],
            "lds_high": [1.0, 0.7, 0.7, 0.7, 0.5, 0.4, 0.4],
            "seconds": [12.0, 0.8, 0.79, 0.81, 0.3, 1.2e-4, 1.2e-4 if identical else 1.25e-4],
        }
    )


def _lds_result(table: pd.DataFrame, ceiling: float | None = 0.95):
    from influence_core.lds import LDSResult

    rng = np.random.default_rng(0)
    methods = list(table["method"])
    return LDSResult(
        methods=methods,
        lds=dict(zip(methods, table["lds"])),
        interval={m: (lo, hi) for m, lo, hi in zip(methods, table["lds_low"], table["lds_high"])},
        per_test={m: rng.uniform(-0.2, 1, 40) for m in methods},
        seconds=dict(zip(methods, table["seconds"])),
        subsets=np.ones((5, 10), bool),
        actual=np.zeros((5, 40)),
        ceiling=ceiling,
    )


def _roc_study(n_regimes: int, arms=("MLP", "CNN", "CNN + L1L2 head", "CNN, 3× longer/slower", "ResNet18")):
    from influence_core.mislabel_roc import MislabelROCStudy, RunScores

    rng = np.random.default_rng(0)
    runs = []
    for r in range(n_regimes):
        flipped = np.zeros(1257, bool)
        flipped[: (5, 1, 12)[r % 3]] = True
        for arm in arms:
            for seed in range(2):
                runs.append(RunScores(arm, f"≈0.0{r} % flipped", seed, np.where(flipped, 1.0, 0.0) + rng.random(1257), flipped, 0.9, 1.0))
    return MislabelROCStudy(runs=runs)


def _cut_fakes():
    """A region study and a cut with what the figure reads, small Cook's distances (no training)."""
    rng = np.random.default_rng(0)
    n = 30
    xs, ys = np.linspace(0, 6e4, 20), np.linspace(-3.14, 3.14, 20)
    xx, yy = np.meshgrid(xs, ys)
    labels = (xx > 3e4).astype(int) + (yy > 0).astype(int)
    info = SimpleNamespace(
        input_names=["rho", "theta", "psi"], input_units=["ft", "rad", "rad"], box=np.array([[0, 6e4], [-3.14, 3.14], [-3.14, 3.14]])
    )
    study = SimpleNamespace(
        info=info,
        dataset=SimpleNamespace(class_names=["COC", "weak left", "weak right", "strong left", "strong right"]),
        x_train_raw=rng.uniform(0, 1, (n, 3)),
    )
    cut = SimpleNamespace(
        xx=xx,
        yy=yy,
        model_labels=labels,
        oracle_labels=np.where(rng.random(labels.shape) < 0.05, 4, labels),
        point_cook=rng.uniform(0, 3e-5, n),
        point_xy=np.c_[rng.uniform(0, 6e4, n), rng.uniform(-3.14, 3.14, n)],
        point_labels=rng.integers(0, 5, n),
        point_positions=np.arange(n),
        disagreement=rng.random(labels.shape) < 0.05,
        seed_position=3,
        axes=(0, 1),
        center_raw=np.array([1234.5, 0.5, 1.2345]),
        total_influence=1.234e-4,
        disagreement_fraction=0.031,
    )
    return study, cut


def _trim_table(fairness: bool):
    from influence_core.hessian_free import TrimResult

    seeds = [0, 1, 2, 3, 4]
    runs = {m: [0.9 + 0.01 * k + 0.002 * s for s in seeds] for k, m in enumerate(("none", "ip", "tracin", "influence", "trak"))}
    return TrimResult(
        fraction=0.05,
        seeds=seeds,
        accuracy=runs,
        fairness={m: [0.1 if fairness else float("nan")] * 5 for m in runs},
        removed={m: np.arange(4) for m in runs if m != "none"},
        flipped_share_removed={m: 0.25 for m in runs if m != "none"},
    ).table()


def all_figures():
    """(name, figure, widths it is drawn at) for every figure module, on inputs that crowd their text: identical and
    near-identical points, long method and arm names, scores of 1e-4."""
    from influence_core.figures import common, label_bias, mislabel_roc, regions, trust, what_if

    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1e-4, 300)
    flipped = rng.random(300) < 0.1
    table = _trust_table()
    result = _lds_result(table)
    low_ceiling = _lds_result(table, ceiling=0.3)
    x2 = rng.normal(size=(60, 2))
    check = SimpleNamespace(
        train_indices=np.arange(6),
        test_indices=np.arange(2),
        predicted=rng.normal(0, 1e-4, (6, 2)),
        actual=rng.normal(0, 1e-4, (6, 2)),
        below_noise=np.zeros((6, 2), bool),
        noise_floor=2e-5,
        on_loss_scale=True,
    )
    study, cut = _cut_fakes()
    grid = np.linspace(-3, 3, 30)
    figures = [
        ("trust cost, identical IP/TracIn", trust.cost_figure(table), RIGHT_TWO_FIFTHS),
        ("trust cost, near IP/TracIn", trust.cost_figure(_trust_table(identical=False)), RIGHT_TWO_FIFTHS),
        ("trust cost, one method", trust.cost_figure(table.head(1)), RIGHT_TWO_FIFTHS),
        ("trust LDS bars, ceiling near 1", trust.lds_bars_figure(table, result), WIDE_THREE_QUARTERS),
        ("trust LDS bars, low ceiling", trust.lds_bars_figure(table, low_ceiling), WIDE_THREE_QUARTERS),
        ("trust spread", trust.spread_figure(result, list(table["method"])), FULL),
        (
            "trust subset",
            trust.subset_figure(scores[:20], scores[20:40], "ip on held-out point 3: Spearman +0.52 over 20 subsets"),
            WIDE_THREE_QUARTERS,
        ),
        ("ROC, one regime", mislabel_roc.roc_figure(_roc_study(1)), FULL),
        ("ROC, two regimes", mislabel_roc.roc_figure(_roc_study(2)), FULL),
        ("ROC, three regimes", mislabel_roc.roc_figure(_roc_study(3)), FULL),
        ("label bias bars", label_bias.influence_bar_figure(scores, flipped, 1e-4, "self-influence (Cook's distance)"), (580, 484)),
        ("label bias sweep", label_bias.threshold_figure(scores, flipped, 1e-4), (384, 320)),
        ("label bias histogram, threshold in the tail", label_bias.score_histogram_figure(scores, float(scores.max()) * 0.95), (384, 320)),
        ("label bias histogram, threshold low", label_bias.score_histogram_figure(scores, float(scores.min())), (384, 320)),
        ("label bias curves", label_bias.detection_curves_figure({"Cook": scores + flipped * 1e-4, "loss": scores}, flipped), FULL),
        (
            "label bias models",
            label_bias.model_comparison_figure({n: {"test": {"loss": 0.31, "accuracy": 0.9358}} for n in ("clean", "noisy")}),
            FULL,
        ),
        ("regions", regions.cut_figure(study, cut), FULL),
        (
            "what-if methods",
            what_if.method_scatter_figure(scores, 2 * scores, flipped, "IP", "TracIn", {"pearson": 0.9, "spearman": 0.8}),
            FULL,
        ),
        (
            "what-if removal",
            what_if.removal_check_figure(scores[:20], {"IP": 3 * scores[:20], "exact": scores[:20]}, {"IP": False, "exact": True}),
            FULL,
        ),
        ("retraining check", common.retraining_check_figure(check), WIDE_THREE_QUARTERS),
        (
            "what-if flip-set map",
            what_if.flip_set_map_figure(
                (x2, x2[:10], ("PC 1 (42% of the variance)", "PC 2 (17% of the variance)")),
                (x2[:, 0] > 0).astype(int),
                rng.random(60) < 0.1,
                np.zeros(10, int),
                rng.random(10),
                np.arange(10),
                np.arange(5),
                "relabel",
                3,
                added=np.arange(5, 8),
            ),
            FULL,
        ),
        ("what-if k histogram", what_if.set_size_histogram_figure(rng.integers(1, 40, 200)), (490, 408)),
        (
            "what-if k vs distance",
            what_if.set_size_vs_distance_figure(
                rng.integers(1, 40, 200), rng.random(200) * 0.5, rng.choice(["not checked", "flipped", "did not flip"], 200)
            ),
            (490, 408),
        ),
        ("what-if trim, flipped share", what_if.trim_figure(_trim_table(fairness=False), 5, flipped_known=True), FULL),
        ("what-if trim, fairness", what_if.trim_figure(_trim_table(fairness=True), 1, flipped_known=False), FULL),
        (
            "epochs",
            common.epochs_figure([1, 2, 3], np.array([1e-4, 2e-4, 3e-4]), "flipped points' share of self-influence"),
            RIGHT_TWO_FIFTHS,
        ),
        (
            "decision regions",
            common.decision_region_figure(
                grid,
                grid,
                rng.random((30, 30, 2)),
                x2,
                (x2[:, 0] > 0).astype(int),
                rng.normal(0, 1e-4, 60),
                rng.random(60) < 0.1,
                "self-influence",
            ),
            FULL,
        ),
    ]
    return figures


FIGURES = None


def _figures():
    global FIGURES
    if FIGURES is None:
        FIGURES = all_figures()
    return FIGURES


# ------------------------------------------------------------------ the checks


def test_the_checker_sees_labels_drawn_over_each_other():
    """The estimate itself: two labels at one point overlap; a title in a 40-px top margin sits on subplot titles."""
    import plotly.express as px
    from plotly.subplots import make_subplots

    crowded = px.scatter(x=[1e-4, 1e-4, 1.0], y=[0.31, 0.31, 0.9], text=["tracin", "ip", "magic"], log_x=True)
    crowded.update_traces(textposition="top center")
    assert any("'tracin' overlaps text label 'ip'" in p for p in layout_problems(crowded, 320))
    titled = make_subplots(rows=1, cols=2, subplot_titles=["5 of 1,257 labels flipped (0.40%)", "1 of 1,257 labels flipped (0.08%)"])
    titled.update_layout(title="Cook's-distance ranking of flipped labels", margin=dict(t=40))
    assert any(p.startswith("title") and "overlaps annotation" in p for p in layout_problems(titled, 820))
    apart = px.scatter(x=[1e-4, 1e-2, 1.0], y=[0.31, 0.6, 0.9], text=["a", "b", "c"], log_x=True)
    assert not layout_problems(apart.update_layout(title="t", margin=dict(t=60)), 320)


@pytest.mark.parametrize("index", range(27))
def test_no_text_is_drawn_over_other_text_or_leaves_the_figure(index):
    """Every figure at both widths it is drawn at: no two of its texts overlap, none leaves the figure (the Trust
    cost scatter's labels sat on each other where IP and TracIn score alike; the mislabel ROC study's title sat on its
    subplot titles)."""
    figures = _figures()
    assert len(figures) == 27
    name, fig, widths = figures[index]
    problems = {width: layout_problems(fig, width) for width in widths}
    assert not any(problems.values()), f"{name}: {problems}"


def test_no_axis_writes_small_numbers_with_si_prefixes():
    """Scores of 1e-4, seconds of 1e-4 and false-positive rates of 1e-4 read 100µ with plotly's default exponent format:
    every axis of every figure chooses a format a reader reads (1e−4, 10⁻⁴, or its own tickformat)."""
    bad = {name: si_prefixed_axes(fig) for name, fig, _ in _figures()}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_trust_cost_keeps_every_method_visible_where_points_coincide():
    """IP and TracIn at the same LDS and cost: each method its own legend entry, colour and symbol, and the later of
    two coinciding markers drawn smaller, inside the earlier one (a label per point wrote one name over the other)."""
    from influence_core.figures.trust import cost_figure

    fig = cost_figure(_trust_table())
    names = [t.name for t in fig.data]
    assert names == list(_trust_table()["method"])
    assert all("text" not in (t.mode or "") for t in fig.data)
    styles = {(t.marker.color, t.marker.symbol) for t in fig.data}
    assert len(styles) == len(names)
    size = {t.name: t.marker.size for t in fig.data}
    assert size["tracin"] > size["ip"] and size["influence@exact"] > size["influence@ekfac"] > size["influence@last_layer"]
    assert size["magic"] == size["trak"] == 11  # alone: the plain size


def test_one_number_format_per_column():
    """A column writes its numbers alike: "+1.25e+03" beside "+852" (Python's .3g) and 1.8e+10 beside 852 (%.3g) did
    not; fixed decimals where every value then shows a digit, scientific notation for all where not."""
    from influence_core.figures import number_format

    def shown(values, signed=False):
        spec = number_format(values, signed)
        return [format(v, spec) for v in values]

    assert shown([1250.0, 852.0, -3.5], signed=True) == ["+1250", "+852", "-4"]  # 3 significant digits on the largest
    assert shown([0.5, 0.012]) == ["0.500", "0.012"]
    big = shown([1.8e10, 852.0, 3e-4])
    assert big == ["1.80e+10", "8.52e+02", "3.00e-04"], big
    assert shown([3.0, 12.0]) == ["3", "12"]
    assert shown([0.5, 0.00002]) == ["5.00e-01", "2.00e-05"]  # fixed would write 0.000
    assert number_format([1.8e10, 852.0], printf=True) == "%.2e"


def test_region_cut_captions_write_their_numbers_alike():
    """A gallery's captions compare: Σ Cook and each fixed input in one format whatever the cut ("Σ Cook 1.23e+03"
    above "Σ Cook 852", "rho = 6e+04" with .3g)."""
    from influence_core.figures.regions import cut_title

    study, cut = _cut_fakes()
    cut.axes = (1, 2)
    captions = []
    for total, rho in ((1234.0, 60000.0), (852.0, 852.25)):
        cut.total_influence, cut.center_raw = total, np.array([rho, 0.5, 1.2])
        captions.append(cut_title(study, cut))
    assert captions == ["rho = 60000 · Σ Cook 1.23e+03 · 3.1% disagree", "rho = 852 · Σ Cook 8.52e+02 · 3.1% disagree"], captions


def test_no_title_sits_under_the_modebar():
    """Plotly's modebar (the toolbar on hover, top right, ~2–24 px from the top) covered titles placed in the middle
    of a 30–50 px top margin, a long title in a narrow column all the way: every title starts below its band, and the
    figure keeps its plot's room (the band is added to the top margin, not taken from the plot)."""
    import plotly.graph_objects as go

    from influence_core.figures.common import MODEBAR_PX, readable_axes

    under = {}
    for name, fig, widths in _figures():
        for width in widths:
            boxes, _ = text_boxes(fig, width)
            tops = [box[1] for kind, _, box in boxes if kind == "title"]
            if tops and tops[0] < MODEBAR_PX - 0.5:
                under[f"{name} at {width} px"] = round(tops[0], 1)
    assert not under, under
    plain = readable_axes(go.Figure(layout=dict(title="t", height=300, margin=dict(t=40))))
    assert plain.layout.margin.t - 40 == plain.layout.height - 300 > 0  # the plot keeps its height
