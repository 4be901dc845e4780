"""Persona figures, drawn from saved results (never from a live run)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import pearsonr

from interp.figures.style import PALETTE, style


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    return (
        frame.groupby(["layer", "coef"])
        .agg(
            trait=("trait", "mean"),
            trait_sem=("trait", "sem"),
            coherence=("coherence", "mean"),
            coherence_sem=("coherence", "sem"),
            n=("text", "size"),
        )
        .reset_index()
    )


def steering(path: str | Path, gate: float | None = 75.0, title: str | None = None) -> go.Figure:
    """Trait score vs coefficient, one line per layer; coherence in a second panel.

    `path` is a `steering_scores.jsonl` written by `persona.select.steering_sweep`.
    """
    frame = pd.read_json(path, lines=True)
    if frame.empty:
        raise ValueError(f"{path} has no rows; run the steering sweep first")
    table = _summary(frame)
    scale = str(frame["scale"].iloc[0])
    trait = str(frame["trait_name"].iloc[0])
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=(f"{trait} score", "coherence"), horizontal_spacing=0.1
    )
    for i, (layer, rows) in enumerate(table.groupby("layer", sort=True)):
        rows = rows.sort_values("coef")
        color = PALETTE[i % len(PALETTE)]
        for col, column in ((1, "trait"), (2, "coherence")):
            fig.add_trace(
                go.Scatter(
                    x=rows["coef"],
                    y=rows[column],
                    error_y={"type": "data", "array": rows[f"{column}_sem"], "thickness": 1},
                    mode="lines+markers",
                    name=f"block {layer}",
                    legendgroup=f"block {layer}",
                    showlegend=col == 1,
                    line={"color": color},
                ),
                row=1,
                col=col,
            )
    if gate is not None:
        fig.add_hline(
            y=gate,
            line={"dash": "dash", "color": "#444", "width": 1.5},
            annotation_text=f"gate {gate:g}",
            annotation_position="top right",
            row=1,
            col=2,
        )
    steered = table[table["coef"] != 0.0]["n"]
    base = table[table["coef"] == 0.0]["n"]
    counts = f"n = {int(steered.max()) if len(steered) else 0} per steered point"
    if len(base):
        counts += f", {int(base.max())} unsteered (shared)"
    x_title = f"coefficient ({scale})"
    if scale != "raw":  # the paper's raw coefficients for comparison: raw = coef × factor
        moved = frame[frame["coef"] != 0.0]
        factors = (moved["raw_coef"] / moved["coef"]).groupby(moved["layer"]).first()
        x_title += (
            "<br><sup>raw = coef × "
            + ", ".join(f"{factor:.3g} (block {layer})" for layer, factor in factors.items())
            + "</sup>"
        )
    style(
        fig,
        title or f"Steering with the {trait} persona vector",
        x_title,
        "mean score (0-100)",
        subtitle=f"{counts}; mean ± s.e.m.; dashed: coherence gate",
    )
    fig.update_xaxes(title_text=f"coefficient ({scale})", col=2)
    fig.update_xaxes(title_text=x_title, col=1)
    fig.update_layout(legend={"y": -0.3}, margin={"b": 170})
    fig.update_yaxes(range=[-2, 102])
    return fig


def monitor(path: str | Path, title: str | None = None) -> go.Figure:
    """Projection of the last prompt token vs the reply's trait score, one panel per experiment.

    `path` is a `monitor_scores.jsonl` written by `persona.monitor.run_monitor`; points are
    coloured by condition (system prompt level, or number of shots).
    """
    frame = pd.read_json(path, lines=True).dropna(subset=["trait"])
    if frame.empty:
        raise ValueError(f"{path} has no scored rows; run the monitor first")
    trait = str(frame["trait_name"].iloc[0])
    layer = int(frame["layer"].iloc[0])
    experiments = [e for e in ("system", "many-shot") if e in set(frame["experiment"])]
    names = {"system": "system prompts (0 = most suppressing)", "many-shot": "many-shot (shots)"}
    parts = {e: frame[frame["experiment"] == e] for e in experiments}
    titles = []
    for e, part in parts.items():
        defined = (
            len(part) >= 3 and part["projection"].nunique() > 1 and part["trait"].nunique() > 1
        )
        r = float(pearsonr(part["projection"], part["trait"]).statistic) if defined else None
        titles.append(names[e] + (f"<br>r = {r:.2f}, n = {len(part)}" if r is not None else ""))
    fig = make_subplots(rows=1, cols=len(experiments), subplot_titles=titles)
    for col, (experiment, part) in enumerate(parts.items(), start=1):
        for i, (level, rows) in enumerate(part.groupby("level", sort=True)):
            label = f"{int(level)} shots" if experiment == "many-shot" else f"prompt {int(level)}"
            fig.add_trace(
                go.Scatter(
                    x=rows["projection"],
                    y=rows["trait"],
                    mode="markers",
                    name=label,
                    marker={"color": PALETTE[i % len(PALETTE)], "size": 8, "opacity": 0.8},
                    legendgroup=experiment,
                    legendgrouptitle_text=experiment if i == 0 else None,
                ),
                row=1,
                col=col,
            )
    style(
        fig,
        title or f"Monitoring {trait}: projection before the reply vs the reply's score",
        f"last prompt token · v̂ (block {layer})",
        f"{trait} score of the reply",
        subtitle="each point: one reply; r: Pearson's r over the panel's replies",
    )
    # the conditions' legend beside the panels, where it cannot cover the axis titles
    fig.update_layout(
        width=1100,
        height=650,
        legend={
            "orientation": "v",
            "x": 1.02,
            "y": 1.05,
            "yanchor": "top",
            "font": {"size": 10},
            "tracegroupgap": 4,
        },
        margin={"r": 160, "b": 90, "t": 130},
    )
    return fig


def screening(paths: list[str | Path], title: str | None = None) -> go.Figure:
    """Sample-level ΔP per dataset (`delta_p_<name>.jsonl` files from `persona.screen`)."""
    fig = go.Figure()
    for i, path in enumerate(paths):
        frame = pd.read_json(path, lines=True)
        if frame.empty:
            raise ValueError(f"{path} has no rows")
        fig.add_trace(
            go.Box(
                y=frame["delta_p"],
                name=str(frame["dataset"].iloc[0]),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 5},
            )
        )
    style(
        fig,
        title or "Projection difference ΔP per training sample",
        "dataset",
        "ΔP (training response − own response, on v̂)",
    )
    return fig
