"""Plotly figures for the views, kept out of the computing modules (no streamlit here: pages only place them).

``common`` holds the palettes and the figures several views share; each study's own figures sit in a
module named after it (``figures.label_bias``, ``figures.regions``, ``figures.mislabel_roc``), imported
on demand so a page pays only for the study it shows.
"""

from influence_core.figures.common import (
    CLASS_COLOURS,
    HARMFUL,
    HELPFUL,
    NEUTRAL,
    SIGN_COLOURSCALE,
    SIGN_LEGEND,
    TABLE_IN_BOX_PX,
    TABLE_PX,
    class_colourscale,
    column_widths,
    decision_region_figure,
    epochs_figure,
    legend_below,
    marker_sizes,
    number_format,
    readable_axes,
    retraining_check_figure,
    sign_note,
    wrap_text,
)

__all__ = [
    "CLASS_COLOURS",
    "HARMFUL",
    "HELPFUL",
    "NEUTRAL",
    "SIGN_COLOURSCALE",
    "SIGN_LEGEND",
    "class_colourscale",
    "TABLE_IN_BOX_PX",
    "TABLE_PX",
    "column_widths",
    "decision_region_figure",
    "epochs_figure",
    "legend_below",
    "marker_sizes",
    "number_format",
    "readable_axes",
    "retraining_check_figure",
    "sign_note",
    "wrap_text",
]
