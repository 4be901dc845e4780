"""CAA figures, drawn from the saved A/B sweep results."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from interp.figures.plots import layer_lines
from interp.figures.style import style


def caa_ab_curves(path: str | Path) -> go.Figure:
    """CAA A/B steering effect: change in p(behaviour-matching letter) vs multiplier.

    The change is taken per question against the same question unsteered (multiplier 0), so
    the bars (±1 paired standard error over questions) show the uncertainty of the effect itself.
    """
    from plotly.subplots import make_subplots

    from interp.runs.store import load_frame

    frame = load_frame(path)
    keys = ["config.behaviour", "config.layer", "config.question"]
    base = frame[frame["config.multiplier"] == 0].set_index(keys)["p_match"]
    frame = frame.join(base.rename("p_base"), on=keys)
    frame["delta"] = frame["p_match"] - frame["p_base"]
    behaviours = sorted(frame["config.behaviour"].unique())
    fig = make_subplots(rows=1, cols=len(behaviours), subplot_titles=behaviours, shared_yaxes=True)
    for c, behaviour in enumerate(behaviours, start=1):
        rows = frame[frame["config.behaviour"] == behaviour]
        table = rows.groupby(["config.layer", "config.multiplier"])["delta"]
        table = table.agg(["mean", "sem", "count"]).reset_index().fillna({"sem": 0.0})
        layer_lines(fig, table, "config.multiplier", 1, c, show_legend=c == 1)
        fig.add_hline(y=0, line={"color": "#999", "dash": "dot"}, row=1, col=c)
    model = frame["config.model"].iloc[0]
    n_items = frame.groupby("config.behaviour")["config.question"].nunique().min()
    fig = style(
        fig,
        "CAA: change in p(behaviour-matching answer) under steering",
        "multiplier",
        "Δ p(matching letter) vs unsteered",
        subtitle=f"{model}; {n_items} held-out A/B questions per behaviour; "
        "bars: ±1 paired s.e. over questions",
    )
    fig.update_layout(width=1100)
    fig.update_xaxes(title_text="multiplier (× CAA vector)")
    return fig
