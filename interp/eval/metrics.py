"""Metrics of generations: computed at run time (projections) or from saved records (text).

- `projection`: mean over the response tokens of the *unsteered* residual at the cell's layer,
  projected on the unit steering direction (the persona-vectors monitor, Chen et al. 2025 §3.3):
  how much the generated text itself reads as the trait. Needs the model, so it is scored while
  sweeping and stored in each record.
- `length`: generated tokens. `match:<regex>`: 1 if the text matches (case-insensitive), else 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from interp.batching import Example, as_example
from interp.capture import capture
from interp.models import Model
from interp.ops import project
from interp.runs.sweeps import Scorer
from interp.steering.generation import Generation
from interp.vectors import DirectionSet


def projection_scorer(model: Model, vectors: DirectionSet, batch_size: int = 16) -> Scorer:
    """Scorer adding `projection` (see module docstring) at each cell's `layer`."""

    def score(
        configs: list[Mapping[str, Any]], generations: list[Generation]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"projection": math.nan} for _ in configs]
        rows, examples = [], []
        for i, (config, gen) in enumerate(zip(configs, generations, strict=True)):
            if gen.text:
                prompt = as_example(config["prompt"])
                examples.append(Example(prompt.prompt, prompt.response + gen.text))
                rows.append(i)
        if not rows:
            return out
        layers = sorted({int(configs[i]["layer"]) for i in rows})
        acts = capture(
            model,
            examples,
            {"r": "response:mean"},
            layers=layers,
            sites=vectors.meta.site,
            batch_size=batch_size,
            progress=False,
        )
        values = project(acts["r"], vectors.at(layers).vectors[None])[:, 0]  # [example, layer]
        for j, i in enumerate(rows):
            out[i]["projection"] = float(values[j, layers.index(int(configs[i]["layer"]))])
        return out

    return score


METRICS = ("projection", "length", "match:<regex>")


def label(spec: str) -> str:
    """Axis label for metric `spec`, with what it measures."""
    if spec == "projection":
        return "response projection on the unit vector (unsteered re-read)"
    if spec == "length":
        return "generated tokens"
    return f"fraction of generations matching /{spec.removeprefix('match:')}/"


def check(spec: str) -> str:
    """Return `spec` if it names a metric, else raise with the valid names."""
    if spec in ("projection", "length") or (
        spec.startswith("match:") and len(spec) > len("match:")
    ):
        return spec
    raise ValueError(f"unknown metric {spec!r}; use one of {', '.join(METRICS)}")


def metric_values(frame: pd.DataFrame, spec: str) -> pd.Series:
    """One value per record for metric `spec` (see module docstring)."""
    check(spec)
    if spec == "length":
        return frame["n_tokens"].astype(float)
    if spec == "projection":
        if "projection" not in frame:
            raise ValueError(
                "these results have no projection; run the sweep with --metric projection"
            )
        return frame["projection"].astype(float)
    pattern = spec.removeprefix("match:")
    return frame["text"].str.contains(pattern, case=False, regex=True).astype(float)


def summarize(
    frame: pd.DataFrame, spec: str, by: Sequence[str] = ("config.layer", "config.coef")
) -> pd.DataFrame:
    """Mean, standard error and count of a metric per group (NaNs, e.g. empty texts, dropped)."""
    values = frame.assign(value=metric_values(frame, spec)).dropna(subset=["value"])
    grouped = values.groupby(list(by))["value"]
    table = grouped.agg(["mean", "sem", "count"]).reset_index()
    return table.fillna({"sem": 0.0})
