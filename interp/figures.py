"""Figures in one house style, built from saved results and exported to HTML and static files.

Every figure function takes a path to saved results (never in-memory state), so a paper figure
can be redrawn without re-running a model. `save_figure` always writes HTML; PNG/SVG/PDF need a
Chromium for kaleido (Debian: `apt-get install chromium`, or set BROWSER_PATH to a Chrome
binary) and are skipped with a one-line hint when none is found.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.offline import get_plotlyjs

from interp.capture import Activations
from interp.io import inside

# Okabe–Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
FONT = "Inter, Helvetica Neue, Helvetica, Arial, sans-serif"
STATIC_FORMATS = ("png", "svg", "pdf")


def style(
    fig: go.Figure, title: str, x_title: str, y_title: str, subtitle: str | None = None
) -> go.Figure:
    """Apply the house style: white background, readable fonts, palette, labelled axes."""
    heading: dict[str, object] = {"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 20}}
    if subtitle:
        heading["subtitle"] = {"text": subtitle, "font": {"size": 14, "color": "#555"}}
    fig.update_layout(
        template="simple_white",
        title=heading,
        font={"family": FONT, "size": 15, "color": "#222"},
        colorway=PALETTE,
        legend={"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"},
        margin={"l": 80, "r": 30, "t": 100, "b": 130},
        width=900,
        height=600,
    )
    axis = {"showgrid": True, "gridcolor": "#eee", "ticks": "outside", "title_font": {"size": 15}}
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, **axis)
    return fig


def chromium_path() -> str | None:
    """The browser kaleido will use, or None when static export is unavailable."""
    given = os.environ.get("BROWSER_PATH")
    if given and Path(given).exists():
        return given
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def save_figure(
    fig: go.Figure, out_dir: str | Path, name: str, formats: Sequence[str] = ("html", "png")
) -> list[Path]:
    """Write `fig` as `out_dir/name.<format>`; returns the files written."""
    unknown = set(formats) - {"html", *STATIC_FORMATS}
    if unknown:
        raise ValueError(f"unknown figure formats {sorted(unknown)}; use html, png, svg or pdf")
    written = []
    if "html" in formats:
        html = inside(out_dir, f"{name}.html")
        html.parent.mkdir(parents=True, exist_ok=True)
        # One shared plotly.min.js beside the pages keeps each page small and viewable offline.
        script = html.parent / "plotly.min.js"
        if not script.exists():
            script.write_text(get_plotlyjs(), encoding="utf-8")
        fig.write_html(html, include_plotlyjs="directory")
        written.append(html)
    static = [inside(out_dir, f"{name}.{fmt}") for fmt in formats if fmt in STATIC_FORMATS]
    if not static:
        return written
    browser = chromium_path()
    if browser is None:
        print(
            f"[interp] wrote {name}.html only: static export (PNG/SVG/PDF) needs a Chromium. "
            "Install one (Debian/Ubuntu: sudo apt-get install chromium) or set BROWSER_PATH.",
            file=sys.stderr,
        )
        return written
    os.environ.setdefault("BROWSER_PATH", browser)
    pio.write_images(fig=[fig] * len(static), file=static, scale=2)
    return written + static


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


def _layer_lines(
    fig: go.Figure,
    table: Any,
    x: str,
    row: int | None = None,
    col: int | None = None,
    show_legend: bool = True,
) -> None:
    """One line per layer: mean with standard-error bars."""
    for i, (layer, rows) in enumerate(table.groupby(table.columns[0])):
        fig.add_trace(
            go.Scatter(
                x=rows[x],
                y=rows["mean"],
                error_y={"type": "data", "array": rows["sem"], "thickness": 1},
                mode="lines+markers",
                name=f"block {layer}",
                legendgroup=f"block {layer}",
                line={"color": PALETTE[i % len(PALETTE)]},
                showlegend=show_legend,
            ),
            row=row,
            col=col,
        )


def steering_curve(path: str | Path, metric: str) -> go.Figure:
    """A metric of steered generations against the steering coefficient, one line per block."""
    from interp.metrics import label, summarize
    from interp.results import load_frame

    frame = load_frame(path)
    table = summarize(frame, metric)
    fig = go.Figure()
    _layer_lines(fig, table, "config.coef")
    model = frame["config.model"].iloc[0]
    n = int(table["count"].max()) if len(table) else 0
    fig.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    return style(
        fig,
        f"Steering sweep — {metric} vs coefficient",
        "steering coefficient (multiple of the vector)",
        label(metric),
        subtitle=f"{model}; up to {n} generations per point; bars: ±1 standard error",
    )


def caa_ab_curves(path: str | Path) -> go.Figure:
    """CAA A/B steering effect: change in p(behaviour-matching letter) vs multiplier.

    The change is taken per question against the same question unsteered (multiplier 0), so
    the bars (±1 paired standard error over questions) show the uncertainty of the effect itself.
    """
    from plotly.subplots import make_subplots

    from interp.results import load_frame

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
        _layer_lines(fig, table, "config.multiplier", 1, c, show_legend=c == 1)
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
