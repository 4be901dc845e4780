"""Entity-recognition figures (Ferrando et al. 2025; papers.md §3), drawn from saved files only.

Each function takes a results directory laid out as `interp.entities.run` writes it (`FILES`),
or a frame read from the file it draws, and returns a plotly figure in the house style:

- `separation_by_layer`: held-out AUROC (known vs unknown real entities) of the
  difference-of-means direction by block, at the last entity token and at the token after it
  (bands: 95% CI; dashed: within strata of entity type × token count × word start), the
  tokenization-only baseline (line and band), the tokenization + entity type baseline
  (dash-dot), the within-strata null (the name's length only), and the best known / unknown SAE
  latent of each SAE block (markers, 95% bars); filled markers beat tokenization (the lower end
  of their interval is above the baseline); the note lists what beats each baseline;
- `top_latents`: a table of the top latents per SAE block and kind: separation (minimum over
  types and per type), density, held-out AUROC [95% CI], within-strata AUROC [95% CI], whether
  it beats tokenization and tokenization + type, and the entities it fires on most;
- `steering_curves`: refusal rate (left) and hallucination rate (right) against α for the
  unknown latent on known entities, the known latent on unknown and invented entities, random
  latents of the same block on the same groups (pooled line; band: the range of the latents' own
  rates), and the unsteered and orthogonalized runs at α = 0;
- `sure_logit`: the " Yes" − " No" logit difference after "Are you sure you know …?" against α,
  the same lines (means with 95% bootstrap intervals over entities; band: the range of the
  random latents' own means);
- `attention_heads`: block × head heatmaps of the change in attention from the final position
  to the last entity token when that token is steered (steered − unsteered): the unknown latent
  and random latents on known entities, the known latent and random latents on unknown ones,
  one diverging colour scale centred at 0.

`draw_all(results, figures, model_label)` saves every figure whose files exist as
`entities_<figure>_<model_label>.html` (+ PNG when a Chromium is found).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.entities.steering import pooled
from interp.eval.stats import mean_ci
from interp.figures.style import PALETTE, save_figure, style

Source: TypeAlias = str | Path | pd.DataFrame
# results directory layout: each file and the `interp entities` command that writes it
FILES = {
    "labels": "labels.csv",
    "layers": "layers.csv",
    "latents": "latents.csv",
    "tokenization": "tokenization.json",
    "chosen": "chosen.json",
    "steering": "steering_summary.csv",
    "sure": "sure.csv",
    "attention": "attention.csv",
    "meta": "steering_meta.json",
}
MADE_BY = {
    "labels": "label",
    "layers": "score",
    "latents": "score",
    "tokenization": "score",
    "chosen": "score",
    "steering": "steer",
    "sure": "steer",
    "attention": "steer",
    "meta": "steer",
}
POSITIONS = {"last": "last entity token", "after": "token after the entity"}
GROUP_COLORS = {"known": PALETTE[3], "unknown": PALETTE[0], "invented": PALETTE[4]}
GROUP_NAMES = {"known": "known entities", "unknown": "unknown entities", "invented": "invented"}
CONDITION_NAMES = {
    "known_latent": "known latent",
    "unknown_latent": "unknown latent",
    "random_known": "random latents (known latent's block)",
    "random_unknown": "random latents (unknown latent's block)",
    "none": "unsteered",
    "orthogonalized": "unknown direction orthogonalized",
}
# the (steering condition, entity group) pairs the paper reads; each gets random latents of its
# own SAE block, on the same group, as its baseline
PAIRS = (("unknown_latent", "known"), ("known_latent", "unknown"), ("known_latent", "invented"))
BASELINE = {"known_latent": "random_known", "unknown_latent": "random_unknown"}
DIVERGING = "RdBu"
SAE_SHIFT = 0.12  # the known / unknown latent markers of one block, set apart on the x axis


# -- reading -------------------------------------------------------------------------------
def _path(results: str | Path, name: str) -> Path:
    """`results` itself when it is a file, else the file `FILES[name]` in that directory."""
    path = Path(results)
    if path.is_dir():
        path = path / FILES[name]
    if not path.is_file():
        root = path.parent
        raise FileNotFoundError(
            f"no {FILES[name]} at {path}: run `interp entities {MADE_BY[name]} --out {root}` first"
        )
    return path


def _table(source: Source, name: str) -> pd.DataFrame:
    frame = source if isinstance(source, pd.DataFrame) else pd.read_csv(_path(source, name))
    if frame.empty:
        raise ValueError(f"the {FILES[name]} results are empty; nothing to draw")
    return frame


def _json(source: str | Path | Mapping[str, Any], name: str) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    data = json.loads(_path(source, name).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{FILES[name]} must hold one JSON object; re-run the stage")
    return data


def _optional(results: Source, name: str) -> Path | None:
    """The file `name` beside the results, when `results` is a directory holding it."""
    if isinstance(results, pd.DataFrame):
        return None
    path = Path(results)
    found = path / FILES[name] if path.is_dir() else path.parent / FILES[name]
    return found if found.is_file() else None


def _lead(model: str | None) -> str:
    return f"{model}; " if model else ""


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _alpha(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _bars(rows: pd.DataFrame, name: str) -> dict[str, Any]:
    """Asymmetric error bars from `<name>_low` / `<name>_high` (none where missing)."""
    if f"{name}_low" not in rows or f"{name}_high" not in rows:
        return {"visible": False}
    high = (rows[f"{name}_high"] - rows[name]).fillna(0.0).clip(lower=0.0)
    low = (rows[name] - rows[f"{name}_low"]).fillna(0.0).clip(lower=0.0)
    return {
        "type": "data",
        "symmetric": False,
        "array": high.tolist(),
        "arrayminus": low.tolist(),
        "thickness": 1.2,
    }


def _band(
    fig: go.Figure,
    x: Iterable[Any],
    low: Iterable[Any],
    high: Iterable[Any],
    color: str,
    name: str,
    **where: int,
) -> None:
    """A shaded band from `low` to `high` (no legend entry of its own)."""
    xs = list(x)
    fig.add_trace(
        go.Scatter(
            x=xs + xs[::-1],
            y=list(high) + list(low)[::-1],
            fill="toself",
            fillcolor=_alpha(color, 0.15),
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            legendgroup=name,
            name=f"{name} (95% CI)",
        ),
        **where,
    )


# -- a. separation by block ----------------------------------------------------------------
def separation_by_layer(
    results: Source,
    *,
    latents: Source | None = None,
    tokenization: str | Path | Mapping[str, Any] | None = None,
    model: str | None = None,
) -> go.Figure:
    """Held-out AUROC of known vs unknown (real) entities by block (module docstring).

    `results` is the results directory (layers.csv, and latents.csv / tokenization.json when
    present) or a layers frame; `latents` and `tokenization` override what the directory holds.
    """
    layers = _table(results, "layers")
    if latents is None:
        latents = _optional(results, "latents")
    if tokenization is None:
        tokenization = _optional(results, "tokenization")
    tokens = _json(tokenization, "tokenization") if tokenization is not None else None
    sae = _table(latents, "latents") if latents is not None else None

    fig = go.Figure()
    blocks = sorted(int(b) for b in layers["layer"].unique())
    span = [min(blocks) - 0.5, max(blocks) + 0.5]
    if sae is not None:
        sae_blocks = [int(b) for b in sae["layer"].unique()]
        span = [min(span[0], min(sae_blocks) - 0.5), max(span[1], max(sae_blocks) + 0.5)]
    fig.add_trace(
        go.Scatter(
            x=span,
            y=[0.5, 0.5],
            mode="lines",
            line={"color": "#bbbbbb", "width": 1, "dash": "dot"},
            name="chance (0.5)",
            hoverinfo="skip",
        )
    )
    # the baselines: (key in tokenization.json, legend name, line colour, width, dash)
    baselines = (
        ("auroc", "tokenization only", "#444444", 2.0, "dash"),
        ("surface_strata", "within strata, the name's length only", "#888888", 1.5, "longdashdot"),
        ("type_auroc", "tokenization + entity type", "#111111", 2.0, "dashdot"),
    )
    for key, name, color, width, dash in baselines:
        if tokens is None or not _finite(tokens.get(key)):
            continue
        value = float(tokens[key])
        if (
            key == "auroc"
            and _finite(tokens.get("auroc_low"))
            and _finite(tokens.get("auroc_high"))
        ):
            low, high = float(tokens["auroc_low"]), float(tokens["auroc_high"])
            _band(fig, span, [low, low], [high, high], "#666666", name)
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[value, value],
                mode="lines",
                line={"color": color, "width": width, "dash": dash},
                name=f"{name} (logistic regression): {value:.2f}",
                legendgroup=name,
                hovertemplate=f"{name}: {value:.3f}<extra></extra>",
            )
        )
    for i, (position, label) in enumerate(POSITIONS.items()):
        rows = layers[layers["position"] == position].sort_values("layer")
        if rows.empty:
            continue
        color = PALETTE[i]
        name = f"difference of means, {label}"
        _band(fig, rows["layer"], rows["auroc_low"], rows["auroc_high"], color, name)
        beats = rows["beats_tokens"].astype(bool) if "beats_tokens" in rows else None
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=rows["auroc"],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": color, "width": 2},
                marker={
                    "color": color,
                    "size": 7,
                    "symbol": (
                        ["circle" if b else "circle-open" for b in beats]
                        if beats is not None
                        else "circle"
                    ),
                },
                customdata=np.stack(
                    [rows["auroc_low"], rows["auroc_high"], rows["n_test"]], axis=-1
                ),
                hovertemplate=(
                    "block %{x}: AUROC %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}], "
                    "n=%{customdata[2]}<extra>" + label + "</extra>"
                ),
            )
        )
        if "auroc_strata" in rows and rows["auroc_strata"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows["auroc_strata"],
                    mode="lines",
                    name=f"{name}, within type × tokenization strata",
                    line={"color": color, "width": 1.5, "dash": "dash"},
                    hovertemplate="block %{x}: within-strata AUROC %{y:.3f}<extra></extra>",
                )
            )
    if sae is not None:
        best = sae[(sae["position"] == "last") & (sae["rank"] == 0)]
        for kind, color, symbol, shift in (
            ("known", PALETTE[2], "diamond", -SAE_SHIFT),
            ("unknown", PALETTE[3], "square", SAE_SHIFT),
        ):
            rows = best[best["kind"] == kind].sort_values("layer")
            if rows.empty:
                continue
            beats = rows["beats_tokens"].astype(bool) if "beats_tokens" in rows else None
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"] + shift,
                    y=rows["auroc"],
                    error_y=_bars(rows, "auroc"),
                    mode="markers",
                    name=f"best {kind} SAE latent of the block (last token)",
                    marker={
                        "color": color,
                        "size": 13,
                        "symbol": (
                            [symbol if b else f"{symbol}-open" for b in beats]
                            if beats is not None
                            else symbol
                        ),
                        "line": {"color": color, "width": 2},
                    },
                    customdata=np.stack(
                        [rows["latent"], rows["auroc_strata"], rows["separation"], rows["layer"]],
                        axis=-1,
                    ),
                    hovertemplate=(
                        "block %{customdata[3]}, latent %{customdata[0]}: AUROC %{y:.3f}, "
                        "within strata %{customdata[1]:.3f}, separation %{customdata[2]:.2f}"
                        "<extra></extra>"
                    ),
                )
            )
    n_test = int(layers["n_test"].max()) if "n_test" in layers else 0
    fig = style(
        fig,
        "Known vs unknown (real entities): held-out AUROC by block",
        "block (0-based)",
        "held-out AUROC (known vs unknown)",
        subtitle=(
            f"{_lead(model)}{n_test} held-out real entities; bands and bars: 95% CI; dashed: "
            "within strata of entity type × token count × word start;<br>filled markers beat "
            "the tokenization-only baseline (their CI lies above it); SAE markers are set apart "
            "a little"
        ),
    )
    summary = _beats_summary(layers, sae, tokens)
    fig.add_annotation(
        text=summary,
        xref="paper",
        yref="paper",
        x=0,
        y=1.0,
        xanchor="left",
        yanchor="bottom",
        showarrow=False,
        align="left",
        font={"size": 13, "color": "#333"},
    )
    fig.update_xaxes(range=span, dtick=max(1, len(blocks) // 12))
    lowest = [layers["auroc_low"].min(), layers["auroc"].min()]
    if sae is not None:
        lowest.append(sae["auroc_low"].min())
    floor = min([0.3, *(float(v) - 0.02 for v in lowest if _finite(v))])
    fig.update_yaxes(range=[floor, 1.02])
    lines = summary.count("<br>") + 1
    fig.update_layout(
        height=760 + 18 * lines,
        margin={"t": 160 + 18 * lines, "b": 250},
        legend={"y": -0.24},
    )
    return fig


def _beats_summary(
    layers: pd.DataFrame, sae: pd.DataFrame | None, tokens: Mapping[str, Any] | None
) -> str:
    """What beats each baseline, one block per verdict (or that nothing does)."""
    if tokens is None or not _finite(tokens.get("auroc")):
        return "no tokenization baseline saved"
    verdicts = [("beats_tokens", f"tokenization only ({float(tokens['auroc']):.2f})")]
    if _finite(tokens.get("type_auroc")):
        verdicts.append(("beats_type", f"tokenization + type ({float(tokens['type_auroc']):.2f})"))
    within = (
        f"within strata, above name length only ({float(tokens['surface_strata']):.2f})"
        if _finite(tokens.get("surface_strata"))
        else "within strata, above chance (0.50)"
    )
    verdicts.append(("beats_strata", within))
    best = sae[(sae["position"] == "last") & (sae["rank"] == 0)] if sae is not None else None
    lines = []
    for column, name in verdicts:
        if column not in layers:
            continue
        parts = []
        for position, label in POSITIONS.items():
            rows = layers[(layers["position"] == position) & layers[column].astype(bool)]
            if not rows.empty:
                parts.append(f"diff. of means at the {label}: blocks {_ranges(rows['layer'])}")
        if best is not None and column in best:
            for kind in ("known", "unknown"):
                rows = best[(best["kind"] == kind) & best[column].astype(bool)]
                if not rows.empty:
                    parts.append(f"best {kind} latent: blocks {_ranges(rows['layer'])}")
        lines.append(f"<b>{name}:</b> " + ("; ".join(parts) if parts else "nothing"))
    return "<br>".join(lines)


def _ranges(values: pd.Series) -> str:
    """ "3–7, 9" from block numbers."""
    runs: list[list[int]] = []
    for b in sorted({int(v) for v in values}):
        if runs and b == runs[-1][-1] + 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    return ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


# -- b. top latents ------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "–"


def top_latents(
    results: Source, *, top: int = 5, position: str = "last", model: str | None = None
) -> go.Figure:
    """The top `top` latents per SAE block and kind at `position`, as a table."""
    frame = _table(results, "latents")
    rows = frame[(frame["position"] == position) & (frame["rank"] < top)]
    if rows.empty:
        raise ValueError(
            f"latents.csv has no latents at position {position!r}; positions: "
            f"{', '.join(sorted(map(str, frame['position'].unique())))}"
        )
    rows = rows.sort_values(["layer", "kind", "rank"], key=_kind_order)
    types = [c[len("sep_") :] for c in frame.columns if c.startswith("sep_")]
    header = ["block", "kind", "rank", "latent", "min sep."]
    header += [f"sep. {t}" for t in types]
    header += ["density", "AUROC [95% CI]", "within strata [95% CI]", "beats tokens"]
    header += ["beats tok. + type"]
    header += ["vs invented", "fires most on"]
    columns: list[list[str]] = [
        [str(int(v)) for v in rows["layer"]],
        [str(v) for v in rows["kind"]],
        [str(int(v)) for v in rows["rank"]],
        [str(int(v)) for v in rows["latent"]],
        [_fmt(v) for v in rows["separation"]],
        *[[_fmt(v) for v in rows[f"sep_{t}"]] for t in types],
        [_fmt(v, 4) for v in rows["density"]],
        [f"{_fmt(r.auroc)} [{_fmt(r.auroc_low)}, {_fmt(r.auroc_high)}]" for r in rows.itertuples()],
        [
            f"{_fmt(r.auroc_strata)} [{_fmt(r.auroc_strata_low)}, {_fmt(r.auroc_strata_high)}]"
            for r in rows.itertuples()
        ],
        ["yes" if bool(v) else "no" for v in rows["beats_tokens"]],
        ["yes" if bool(v) else "no" for v in rows["beats_type"]],
        [_fmt(v) for v in rows.get("auroc_invented", pd.Series(math.nan, index=rows.index))],
        [str(v).replace(" | ", ", ") if isinstance(v, str) else "" for v in rows["top_entities"]],
    ]
    fill = [_alpha(PALETTE[2] if kind == "known" else PALETTE[3], 0.12) for kind in rows["kind"]]
    widths = [45, 65, 40, 60, 55] + [60] * len(types) + [65, 120, 120, 60, 70, 65, 330]
    fig = go.Figure(
        go.Table(
            columnwidth=widths,
            header={
                "values": [f"<b>{h}</b>" for h in header],
                "fill_color": "#f0f0f0",
                "align": "left",
                "font": {"size": 13},
            },
            cells={
                "values": columns,
                "fill_color": [fill] * len(columns),
                "align": ["right"] * (len(columns) - 1) + ["left"],
                "font": {"size": 12},
                "height": 24,
            },
        )
    )
    fig = style(
        fig,
        f"Top entity latents per SAE block ({POSITIONS.get(position, position)})",
        "",
        "",
        subtitle=(
            f"{_lead(model)}separation: fraction of known minus unknown training entities where "
            "the latent fires (min over types); AUROC on held-out real entities;<br>beats "
            "tokens: the CI's lower end is above the tokenization-only baseline; vs invented: "
            "AUROC of held-out known entities against invented names"
        ),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(
        width=max(1200, sum(widths) + 100),
        height=min(2600, 190 + 26 * (len(rows) + 2)),
        margin={"l": 30, "t": 130, "b": 20},
    )
    return fig


def _kind_order(column: pd.Series) -> pd.Series:
    return column.map({"known": 0, "unknown": 1}) if column.name == "kind" else column


# -- c. steering curves --------------------------------------------------------------------
def _pair_name(condition: str, group: str) -> str:
    return f"{CONDITION_NAMES.get(condition, condition)} → {GROUP_NAMES.get(group, group)}"


def _alpha_ticks(alphas: Sequence[float]) -> dict[str, Any]:
    ticks = sorted({0.0, *(float(a) for a in alphas)})
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _offsets(groups: Sequence[str], alphas: Sequence[float]) -> dict[str, float]:
    """Small x offsets of the α = 0 markers per group, so their bars do not overlap."""
    step = 0.04 * (max(alphas) if alphas else 1.0)
    return {g: (i - (len(groups) - 1) / 2) * step for i, g in enumerate(groups)}


def _groups_drawn(frame: pd.DataFrame) -> list[str]:
    present = set(map(str, frame["group"].unique()))
    return [g for g in GROUP_COLORS if g in present]


def steering_curves(results: Source, *, model: str | None = None) -> go.Figure:
    """Refusal and hallucination rates against α (module docstring); from steering_summary.csv."""
    frame = _table(results, "steering")
    groups = _groups_drawn(frame)
    alphas = sorted(float(a) for a in frame.loc[frame["alpha"] > 0, "alpha"].unique())
    offsets = _offsets(groups, alphas)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("refusal or hedging", "hallucinated attribute"),
        shared_yaxes=True,
        horizontal_spacing=0.06,
    )
    for col, metric in enumerate(("refusal", "hallucination"), start=1):
        first = col == 1
        for condition, group in PAIRS:
            if group not in groups:
                continue
            color = GROUP_COLORS[group]
            steered = frame[
                (frame["condition"] == condition) & (frame["group"] == group) & (frame["alpha"] > 0)
            ].sort_values("alpha")
            if not steered.empty:
                _line(
                    fig, steered, metric, _pair_name(condition, group), color, "solid", first, col
                )
            baseline = BASELINE[condition]
            random = frame[
                (frame["condition"] == baseline) & (frame["group"] == group) & (frame["alpha"] > 0)
            ].sort_values("alpha")
            if not random.empty and metric in random:
                name = _pair_name(baseline, group)
                # the band: the range of the random latents' own rates (or the pooled CI)
                low, high = (
                    (f"{metric}_latent_min", f"{metric}_latent_max")
                    if f"{metric}_latent_min" in random
                    else (f"{metric}_low", f"{metric}_high")
                )
                if low in random:
                    _band(
                        fig,
                        random["alpha"],
                        random[low].fillna(random[metric]),
                        random[high].fillna(random[metric]),
                        color,
                        name,
                        row=1,
                        col=col,
                    )
                _line(fig, random, metric, name, color, "dot", first, col, bars=False)
        for group in groups:
            color = GROUP_COLORS[group]
            for condition, symbol in (("none", "circle"), ("orthogonalized", "x")):
                rows = frame[(frame["condition"] == condition) & (frame["group"] == group)]
                if rows.empty:
                    continue
                name = f"{CONDITION_NAMES[condition]}: {GROUP_NAMES[group]} (α = 0)"
                fig.add_trace(
                    go.Scatter(
                        x=[offsets[group]] * len(rows),
                        y=rows[metric],
                        error_y=_bars(rows, metric),
                        mode="markers",
                        name=name,
                        legendgroup=name,
                        showlegend=first,
                        marker={
                            "color": color,
                            "size": 11,
                            "symbol": symbol,
                            "line": {"color": color, "width": 2},
                        },
                        customdata=rows["n"],
                        hovertemplate=f"{name}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    n = int(frame["n"].max())
    fig = style(
        fig,
        "Steering with the entity latents: knowledge refusal and hallucination",
        "α (× the mean residual norm at the SAE block)",
        "rate (share of questions)",
        subtitle=(
            f"{_lead(model)}held-out entities, up to {n} questions per point (random: pooled over "
            "latents); bars: 95% bootstrap CI; bands: range of the random latents' own rates;"
            "<br>solid: the chosen latent, dotted: random latents of its SAE block on the same "
            "group; α = 0: no steering (markers spread apart)"
        ),
    )
    _panels(fig)
    fig.update_xaxes(**_alpha_ticks(alphas))
    fig.update_yaxes(range=[-0.03, 1.03])
    return fig


def _line(
    fig: go.Figure,
    rows: pd.DataFrame,
    metric: str,
    name: str,
    color: str,
    dash: str,
    legend: bool,
    col: int,
    *,
    bars: bool = True,
) -> None:
    fig.add_trace(
        go.Scatter(
            x=rows["alpha"],
            y=rows[metric],
            error_y=_bars(rows, metric) if bars else None,
            mode="lines+markers",
            name=name,
            legendgroup=name,
            showlegend=legend,
            line={"color": color, "dash": dash, "width": 2.5 if dash == "solid" else 1.5},
            marker={"color": color, "size": 8 if dash == "solid" else 5},
            customdata=rows.get("n"),
            hovertemplate=f"{name}<br>α %{{x:g}}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>",
        ),
        row=1,
        col=col,
    )


def _panels(fig: go.Figure) -> None:
    """Two panels side by side; the legend at the right, one entry per line."""
    fig.update_yaxes(title_text="", row=1, col=2)
    fig.update_layout(
        width=1400,
        height=620,
        legend={"orientation": "v", "x": 1.02, "y": 1.0, "yanchor": "top", "font": {"size": 13}},
        margin={"r": 20, "t": 140, "b": 80},
    )


# -- d. "are you sure" logit difference ----------------------------------------------------
def sure_summary(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean Yes − No logit difference with a 95% bootstrap CI per group, condition and α;
    the random latents pooled by block, "random_known" and "random_unknown" (every entity ×
    latent a value), with the range of their latents' own means (`latent_min`, `latent_max`)."""
    pools = frame.assign(pool=frame["condition"].astype(str).map(pooled))
    rows = []
    for (group, condition, alpha), part in pools.groupby(["group", "pool", "alpha"]):
        values = part["yes_minus_no"].astype(float).to_numpy()
        means = part.groupby("condition")["yes_minus_no"].mean()  # each latent's own mean
        random = str(condition).startswith("random")
        row: dict[str, Any] = {
            "group": group,
            "condition": condition,
            "alpha": float(alpha),
            "n": len(values),
            "mean": float(values.mean()),
            "mean_low": math.nan,
            "mean_high": math.nan,
            "latent_min": float(means.min()) if random else math.nan,
            "latent_max": float(means.max()) if random else math.nan,
        }
        if len(values) >= 2:
            est = mean_ci(values, n_resamples=1000, seed=seed)
            row.update(mean_low=est.low, mean_high=est.high)
        rows.append(row)
    return pd.DataFrame(rows)


def sure_logit(results: Source, *, model: str | None = None) -> go.Figure:
    """Mean " Yes" − " No" logit difference against α; from sure.csv (one row per entity)."""
    frame = sure_summary(_table(results, "sure"))
    groups = _groups_drawn(frame)
    alphas = sorted(float(a) for a in frame.loc[frame["alpha"] > 0, "alpha"].unique())
    offsets = _offsets(groups, alphas)
    fig = go.Figure()
    fig.add_hline(y=0.0, line={"color": "#bbbbbb", "width": 1, "dash": "dot"})
    for condition, group in PAIRS:
        if group not in groups:
            continue
        color = GROUP_COLORS[group]
        for cond, dash in ((condition, "solid"), (BASELINE[condition], "dot")):
            rows = frame[
                (frame["condition"] == cond) & (frame["group"] == group) & (frame["alpha"] > 0)
            ].sort_values("alpha")
            if rows.empty:
                continue
            name = _pair_name(cond, group)
            if cond.startswith("random"):
                _band(fig, rows["alpha"], rows["latent_min"], rows["latent_max"], color, name)
            fig.add_trace(
                go.Scatter(
                    x=rows["alpha"],
                    y=rows["mean"],
                    error_y=None if cond.startswith("random") else _bars(rows, "mean"),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    line={"color": color, "dash": dash, "width": 2.5 if dash == "solid" else 1.5},
                    marker={"color": color, "size": 8 if dash == "solid" else 5},
                    customdata=rows["n"],
                    hovertemplate=f"{name}<br>α %{{x:g}}: %{{y:.2f}} (n=%{{customdata}})"
                    "<extra></extra>",
                )
            )
    for group in groups:
        rows = frame[(frame["condition"] == "none") & (frame["group"] == group)]
        if rows.empty:
            continue
        color = GROUP_COLORS[group]
        name = f"unsteered: {GROUP_NAMES[group]} (α = 0)"
        fig.add_trace(
            go.Scatter(
                x=[offsets[group]] * len(rows),
                y=rows["mean"],
                error_y=_bars(rows, "mean"),
                mode="markers",
                name=name,
                marker={"color": color, "size": 11, "symbol": "circle"},
                customdata=rows["n"],
                hovertemplate=f"{name}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>",
            )
        )
    fig = style(
        fig,
        "“Are you sure you know …?”: Yes − No logit difference under steering",
        "α (× the mean residual norm at the SAE block)",
        'logit(" Yes") − logit(" No")',
        subtitle=(
            f"{_lead(model)}held-out entities; mean over entities (random: over entities × "
            "latents), bars: 95% bootstrap CI; bands: range of the random latents' own means;"
            "<br>solid: the chosen latent, dotted: random latents of its SAE block on the same "
            "group; α = 0: no steering (markers spread apart)"
        ),
    )
    fig.update_xaxes(**_alpha_ticks(alphas))
    fig.update_layout(
        width=1280,
        legend={"orientation": "v", "x": 1.02, "y": 1.0, "yanchor": "top", "font": {"size": 13}},
        margin={"r": 40, "t": 140, "b": 80},
    )
    return fig


# -- e. attention heads --------------------------------------------------------------------
ATTENTION_PANELS = (
    ("unknown_latent", "known"),
    ("random_unknown", "known"),
    ("known_latent", "unknown"),
    ("random_known", "unknown"),
)


def head_changes(frame: pd.DataFrame, condition: str, group: str) -> pd.DataFrame:
    """Block × head table of the mean attention change of `condition` on `group` (a random pool,
    "random_known" or "random_unknown": the mean over its latents' per-head means)."""
    picked = frame["condition"].astype(str).map(pooled) == condition
    rows = frame[picked & (frame["group"] == group)]
    return rows.pivot_table(index="layer", columns="head", values="change", aggfunc="mean")


def _panel_name(frame: pd.DataFrame, condition: str) -> str:
    """ "known latent (block 15)" or "random latents, block 15 (mean of 10)"."""
    rows = frame[frame["condition"].astype(str).map(pooled) == condition]
    block = ""
    if "steered_block" in rows and rows["steered_block"].notna().any():
        block = f"block {int(rows['steered_block'].dropna().iloc[0])}"
    if condition.startswith("random"):
        n = rows["condition"].nunique()
        return f"random latents{', ' + block if block else ''} (mean of {n})"
    return f"{CONDITION_NAMES[condition]}{f' ({block})' if block else ''}"


def attention_heads(results: Source, *, model: str | None = None) -> go.Figure:
    """Block × head heatmaps of the attention change from steering (module docstring)."""
    frame = _table(results, "attention")
    panels = [
        (condition, group, head_changes(frame, condition, group))
        for condition, group in ATTENTION_PANELS
    ]
    panels = [p for p in panels if not p[2].empty]
    if not panels:
        raise ValueError(
            "attention.csv holds no known/unknown latent or random rows on known or unknown "
            "entities; nothing to draw"
        )
    limit = max(float(np.nanmax(np.abs(p[2].to_numpy()))) for p in panels)
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    titles = [f"{_panel_name(frame, c)} → {GROUP_NAMES[g]}" for c, g, _ in panels]
    cols = 2 if len(panels) > 1 else 1
    n_rows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.1,
        vertical_spacing=0.14,
    )
    for i, (condition, group, table) in enumerate(panels):
        counts = frame[(frame["group"] == group)]["n"]
        fig.add_trace(
            go.Heatmap(
                x=[int(h) for h in table.columns],
                y=[int(b) for b in table.index],
                z=table.to_numpy().tolist(),
                zmin=-limit,
                zmax=limit,
                zmid=0.0,
                colorscale=DIVERGING,
                showscale=i == 0,
                colorbar={"title": {"text": "Δ attention"}},
                name=f"{condition} → {group}",
                hovertemplate=(
                    "block %{y}, head %{x}: %{z:+.3f}"
                    f" (n={int(counts.max()) if len(counts) else 0} prompts)<extra></extra>"
                ),
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    alpha = ", ".join(f"{a:g}" for a in sorted(frame["alpha"].unique()))
    fig = style(
        fig,
        "Attention to the entity under steering: steered − unsteered, per head",
        "head",
        "block",
        subtitle=(
            f"{_lead(model)}attention from the final position to the last entity token; that "
            f"token steered with α = {alpha} (× mean residual norm);<br>mean over held-out "
            "entities; red: less attention, blue: more; one colour scale for all panels"
        ),
    )
    for r in range(1, n_rows + 1):
        for c in range(1, cols + 1):
            if c > 1:
                fig.update_yaxes(title_text="", row=r, col=c)
            if r < n_rows:
                fig.update_xaxes(title_text="", row=r, col=c)
    n_blocks = max(len(t.index) for _, _, t in panels)
    n_heads = max(len(t.columns) for _, _, t in panels)
    fig.update_xaxes(showgrid=False, dtick=max(1, n_heads // 16))
    fig.update_yaxes(showgrid=False, autorange="reversed", dtick=max(1, n_blocks // 16))
    fig.update_layout(width=1100, height=420 * n_rows + 160, margin={"t": 150, "b": 70})
    return fig


# -- all -----------------------------------------------------------------------------------
FIGURES = ("separation", "top_latents", "steering", "sure", "attention")


def _safe_label(label: str) -> str:
    """A file-name-safe model label ("HuggingFaceTB/SmolLM2" → "HuggingFaceTB-SmolLM2")."""
    cleaned = re.sub(r"[^\w.\-]+", "-", label.strip()).strip("-.")
    if not cleaned:
        raise ValueError(f"model label {label!r} has no usable character; give e.g. smollm2")
    return cleaned


def draw_all(
    results: str | Path,
    figures: str | Path,
    model_label: str,
    formats: Sequence[str] = ("html", "png"),
) -> list[Path]:
    """Draw every figure whose input files are in `results` into `figures`, each saved as
    `entities_<figure>_<model_label>`; returns the files written."""
    root = Path(results)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no results directory at {root}: run `interp entities label --out {root}`, then "
            "`score` and `steer`, first"
        )
    label = _safe_label(model_label)
    drawn: list[tuple[str, go.Figure]] = []
    have = {name: (root / file).is_file() for name, file in FILES.items()}
    if have["layers"]:
        drawn.append(("separation", separation_by_layer(root, model=model_label)))
    if have["latents"]:
        drawn.append(("top_latents", top_latents(root, model=model_label)))
    if have["steering"]:
        drawn.append(("steering", steering_curves(root, model=model_label)))
    if have["sure"]:
        drawn.append(("sure", sure_logit(root, model=model_label)))
    if have["attention"]:
        drawn.append(("attention", attention_heads(root, model=model_label)))
    if not drawn:
        inputs = ", ".join(FILES[n] for n in ("layers", "latents", "steering", "sure", "attention"))
        raise FileNotFoundError(
            f"no entity results to draw in {root} (none of {inputs}): run `interp entities "
            f"score --out {root}` (and `interp entities steer --out {root}`) first"
        )
    written: list[Path] = []
    for name, fig in drawn:
        written += save_figure(fig, figures, f"entities_{name}_{label}", formats)
    return written
