"""Figures of judge results, drawn from saved score stores (`interp.eval.agreement`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from interp.eval.agreement import THRESHOLD, paired
from interp.figures.style import PALETTE, style


def agreement_scatter(
    sources: Sequence[str | Path] | Mapping[str, pd.DataFrame], threshold: float = THRESHOLD
) -> go.Figure:
    """Scores of the first judge (x) against each other judge (y), one point per shared item.

    The dashed diagonal is perfect agreement; dotted lines mark the kappa threshold. Items a
    judge gave no score are left out of its series (the legend gives n and Pearson's r).
    """
    table = paired(sources)
    first, others = table.columns[0], list(table.columns[1:])
    fig = go.Figure()
    for i, other in enumerate(others):
        both = table[[first, other]].dropna()
        r = both[first].corr(both[other]) if len(both) > 2 else float("nan")
        fig.add_trace(
            go.Scatter(
                x=both[first],
                y=both[other],
                mode="markers",
                name=f"{other} (n={len(both)}, r={r:.2f})",
                marker={"color": PALETTE[i % len(PALETTE)], "size": 9, "opacity": 0.65},
                text=list(both.index),
                hovertemplate="item %{text}<br>x %{x:.1f}<br>y %{y:.1f}<extra></extra>",
            )
        )
    grey = {"color": "#999", "width": 1}
    fig.add_shape(type="line", x0=0, y0=0, x1=100, y1=100, line={**grey, "dash": "dash"})
    fig.add_vline(x=threshold, line={**grey, "dash": "dot"})
    fig.add_hline(y=threshold, line={**grey, "dash": "dot"})
    fig.update_xaxes(range=[-3, 103])
    fig.update_yaxes(range=[-3, 103])
    y_title = f"{others[0]} score (0–100)" if len(others) == 1 else "other judge's score (0–100)"
    return style(
        fig,
        f"Judge agreement: {first} vs {', '.join(map(str, others))}",
        f"{first} score (0–100)",
        y_title,
        subtitle=(
            f"one point per item both judges scored; dashed: y = x; dotted: threshold "
            f"{threshold:g} (Cohen's kappa)"
        ),
    )
