"""Introspection figures (Lindsey 2025; papers.md §2.3-2.7), drawn from saved results only.

Each function takes the path of a saved results file (or a frame read from one) and returns a
plotly figure in the house style:

- `heatmaps`: block × strength grid of one detection metric (success, false positives, net,
  influence), one panel per injection scale, each cell annotated with its rate and its n;
- `influence_by_layer`: influence rate against the block, one line per strength, 95% bootstrap
  bars;
- `concept_bars`: success and influence per concept, pooled over the grid, with 95% bars;
- `intent_traces`: intentional control, cosine with the concept vector by block for "think
  about" and "don't think about", with bands, against the control-word baseline band;
- `logit_beside_success`: the judge-free logit score beside the graded success, block ×
  strength.

`draw_all(results, figures)` draws every figure whose results file is in a results directory
laid out as `interp inject` and `experiments/introspection.py` write it (`FILES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.figures.style import PALETTE, save_figure, style
from interp.introspection.metrics import LABELS, cell_rates, concept_rates, load_graded

Source: TypeAlias = str | Path | pd.DataFrame
# results directory layout: what each figure is drawn from
FILES = {
    "graded": "graded.jsonl",
    "intent": "intent.csv",
    "logit": "logit_scores.csv",
}
RATE_SCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]
DIVERGING = "RdBu"
_FIG_METRICS = ("success", "false_positive", "net", "influence", "detection", "coherence")


def graded_frame(source: Source) -> pd.DataFrame:
    """The graded trials of `source` (a graded.jsonl / graded.csv path, or such a frame)."""
    return source if isinstance(source, pd.DataFrame) else load_graded(source)


def _frame(source: Source, what: str) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no {what} file at {path}")
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, lines=True)
    if frame.empty:
        raise ValueError(f"the {what} results are empty; nothing to draw")
    return frame


def _lead(frame: pd.DataFrame, model: str | None) -> str:
    """'<model>; ' for a subtitle: `model` as given, else the frame's model column, else ''."""
    if model:
        return f"{model}; "
    for column in ("model", "config.model"):
        if column in frame:
            names = sorted({str(m) for m in frame[column].dropna()})
            if names:
                return ", ".join(names) + "; "
    return ""


def _block_label(layer: Any, fraction: Any) -> str:
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return f"block {int(layer)}"
    return f"block {int(layer)} ({float(fraction):.2f})"


def _strength_label(strength: Any) -> str:
    return f"{float(strength):g}"


def _scales(frame: pd.DataFrame) -> list[str]:
    return sorted(map(str, frame["scale"].unique())) if "scale" in frame else [""]


def _grid(
    table: pd.DataFrame, value: str, text: list[str] | None = None
) -> tuple[list[str], list[str], list[list[float]], list[list[str]]]:
    """(x labels, y labels, z, annotations) of a block × strength table, blocks from the top."""
    layers = (
        table[["layer", "fraction"]].drop_duplicates().sort_values("layer")
        if "fraction" in table
        else table[["layer"]].drop_duplicates().sort_values("layer").assign(fraction=np.nan)
    )
    strengths = sorted(table["strength"].unique())
    xs = [_strength_label(s) for s in strengths]
    ys = [_block_label(r.layer, r.fraction) for r in layers.itertuples()]
    z: list[list[float]] = []
    notes: list[list[str]] = []
    for layer in layers["layer"]:
        zrow, nrow = [], []
        for strength in strengths:
            hit = table[(table["layer"] == layer) & (table["strength"] == strength)]
            if hit.empty:
                zrow.append(math.nan)
                nrow.append("")
                continue
            cell = hit.iloc[0]
            zrow.append(float(cell[value]))
            nrow.append(text[int(hit.index[0])] if text is not None else f"{cell[value]:.2f}")
        z.append(zrow)
        notes.append(nrow)
    return xs, ys, z, notes


def _n_column(metric: str) -> str:
    return "n_control" if metric == "false_positive" else "n_injected"


def heatmaps(
    source: Source, metric: str = "success", *, model: str | None = None, seed: int = 0
) -> go.Figure:
    """Block × strength heatmap of `metric` (a rate of `metrics.METRICS`), one panel per
    injection scale; each cell shows the rate and its number of trials."""
    if metric not in _FIG_METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(_FIG_METRICS)}")
    frame = graded_frame(source)
    table = cell_rates(frame, seed=seed).reset_index(drop=True)
    scales = _scales(table)
    fig = make_subplots(
        rows=1,
        cols=len(scales),
        subplot_titles=[f"scale: {s}" for s in scales] if len(scales) > 1 else None,
        horizontal_spacing=0.12,
    )
    n_col = _n_column(metric)
    signed = metric == "net"
    for col, scale in enumerate(scales, start=1):
        part = table[table["scale"] == scale] if "scale" in table else table
        if metric == "net":
            text = [
                f"{r.net:+.2f}<br>n={int(r.n_injected)}+{int(r.n_control)}"
                for r in table.itertuples()
            ]
        else:
            text = [
                f"{getattr(r, metric):.2f}<br>n={int(getattr(r, n_col))}"
                for r in table.itertuples()
            ]
        xs, ys, z, notes = _grid(part, metric, text)
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=z,
                text=notes,
                texttemplate="%{text}",
                zmin=-1.0 if signed else 0.0,
                zmax=1.0,
                zmid=0.0 if signed else None,
                colorscale=DIVERGING if signed else RATE_SCALE,
                showscale=col == len(scales),
                colorbar={"title": {"text": "rate"}},
                hovertemplate="%{y}, strength %{x}<br>%{text}<extra></extra>",
                name=scale or metric,
            ),
            row=1,
            col=col,
        )
    which = "control" if metric == "false_positive" else "injected"
    subtitle = f"{_lead(frame, model)}each cell: rate over its {which} trials, n = trials"
    if metric == "net":
        subtitle = (
            f"{_lead(frame, model)}each cell: success − false-positive rate; n = injected + control"
        )
    fig = style(
        fig,
        f"Injected-thought detection: {LABELS[metric]}",
        "injection strength (multiple; raw scale: × concept vector)",
        "injection block (depth fraction)",
        subtitle=subtitle,
    )
    _panels(fig, len(scales))
    fig.update_layout(width=max(700, 520 * len(scales)))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def _pooled_baseline(rows: pd.DataFrame) -> pd.Series:
    """The uninjected mention rate of one block's cells, pooled over strengths."""
    n = rows["n_baseline"]
    return pd.Series(
        {"influence_baseline": float((rows["influence_baseline"] * n).sum() / n.sum())}
    )


def influence_by_layer(source: Source, *, model: str | None = None, seed: int = 0) -> go.Figure:
    """Influence rate against the injection block, one line per strength, one panel per scale;
    bars: 95% bootstrap interval over the cell's injected trials."""
    frame = graded_frame(source)
    table = cell_rates(frame, seed=seed)
    scales = _scales(table)
    fig = make_subplots(
        rows=1,
        cols=len(scales),
        subplot_titles=[f"scale: {s}" for s in scales] if len(scales) > 1 else None,
        shared_yaxes=True,
    )
    strengths = sorted(table["strength"].unique())
    for col, scale in enumerate(scales, start=1):
        part = table[table["scale"] == scale] if "scale" in table else table
        for i, strength in enumerate(strengths):
            rows = part[part["strength"] == strength].sort_values("layer")
            if rows.empty:
                continue
            name = f"strength {_strength_label(strength)}"
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows["influence"],
                    error_y=_bars(rows, "influence"),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": PALETTE[i % len(PALETTE)]},
                    customdata=rows["n_injected"],
                    hovertemplate="block %{x}: %{y:.2f} (n=%{customdata})<extra></extra>",
                ),
                row=1,
                col=col,
            )
        if "influence_baseline" in part and part["n_baseline"].gt(0).any():
            # uninjected: control replies graded against the concepts of their cell
            rows = part[part["n_baseline"] > 0].groupby("layer", as_index=False)
            base = rows.apply(_pooled_baseline, include_groups=False).sort_values("layer")
            fig.add_trace(
                go.Scatter(
                    x=base["layer"],
                    y=base["influence_baseline"],
                    mode="lines",
                    name="no injection (controls)",
                    legendgroup="baseline",
                    showlegend=col == 1,
                    line={"color": "grey", "dash": "dot"},
                    hovertemplate="block %{x}: %{y:.2f} uninjected<extra></extra>",
                ),
                row=1,
                col=col,
            )
    n = int(table["n_injected"].max())
    fig = style(
        fig,
        "Influence by injection block: the concept shows up in the reply",
        "injection block (0-based)",
        "influence rate (share of injected trials)",
        subtitle=(
            f"{_lead(frame, model)}up to {n} injected trials per point; bars: 95% bootstrap CI"
        ),
    )
    fig.update_yaxes(range=[-0.03, 1.03])
    _panels(fig, len(scales))
    fig.update_layout(width=max(900, 520 * len(scales)))
    return fig


def _panels(fig: go.Figure, n: int) -> None:
    """Side-by-side panels: the y title on the first only, room for the panel titles."""
    if n > 1:
        for col in range(2, n + 1):
            fig.update_yaxes(title_text="", row=1, col=col)
        fig.update_layout(margin={"t": 140})


def _bars(rows: pd.DataFrame, name: str) -> dict[str, Any]:
    """Asymmetric error bars from `<name>_low` / `<name>_high` (none where NaN)."""
    high = (rows[f"{name}_high"] - rows[name]).fillna(0.0)
    low = (rows[name] - rows[f"{name}_low"]).fillna(0.0)
    return {
        "type": "data",
        "symmetric": False,
        "array": high.tolist(),
        "arrayminus": low.tolist(),
        "thickness": 1,
    }


def concept_bars(
    source: Source, scale: str | None = None, *, model: str | None = None, seed: int = 0
) -> go.Figure:
    """Success and influence rate per concept, pooled over the scale's grid (default: "raw"
    when present), concepts ordered by influence; bars: 95% bootstrap intervals."""
    frame = graded_frame(source)
    table = concept_rates(frame, seed=seed)
    scales = _scales(table)
    chosen = scale if scale is not None else ("raw" if "raw" in scales else scales[0])
    if "scale" in table:
        if chosen not in scales:
            raise ValueError(f"no trials at scale {chosen!r}; the file has {', '.join(scales)}")
        table = table[table["scale"] == chosen]
    table = table.sort_values(["influence", "success", "concept"], ascending=[False, False, True])
    fig = go.Figure()
    for i, name in enumerate(("success", "influence")):
        fig.add_trace(
            go.Bar(
                x=table["concept"],
                y=table[name],
                error_y=_bars(table, name),
                name=LABELS[name],
                marker={"color": PALETTE[i]},
                customdata=table[f"{name}_k"],
                hovertemplate="%{x}: %{y:.2f} (%{customdata} trials)<extra></extra>",
            )
        )
    n = int(table["n_injected"].max())
    fig = style(
        fig,
        "Detection and influence per concept",
        "concept (ordered by influence)",
        "rate (share of injected trials)",
        subtitle=(
            f"{_lead(frame, model)}scale {chosen}; each concept pooled over the grid ({n} injected "
            "trials); bars: 95% bootstrap CI"
        ),
    )
    fig.update_layout(
        barmode="group",
        width=max(900, 28 * len(table) + 200),
        # above the plot: rotated concept names leave no room below
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        margin={"t": 150},
    )
    fig.update_xaxes(tickangle=-60)
    fig.update_yaxes(range=[0, 1.03])
    return fig


def save_all(
    figures: Sequence[tuple[str, go.Figure]],
    out: str | Path,
    suffix: str = "",
    formats: Sequence[str] = ("html", "png"),
) -> list[Path]:
    """Save each (name, figure) as `introspection_<name><suffix>` in `out`."""
    written: list[Path] = []
    for name, fig in figures:
        written += save_figure(fig, out, f"introspection_{name}{suffix}", formats)
    return written


def draw_all(
    results: str | Path,
    out: str | Path,
    suffix: str = "",
    formats: Sequence[str] = ("html", "png"),
    model: str | None = None,
) -> list[Path]:
    """Draw every figure whose results file is in the directory `results` (`FILES`) into `out`,
    named `introspection_<figure><suffix>`; returns the files written."""
    root = Path(results)
    graded = root / FILES["graded"]
    if not graded.is_file():
        raise FileNotFoundError(
            f"no graded trials at {graded}: run `interp inject grade -o {root}` first"
        )
    frame = graded_frame(graded)
    figures = [
        ("success", heatmaps(frame, "success", model=model)),
        ("false_positives", heatmaps(frame, "false_positive", model=model)),
        ("influence", influence_by_layer(frame, model=model)),
        ("concepts", concept_bars(frame, model=model)),
    ]
    if (root / FILES["intent"]).is_file():
        figures.append(("intent", intent_traces(root / FILES["intent"], model=model)))
    if (root / FILES["logit"]).is_file():
        figures.append(("logit", logit_beside_success(root / FILES["logit"], frame, model=model)))
    return save_all(figures, out, suffix, formats)


INTENT_CONDITIONS = {"think": "“think about it”", "dont": "“don't think about it”"}


def intent_traces(source: Source, *, model: str | None = None) -> go.Figure:
    """Intentional control: cosine between the activation on the written sentence and the
    concept vector, by block, for "think about X" and "don't think about X" (mean over
    prompts, band: 95% bootstrap interval), against the control-word baseline (line: mean,
    band: the central share of the control words).

    `source` is the per-block table of `intent.summarize_intent` (saved as intent.csv): `layer`,
    per condition `c`, `c_low`, `c_high`, `c_n`, and `baseline`, `baseline_low`,
    `baseline_high`. Conditions beyond think/dont (incentive variants) are drawn too.
    """
    frame = _frame(source, "intentional-control").sort_values("layer")
    missing = [c for c in ("layer", "baseline", "baseline_low", "baseline_high") if c not in frame]
    conditions = [
        c[: -len("_low")]
        for c in frame.columns
        if c.endswith("_low") and c[: -len("_low")] not in ("baseline", "gap")
    ]
    if missing or not conditions:
        raise ValueError(
            f"the intentional-control results lack columns {missing or ['<condition>_low']}; "
            "save intent.summarize_intent's table"
        )
    fig = go.Figure()
    _band(fig, frame, "baseline", "#999999", "control-word baseline", dash="dot")
    for i, condition in enumerate(conditions):
        label = INTENT_CONDITIONS.get(condition, condition)
        _band(fig, frame, condition, PALETTE[i % len(PALETTE)], label)
    counts = [int(frame[f"{c}_n"].max()) for c in conditions if f"{c}_n" in frame]
    n = f"; {max(counts)} prompts per condition" if counts else ""
    fig.update_xaxes(dtick=max(1, len(frame) // 10))
    return style(
        fig,
        "Intentional control: the concept's representation while writing",
        "block (0-based)",
        "cosine(activation on the sentence, concept vector)",
        subtitle=(
            f"{_lead(frame, model)}lines: mean, bands: 95% CI; grey: control words "
            f"(mean, central 95% of words){n}"
        ),
    )


def _band(
    fig: go.Figure, rows: pd.DataFrame, column: str, color: str, name: str, dash: str = "solid"
) -> None:
    """A line at `column` with a shaded band from `<column>_low` to `<column>_high`."""
    x = rows["layer"].tolist()
    fig.add_trace(
        go.Scatter(
            x=x + x[::-1],
            y=rows[f"{column}_high"].tolist() + rows[f"{column}_low"].tolist()[::-1],
            fill="toself",
            fillcolor=_alpha(color, 0.2),
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            legendgroup=name,
            name=f"{name} band",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=rows[column],
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line={"color": color, "dash": dash},
        )
    )


def _alpha(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def logit_beside_success(
    logit: Source,
    graded: Source,
    scale: str | None = None,
    value: str = "score",
    *,
    model: str | None = None,
) -> go.Figure:
    """The judge-free logit score (block × strength, left) beside the graded success rate of
    the same scale (right). The logit file holds one row per cell or per trial with `layer`,
    `strength` and `value` (cells with several rows show their mean)."""
    scores = _frame(logit, "logit-score")
    missing = [c for c in ("layer", "strength", value) if c not in scores]
    if missing:
        raise ValueError(f"the logit-score results lack columns {missing}")
    frame = graded_frame(graded)
    table = cell_rates(frame)
    scales = _scales(table)
    chosen = scale if scale is not None else ("raw" if "raw" in scales else scales[0])
    if "scale" in table:
        table = table[table["scale"] == chosen]
    if "scale" in scores:
        scores = scores[scores["scale"] == chosen]
        if scores.empty:
            raise ValueError(f"no logit scores at scale {chosen!r}")
    keys = ["layer", "fraction"] if "fraction" in scores else ["layer"]
    cells = scores.groupby([*keys, "strength"], as_index=False)[value].mean()
    cells = cells.reset_index(drop=True)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("judge-free logit score", "graded success (coherent ∧ identified)"),
        horizontal_spacing=0.2,
    )
    xs, ys, z, notes = _grid(cells, value)
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig.add_trace(
        go.Heatmap(
            x=xs,
            y=ys,
            z=z,
            text=notes,
            texttemplate="%{text}",
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorscale=DIVERGING,
            colorbar={"title": {"text": "score (nats)"}, "x": 0.42},
            name="logit score",
        ),
        row=1,
        col=1,
    )
    text = [f"{r.success:.2f}<br>n={int(r.n_injected)}" for r in table.itertuples()]
    xs, ys, z, notes = _grid(table.reset_index(drop=True), "success", text)
    fig.add_trace(
        go.Heatmap(
            x=xs,
            y=ys,
            z=z,
            text=notes,
            texttemplate="%{text}",
            zmin=0.0,
            zmax=1.0,
            colorscale=RATE_SCALE,
            colorbar={"title": {"text": "rate"}},
            name="success",
        ),
        row=1,
        col=2,
    )
    fig = style(
        fig,
        "Judge-free logit score beside the graded detection success",
        "injection strength (× concept vector)",
        "injection block (depth fraction)",
        subtitle=(
            f"{_lead(frame, model)}scale {chosen}; logit score: the (yes − no) log-odds shift of "
            "the detection question under injection,<br>minus the same shift on questions whose "
            "answer is no (≤ 0: injection pushes any answer towards yes alike)"
        ),
    )
    _panels(fig, 2)
    fig.update_layout(width=1300)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig
