"""Metrics of generations: computed at run time (projections) or from saved records (text).

- `projection`: mean over the response tokens of the *unsteered* residual at the cell's layer,
  projected on the unit steering direction (the persona-vectors monitor, Chen et al. 2025 §3.3):
  how much the generated text itself reads as the trait. Needs the model, so it is scored while
  sweeping and stored in each record.
- `length`: generated tokens. `match:<regex>`: 1 if the text matches (case-insensitive), else 0.

`summarize` groups by the full config: besides the layer and coefficient, every config field
that tells records apart (vector digest, model fingerprint, decoding settings, scorer, …) makes
its own series, so a table never averages over two vectors or two decoding settings.
"""

from __future__ import annotations

import json
import math
import re
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
    identity = {
        "name": "projection",
        "reduction": "response:mean",
        "site": vectors.meta.site,
        "vector": vectors.digest(),
    }

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

    return Scorer(identity, score)


METRICS = ("projection", "length", "match:<regex>")


def label(spec: str) -> str:
    """Axis label for metric `spec`, with what it measures."""
    if spec == "projection":
        return "response projection on the unit vector (unsteered re-read)"
    if spec == "length":
        return "generated tokens"
    return f"fraction of generations matching /{spec.removeprefix('match:')}/"


def check(spec: str) -> str:
    """Return `spec` if it names a metric (a `match:` regex must compile), else raise."""
    if spec in ("projection", "length"):
        return spec
    if spec.startswith("match:") and len(spec) > len("match:"):
        try:
            re.compile(spec.removeprefix("match:"), re.IGNORECASE)
        except re.error as err:
            raise ValueError(
                f"metric {spec!r}: invalid regular expression ({err}); fix the pattern "
                "(quote it in the shell, escape literal brackets with a backslash)"
            ) from None
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


# Config fields that name one unit within a configuration (its prompt, sample or item): records
# that differ only in these are replicates of one point, averaged by `summarize`.
PER_UNIT = (
    "config.prompt",
    "config.prompt_index",
    "config.sample",
    "config.question",
    "config.matching",
)
MISSING = "(none)"  # a field absent from some records (e.g. results written by older versions)


def hashable(column: pd.Series) -> pd.Series:
    """Lists and dicts as sorted JSON, missing values as `MISSING`, so they can be grouped."""

    def one(value: Any) -> Any:
        if isinstance(value, (list, dict)):
            return json.dumps(value, sort_keys=True, default=str)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        return value

    return column.map(one).astype(object)


def series_columns(
    frame: pd.DataFrame, by: Sequence[str], per_unit: Sequence[str] = PER_UNIT
) -> list[str]:
    """Config columns, besides `by` and the per-unit ones, needed to tell configurations apart.

    A column is kept when it splits some group of the columns chosen so far, so a field that
    follows from others (the interventions follow from vector, layer and coefficient) adds none.
    """
    by = list(by)
    candidates = sorted(
        c
        for c in frame.columns
        if c.startswith("config.")
        and c not in by
        and not any(c == u or c.startswith(u + ".") for u in per_unit)
    )
    candidates.sort(key=lambda c: c == "config.interventions")  # follows from the rest: last
    if frame.empty or not candidates:
        return []
    keys = pd.DataFrame({c: hashable(frame[c]) for c in [*by, *candidates]})
    chosen: list[str] = []
    for column in candidates:
        groups = keys.groupby([*by, *chosen], dropna=False) if by or chosen else None
        distinct = (
            groups[column].nunique(dropna=False).max()
            if groups is not None
            else keys[column].nunique(dropna=False)
        )
        if distinct > 1:
            chosen.append(column)
    return chosen


def summarize(
    frame: pd.DataFrame, spec: str, by: Sequence[str] = ("config.layer", "config.coef")
) -> pd.DataFrame:
    """Mean, s.e. and count of a metric per configuration and `by` (NaN values dropped).

    The table starts with the `series_columns` that tell configurations apart (lists and dicts
    as JSON), then `by`, then `mean`, `sem`, `count`.
    """
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the results have no {missing} column(s); group by fields the records hold "
            f"(they have {sorted(c for c in frame.columns if c.startswith('config.'))})"
        )
    values = frame.assign(value=metric_values(frame, spec)).dropna(subset=["value"])
    series = series_columns(values, by)
    keyed = values.assign(**{c: hashable(values[c]) for c in series})
    grouped = keyed.groupby([*series, *by], dropna=False)["value"]
    table = grouped.agg(["mean", "sem", "count"]).reset_index()
    return table.fillna({"sem": 0.0})
