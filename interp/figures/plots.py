"""Figures of the core data path (residual norms, steering sweeps), drawn from saved results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch

from interp.capture import Activations
from interp.figures.style import PALETTE, style


def residual_norms(path: str | Path) -> go.Figure:
    """Mean residual-stream norm by layer for prompt, response and first tokens (log scale)."""
    acts = Activations.load(path)
    model = acts.meta.get("model", "model")
    fig = go.Figure()
    labels = {
        "first_norm": "first token (attention sink)",
        "prompt_norm": "prompt tokens (first excluded)",
        "response_norm": "response tokens",
    }
    for name, label in labels.items():
        if name not in acts.reductions:
            continue
        norms: torch.Tensor = acts.get(name)  # [example, layer]
        mean, low, high = norms.mean(0), norms.min(0).values, norms.max(0).values
        fig.add_trace(
            go.Scatter(
                x=acts.layers,
                y=mean.tolist(),
                name=label,
                mode="lines+markers",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (high - mean).tolist(),
                    "arrayminus": (mean - low).tolist(),
                    "thickness": 1,
                },
            )
        )
    fig.update_yaxes(type="log", dtick=1)  # one tick per power of ten
    return style(
        fig,
        f"Residual-stream norm by layer — {model}",
        "block (resid_post; 0-based TransformerLens index)",
        "mean L2 norm (log scale)",
        subtitle=f"{acts.n_examples} chat examples; markers: mean over examples, bars: min–max",
    )


def series_label(names: Sequence[str], values: Sequence[Any]) -> str:
    """Short legend text for one configuration: 'vector=1f2e3d4c5b6a, temperature=0.7'."""
    parts = []
    for name, value in zip(names, values, strict=True):
        text = str(value)
        short = text[:12] + "…" if len(text) > 13 else text
        parts.append(f"{name.removeprefix('config.')}={short}")
    return ", ".join(parts)


def layer_lines(
    fig: go.Figure,
    table: Any,
    x: str,
    row: int | None = None,
    col: int | None = None,
    show_legend: bool = True,
    series: Sequence[str] = (),
    line: str = "config.layer",
) -> None:
    """One line per configuration (`series` columns) and layer: mean with standard-error bars."""
    for i, (keys, rows) in enumerate(table.groupby([*series, line], sort=True)):
        *config, layer = keys
        name = f"block {layer}"
        if series:
            name += f" ({series_label(series, config)})"
        rows = rows.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=rows[x],
                y=rows["mean"],
                error_y={"type": "data", "array": rows["sem"], "thickness": 1},
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": PALETTE[i % len(PALETTE)]},
                showlegend=show_legend,
            ),
            row=row,
            col=col,
        )


def model_names(frame: Any) -> str:
    """The model name(s) of a results frame (a plain field now; `config.model` before)."""
    column = "model" if "model" in frame else "config.model"
    return ", ".join(sorted({str(m) for m in frame[column].dropna()})) if column in frame else "?"


def steering_curve(path: str | Path, metric: str) -> go.Figure:
    """A metric of steered generations against the steering coefficient, one line per block.

    Records that differ in anything besides prompt and sample (vector, decoding settings,
    scorer, model) are drawn as separate lines, never averaged together.
    """
    from interp.eval.metrics import label, summarize
    from interp.runs.store import load_frame

    frame = load_frame(path)
    table = summarize(frame, metric)
    fixed = ("config.layer", "config.coef", "mean", "sem", "count")
    series = [c for c in table.columns if c not in fixed]
    fig = go.Figure()
    layer_lines(fig, table, "config.coef", series=series)
    n = int(table["count"].max()) if len(table) else 0
    fig.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    return style(
        fig,
        f"Steering sweep — {metric} vs coefficient",
        "steering coefficient (multiple of the vector)",
        label(metric),
        subtitle=f"{model_names(frame)}; up to {n} generations per point; bars: ±1 standard error",
    )
