"""Detection metrics with bootstrap 95% intervals (Lindsey 2025 §"Injected thoughts";
papers.md §2.3-2.4).

They are read from the graded-trials frame (`grading.grade_trials`: one row per trial, with its
config fields and the four criteria as booleans):

- `success`: coherent ∧ identified, over injected trials (the paper's success on the "Do you
  detect an injected thought?" prompt);
- `false_positive`: affirmative, over control trials (no injection);
- `net`: success − false_positive, the paper's summary metric; its interval resamples the
  injected and the control trials independently (they are separate samples);
- `influence`: thinking (the concept shows up in the reply, whether or not detection is
  claimed), over injected trials;
- `influence_baseline`: the same reading on control trials (no injection): `baseline_thinking`,
  the control reply graded for a concept paired with it (`grading.baseline_concepts`), over the
  controls that have one. Common words are forms of some concepts ("information", "memory",
  "peace"), so influence means something only above this rate. Grouped like the false
  positives; NaN (with `n_baseline` 0) for a frame graded without the baseline columns;
- `detection`: affirmative over injected trials (claims, right or wrong), and `coherence`:
  coherent over injected trials; both help to read the others (a model that claims nothing,
  or one that only babbles at high strength).

`rates(frame, by)` groups injected trials by the columns `by` and control trials by the same
columns less `concept` (controls have none, and their false-positive rate does not depend on
a concept): per cell (`CELL`: scale, layer fraction, block, strength), per layer (`LAYER`,
pooled over strengths and concepts) and per concept (`CONCEPT`, pooled over the scale's grid,
against all of the scale's controls). Each rate is a mean of booleans with a seeded
percentile-bootstrap interval (`interp.eval.stats`); a group of one trial has no interval
(NaN), a group of none is an error. `summary` is the short table of a run.

A percentile bootstrap of a sample with no successes at all gives [0, 0]: with the counts (the
`_k` and `n_` columns) beside it, "0 of 50" is read as what it is, not as a proof of zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from interp.eval.stats import N_RESAMPLES, Estimate, bootstrap_ci, mean_ci
from interp.io import inside, output_dir, read_jsonl

CRITERIA = ("coherent", "affirmative", "identified", "thinking")
# rate name -> (trials it is computed on, how a trial's outcome is read from its criteria)
RATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "success": ("injected", ("coherent", "identified")),
    "false_positive": ("control", ("affirmative",)),
    "influence": ("injected", ("thinking",)),
    "detection": ("injected", ("affirmative",)),
    "coherence": ("injected", ("coherent",)),
}
METRICS = ("success", "false_positive", "net", "influence", "detection", "coherence")
CELL = ("scale", "fraction", "layer", "strength")
LAYER = ("scale", "fraction", "layer")
CONCEPT = ("scale", "concept")
BASELINE = "influence_baseline"  # thinking on controls, against a paired concept
LABELS = {
    "success": "success (coherent ∧ identified, injected trials)",
    "false_positive": "false positives (affirmative, control trials)",
    "net": "net score (success − false positives)",
    "influence": "influence (concept in the reply, injected trials)",
    BASELINE: "influence baseline (paired concept in the reply, control trials)",
    "detection": "detection claims (affirmative, injected trials)",
    "coherence": "coherence (injected trials)",
}


def load_graded(path: str | Path) -> pd.DataFrame:
    """A graded-trials file (`graded.jsonl` or `graded.csv`, as `interp inject grade` writes)."""
    path = Path(path)
    if path.suffix == ".csv":
        if not path.is_file():
            raise FileNotFoundError(f"no graded trials at {path}; run `interp inject grade`")
        frame = pd.read_csv(path)
    else:
        frame = pd.DataFrame(read_jsonl(path))
    if "concept" in frame:  # a control's missing concept reads as None, whatever the format
        frame["concept"] = frame["concept"].astype(object).where(frame["concept"].notna(), None)
    return frame


def outcomes(frame: pd.DataFrame, experiment: str | None = "detection") -> pd.DataFrame:
    """The detection trials of `frame`, checked, with one boolean column per rate (`RATES`).

    `experiment` keeps the rows of that experiment when the frame has an `experiment` column
    (None: keep all). A frame that mixes graders (an `grader` column with several identities)
    is refused: pick one grader's rows first, so two graders' verdicts are never pooled.
    """
    if frame.empty:
        raise ValueError("the graded-trials frame is empty; grade some trials first")
    if experiment is not None and "experiment" in frame:
        frame = frame[frame["experiment"] == experiment]
        if frame.empty:
            raise ValueError(
                f"no {experiment!r} trials in the graded frame; its experiments are "
                f"{sorted(set(map(str, frame['experiment'])))}"
            )
    missing = [c for c in (*CRITERIA, "trial") if c not in frame]
    if missing:
        raise ValueError(
            f"the graded-trials frame lacks columns {missing}; make it with "
            "`interp.introspection.grading.grade_trials`"
        )
    if "grader" in frame and frame["grader"].nunique(dropna=False) > 1:
        graders = sorted(map(str, frame["grader"].unique()))
        raise ValueError(
            f"the frame holds grades from {len(graders)} graders ({', '.join(graders)}); "
            "select one grader's rows first (frame[frame.grader == ...])"
        )
    trials = set(map(str, frame["trial"]))
    if not trials <= {"injected", "control"}:
        raise ValueError(
            f"trial must be 'injected' or 'control', got {sorted(trials - {'injected', 'control'})}"
        )
    out = frame.copy()
    for criterion in CRITERIA:
        column = out[criterion]
        if column.isna().any() or not set(column.unique()) <= {True, False}:
            bad = column[column.isna() | ~column.isin([True, False])].iloc[0]
            raise ValueError(f"criterion {criterion!r} must be a boolean in every row, got {bad!r}")
        out[criterion] = column.astype(bool)
    for name, (_, criteria) in RATES.items():
        out[name] = np.logical_and.reduce([out[c].to_numpy() for c in criteria])
    out[BASELINE] = _baseline(out)
    return out


def _baseline(frame: pd.DataFrame) -> NDArray[np.float64]:
    """1.0 / 0.0 for `baseline_thinking` on control rows that have it, NaN elsewhere."""
    out = np.full(len(frame), np.nan)
    if "baseline_thinking" not in frame:
        return out
    read = {True: 1.0, False: 0.0, "True": 1.0, "False": 0.0, "true": 1.0, "false": 0.0}
    control = (frame["trial"] == "control").to_numpy()
    for i, value in enumerate(frame["baseline_thinking"]):
        if not control[i] or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if value not in read:
            raise ValueError(f"baseline_thinking must be a boolean or empty, got {value!r}")
        out[i] = read[value]
    return out


def rate(
    values: Sequence[bool] | NDArray[Any], *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Estimate:
    """The share of True in `values` with a percentile-bootstrap interval (NaN for one value)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("a rate needs at least one trial, got none")
    if array.size == 1:
        return Estimate(float(array[0]), math.nan, math.nan, 1)
    return mean_ci(array, n_resamples=n_resamples, seed=seed)


def _difference(a: NDArray[np.float64], b: NDArray[np.float64], axis: int = -1) -> Any:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def difference(
    injected: Sequence[bool] | NDArray[Any],
    control: Sequence[bool] | NDArray[Any],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """mean(injected) − mean(control), the two resampled independently; `n` is the injected
    count. No interval (NaN) when either side has a single trial."""
    a = np.asarray(injected, dtype=np.float64)
    b = np.asarray(control, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError(
            f"a net score needs injected and control trials, got {a.size} and {b.size}"
        )
    value = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Estimate(value, math.nan, math.nan, int(a.size))
    est = bootstrap_ci([a, b], _difference, paired=False, n_resamples=n_resamples, seed=seed)
    return Estimate(value, est.low, est.high, int(a.size), est.confidence, est.n_resamples)


def _where(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all trials"


def _key(values: Any) -> tuple[Any, ...]:
    return tuple(values) if isinstance(values, tuple) else (values,)


def rates(
    frame: pd.DataFrame,
    by: Sequence[str] = CELL,
    *,
    experiment: str | None = "detection",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Every metric of `METRICS` per group of `by`, with bootstrap 95% intervals.

    One row per group of injected trials: the `by` columns, `n_injected`, `n_control`, and for
    each metric `<m>`, `<m>_low`, `<m>_high` (and `<m>_k`, the count of trials that showed it,
    for the rates), then the influence baseline: `n_baseline` (the controls with a paired
    concept), `influence_baseline`, `_low`, `_high` and `_k`. Control trials are grouped by
    `by` less `concept`. A group without injected trials, or without control trials to match
    it, is an error that names the group.
    """
    table = outcomes(frame, experiment)
    by = list(by)
    missing = [c for c in by if c not in table]
    if missing:
        raise ValueError(
            f"cannot group by {missing}: the graded frame's columns are {sorted(table.columns)}"
        )
    control_by = [c for c in by if c != "concept"]
    injected = table[table["trial"] == "injected"]
    controls = table[table["trial"] == "control"]
    if injected.empty:
        raise ValueError("no injected trials in the graded frame; nothing to measure")
    if controls.empty:
        raise ValueError(
            "no control trials in the graded frame: the false-positive rate and the net score "
            "need them; run the grid with controls (controls_per_cell > 0)"
        )
    if "concept" in by and injected["concept"].isna().any():
        raise ValueError("an injected trial has no concept; the graded frame is malformed")
    control_groups: Mapping[tuple[Any, ...], pd.DataFrame] = (
        {_key(k): g for k, g in controls.groupby(control_by, sort=True)}
        if control_by
        else {(): controls}
    )
    groups = injected.groupby(by, sort=True) if by else [((), injected)]
    rows = []
    for values, group in groups:
        key = _key(values)
        control_key = tuple(v for c, v in zip(by, key, strict=True) if c != "concept")
        matched = control_groups.get(control_key)
        if matched is None or matched.empty:
            raise ValueError(
                f"no control trials for {_where(control_by, control_key)}: the false-positive "
                "rate and the net score need controls in every group; run the grid with "
                "controls (controls_per_cell > 0) or group by fewer columns"
            )
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["n_injected"], row["n_control"] = len(group), len(matched)
        for name, (trials, _) in RATES.items():
            sample = (group if trials == "injected" else matched)[name].to_numpy()
            _put(row, name, rate(sample, n_resamples=n_resamples, seed=seed))
            row[f"{name}_k"] = int(sample.sum())
        net = difference(
            group["success"].to_numpy(),
            matched["false_positive"].to_numpy(),
            n_resamples=n_resamples,
            seed=seed,
        )
        _put(row, "net", net)
        baseline = matched[BASELINE].dropna().to_numpy()
        row["n_baseline"] = len(baseline)
        if len(baseline):
            _put(row, BASELINE, rate(baseline, n_resamples=n_resamples, seed=seed))
        else:
            _put(row, BASELINE, Estimate(math.nan, math.nan, math.nan, 0))
        row[f"{BASELINE}_k"] = int(baseline.sum())
        rows.append(row)
    columns = [*by, "n_injected", "n_control"]
    for name in METRICS:
        columns += [name, f"{name}_low", f"{name}_high"] + ([f"{name}_k"] if name in RATES else [])
    columns += ["n_baseline", BASELINE, f"{BASELINE}_low", f"{BASELINE}_high", f"{BASELINE}_k"]
    return pd.DataFrame(rows, columns=columns)


def _put(row: dict[str, Any], name: str, estimate: Estimate) -> None:
    row[name], row[f"{name}_low"], row[f"{name}_high"] = (
        estimate.value,
        estimate.low,
        estimate.high,
    )


def cell_rates(frame: pd.DataFrame, **settings: Any) -> pd.DataFrame:
    """`rates` per (scale, layer fraction, block, strength) cell."""
    return rates(frame, CELL, **settings)


def layer_rates(frame: pd.DataFrame, **settings: Any) -> pd.DataFrame:
    """`rates` per (scale, layer fraction, block), pooled over strengths and concepts."""
    return rates(frame, LAYER, **settings)


def concept_rates(frame: pd.DataFrame, **settings: Any) -> pd.DataFrame:
    """`rates` per (scale, concept), pooled over the grid; false positives of the scale's
    controls (so `net` is the concept's success minus the scale's false-positive rate)."""
    return rates(frame, CONCEPT, **settings)


def estimate_text(row: pd.Series | Mapping[str, Any], name: str) -> str:
    """'0.020 [0.000, 0.060]' for metric `name` of a `rates` row (no interval: just the value)."""
    value, low, high = (float(row[k]) for k in (name, f"{name}_low", f"{name}_high"))
    if math.isnan(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


SUMMARY_METRICS = ("success", "false_positive", "net", "influence")


def summary(
    frame: pd.DataFrame,
    *,
    experiment: str | None = "detection",
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """The short table of a detection run: per injection scale, three rows.

    - all trials: every injected trial against every control trial of the scale;
    - best cell by net score (chosen on the same trials, so it is optimistic);
    - the layer with the highest influence rate (pooled over strengths).

    Columns: scale, row, setting, n_injected, n_control, the four headline metrics and the
    influence baseline (`influence_baseline`: the controls' rate, to read influence against) as
    text "value [low, high]" (95% bootstrap), plus the raw counts of success and false
    positives.
    """
    settings: dict[str, Any] = {
        "experiment": experiment,
        "n_resamples": n_resamples,
        "seed": seed,
    }
    table = outcomes(frame, experiment)
    scale_by = ["scale"] if "scale" in table else []
    overall = rates(table, scale_by, **settings)
    cells = rates(table, [c for c in CELL if c in table], **settings)
    layers = rates(table, [c for c in LAYER if c in table], **settings)
    rows = []
    for _, base in overall.iterrows():
        scale = base["scale"] if scale_by else None
        own_cells = cells[cells["scale"] == scale] if scale_by else cells
        own_layers = layers[layers["scale"] == scale] if scale_by else layers
        order = ["net", "strength"] if "strength" in own_cells else ["net"]
        best = own_cells.sort_values(order, ascending=[False, True][: len(order)]).iloc[0]
        order = ["influence", "layer"] if "layer" in own_layers else ["influence"]
        peak = own_layers.sort_values(order, ascending=[False, True][: len(order)]).iloc[0]
        for label, row, setting in (
            ("all trials", base, f"{len(own_cells)} cells"),
            ("best cell by net", best, _cell_text(best)),
            ("peak influence layer", peak, _cell_text(peak)),
        ):
            out: dict[str, Any] = {"scale": scale, "row": label, "setting": setting}
            out["n_injected"], out["n_control"] = int(row["n_injected"]), int(row["n_control"])
            for name in (*SUMMARY_METRICS, BASELINE):
                out[name] = estimate_text(row, name)
            out["success_k"] = int(row["success_k"])
            out["false_positive_k"] = int(row["false_positive_k"])
            rows.append(out)
    return pd.DataFrame(rows)


def _cell_text(row: pd.Series | Mapping[str, Any]) -> str:
    parts = [f"block {int(row['layer'])}"] if "layer" in row else []
    if "fraction" in row:
        parts.append(f"depth {float(row['fraction']):.2f}")
    if "strength" in row:
        parts.append(f"strength {float(row['strength']):g}")
    return ", ".join(parts)


def save_metrics(
    frame: pd.DataFrame, out: str | Path, *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict[str, Path]:
    """Write metrics_cells.csv, metrics_layers.csv, metrics_concepts.csv and summary.csv into
    `out`; returns {name: path}. Each is recomputed from `frame`, never appended to."""
    root = output_dir(out)
    root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"n_resamples": n_resamples, "seed": seed}
    tables = {
        "metrics_cells": cell_rates(frame, **settings),
        "metrics_layers": layer_rates(frame, **settings),
        "metrics_concepts": concept_rates(frame, **settings),
        "summary": summary(frame, **settings),
    }
    written = {}
    for name, table in tables.items():
        path = inside(root, f"{name}.csv")
        table.to_csv(path, index=False)
        written[name] = path
    return written
