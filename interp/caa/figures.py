"""CAA figures, drawn from the saved A/B sweep results."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from interp.figures.plots import layer_lines, model_names
from interp.figures.style import style


def caa_ab_curves(path: str | Path) -> go.Figure:
    """CAA A/B steering effect: change in p(behaviour-matching letter) vs multiplier.

    The change is taken per question against the same question unsteered (multiplier 0) under
    the same configuration (vector, model, system prompt), so the bars (±1 paired standard
    error over questions) show the uncertainty of the effect itself. Records that differ in
    anything besides the question (e.g. two vectors for one behaviour) are separate lines.
    """
    from plotly.subplots import make_subplots

    from interp.eval.metrics import hashable, series_columns
    from interp.runs.store import load_frame

    frame = load_frame(path)
    config = [c for c in frame.columns if c.startswith("config.") and c != "config.multiplier"]
    keyed = frame.assign(**{c: hashable(frame[c]) for c in config})
    base = keyed[keyed["config.multiplier"] == 0].set_index(config)["p_match"]
    if not base.index.is_unique:
        raise ValueError(f"{path} holds an unsteered cell twice; it is not one CAA A/B sweep")
    keyed = keyed.join(base.rename("p_base"), on=config)
    keyed["delta"] = keyed["p_match"] - keyed["p_base"]
    facets = ["config.behaviour", "config.layer", "config.multiplier"]
    series = series_columns(keyed, facets)
    behaviours = sorted(keyed["config.behaviour"].unique())
    fig = make_subplots(rows=1, cols=len(behaviours), subplot_titles=behaviours, shared_yaxes=True)
    for c, behaviour in enumerate(behaviours, start=1):
        rows = keyed[keyed["config.behaviour"] == behaviour]
        table = rows.groupby([*series, "config.layer", "config.multiplier"], dropna=False)["delta"]
        table = table.agg(["mean", "sem", "count"]).reset_index().fillna({"sem": 0.0})
        layer_lines(fig, table, "config.multiplier", 1, c, show_legend=c == 1, series=series)
        fig.add_hline(y=0, line={"color": "#999", "dash": "dot"}, row=1, col=c)
    n_items = keyed.groupby("config.behaviour")["config.question"].nunique().min()
    fig = style(
        fig,
        "CAA: change in p(behaviour-matching answer) under steering",
        "multiplier",
        "Δ p(matching letter) vs unsteered",
        subtitle=f"{model_names(frame)}; {n_items} held-out A/B questions per behaviour; "
        "bars: ±1 paired s.e. over questions",
    )
    fig.update_layout(width=1100)
    fig.update_xaxes(title_text="multiplier (× CAA vector)")
    return fig
