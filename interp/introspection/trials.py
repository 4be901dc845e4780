"""Injected-thought detection trials (Lindsey 2025 §"Injected thoughts"; papers.md §2.3).

The chat follows the published structure, in this project's own words: a researcher explains
that they can insert "thoughts" (concept patterns) into the model's activations and that half
of the trials are controls; the assistant answers "Ok."; the researcher starts trial 1 and asks
whether the model detects an injected thought and what it is about.

Injection starts at the token that holds the blank line before "Trial 1" and runs through every
generated token (`INJECT_FROM`). Layers are given as fractions of the depth (0 = first block,
1 = last). Each (scale, layer, strength) cell of the grid holds one trial per concept and, by
default, as many control trials with no injection, so control trials are half of all trials as
the framing announces and every cell has its own false-positive count. Controls differ only in
their sample index, which seeds their sampling (temperature 1 by default, as published);
greedy decoding (temperature 0) with more than one control per cell is refused, since those
controls would all be one reply. Two layer fractions that fall on one block are refused
(`fraction_layers`), and so is a word given twice (case-insensitively).

At temperature 0 the one control of each cell is still the same reply in every cell of the
grid: a false-positive rate pooled over cells (per layer, per scale) then counts one reply
several times, so read greedy runs per cell, or sample.

Trials are `interp.runs.sweeps.Cell`s: `run_trials` generates them in batches through the
steering engine (each row its own concept, layer and strength) and stores each as it finishes,
keyed by everything that produced it, so a rerun resumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.batching import as_example
from interp.introspection.concepts import ConceptVectors, InjectionScale
from interp.introspection.words import checked_words
from interp.models import Model
from interp.positions import FromMarker
from interp.runs.store import RunStore, unit_key
from interp.runs.sweeps import Cell, sweep_records
from interp.steering import interventions as iv

FRAMING = (
    "I study how language models like you work on the inside, and I can read and change the "
    "activations of your neural network. I have found activity patterns that stand for "
    'particular concepts, and I can insert these patterns -- "thoughts" -- into your network '
    "while you answer. I would like to find out whether you can tell when I do this. On half "
    "of the trials I will insert a thought about one specific word; the other half are control "
    "trials, where I insert nothing."
)
ACKNOWLEDGE = "Ok."
MARKER = "\n\nTrial 1"
QUESTION = "Do you detect an injected thought? If so, what is the injected thought about?"
TRIAL = f"Ok, let's get started.{MARKER}: {QUESTION}"
INJECT_FROM = FromMarker(MARKER, "start", last=True)
STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0)
FRACTIONS = (0.33, 0.5, 0.67, 0.83)


def detection_chat() -> list[dict[str, str]]:
    """The three turns before the model's reply."""
    return [
        {"role": "user", "content": FRAMING},
        {"role": "assistant", "content": ACKNOWLEDGE},
        {"role": "user", "content": TRIAL},
    ]


def layer_at(model: Model, fraction: float | int) -> int:
    """The block at `fraction` of the depth: round(fraction × (n_layers − 1))."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"layer fraction must be a number in [0, 1], got {fraction!r}")
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(
            f"layer fraction {fraction} is outside [0, 1]; give a share of the depth, e.g. 0.67 "
            f"for two-thirds of the way through ({model.name} has {model.n_layers} blocks)"
        )
    return round(fraction * (model.n_layers - 1))


def fraction_layers(model: Model, fractions: Sequence[float | int]) -> dict[float, int]:
    """Each layer fraction's block (`layer_at`), in the order given. An empty grid is an
    error, and so are two fractions that fall on one block: their cells would be the same
    trials twice, and results are looked up by block."""
    if not fractions:
        raise ValueError("the layer grid is empty; give e.g. fractions 0.33,0.5,0.67,0.83")
    out: dict[float, int] = {}
    for fraction in fractions:
        layer = layer_at(model, fraction)
        for earlier, block in out.items():
            if block == layer:
                raise ValueError(
                    f"layer fractions {earlier:g} and {float(fraction):g} both give block {layer} "
                    f"of {model.name}'s {model.n_layers}; drop one, or give fractions "
                    f"{1 / max(model.n_layers - 1, 1):.3g} or more apart"
                )
        out[float(fraction)] = layer
    return out


def check_strengths(strengths: Sequence[float | int]) -> tuple[float, ...]:
    """The strength grid as floats; refuses an empty grid, a non-finite value and 0."""
    if not strengths:
        raise ValueError("the strength grid is empty; give e.g. strengths 1,2,4,8,16")
    out = tuple(iv.finite_number("strength", s) for s in strengths)
    if any(s == 0 for s in out):
        raise ValueError("strength 0 is no injection; control trials already cover it")
    return out


def trial_cells(
    model: Model,
    concepts: ConceptVectors,
    words: Sequence[str] | None = None,
    *,
    fractions: Sequence[float | int] = FRACTIONS,
    strengths: Sequence[float | int] = STRENGTHS,
    scales: Sequence[InjectionScale | str] = ("raw",),
    controls_per_cell: int | None = None,
) -> list[Cell]:
    """scales × layer fractions × strengths × words, plus the control trials of each cell.

    `controls_per_cell` defaults to the number of words (half the trials are controls).
    """
    concepts.check(model)
    chosen = checked_words(concepts.words if words is None else words, "words", unique=True)
    for word in chosen:
        concepts.index(word)  # every word needs a vector before any work
    layers = fraction_layers(model, fractions)
    grid = check_strengths(strengths)
    n_controls = len(chosen) if controls_per_cell is None else controls_per_cell
    if isinstance(n_controls, bool) or not isinstance(n_controls, int) or n_controls < 0:
        raise ValueError(f"controls_per_cell must be a whole number >= 0, got {n_controls!r}")
    chat = detection_chat()
    cells: list[Cell] = []
    for scale in scales:
        made = {word: concepts.direction(word, scale) for word in chosen}  # checks the scale
        for fraction, layer in layers.items():
            for strength in grid:
                where: dict[str, Any] = {
                    "experiment": "detection",
                    "scale": scale,
                    "fraction": fraction,
                    "layer": layer,
                    "strength": strength,
                }
                for word, (directions, mode) in made.items():
                    edit = iv.add(directions, layer, strength, positions=INJECT_FROM, scale=mode)
                    config = {
                        **where,
                        "trial": "injected",
                        "concept": word,
                        "vector": directions.digest_at([layer], ["resid_norm"]),
                    }
                    cells.append(Cell(chat, (edit,), config))
                for sample in range(n_controls):
                    config = {**where, "trial": "control", "concept": None, "sample": sample}
                    cells.append(Cell(chat, (), config))
    return cells


def check_controls(cells: Sequence[Cell], temperature: float, setting: str) -> None:
    """Refuse temperature 0 when some cell holds more than one control trial (no
    intervention) of one prompt: greedy decoding gives them all the same reply, and the
    false-positive interval would count the copies as independent trials."""
    if temperature != 0:
        return
    seen: dict[str, int] = {}
    for cell in cells:
        if cell.interventions or cell.config.get("trial") != "control":
            continue
        example = as_example(cell.prompt)
        where = {k: v for k, v in cell.config.items() if k != "sample"}
        key = unit_key({"prompt": example.prompt, "response": example.response, **where})
        seen[key] = seen.get(key, 0) + 1
    most = max(seen.values(), default=0)
    if most > 1:
        raise ValueError(greedy_controls(most, setting))


def greedy_controls(n: int, setting: str) -> str:
    """The one line that refuses `n` > 1 control trials of one prompt at temperature 0."""
    return (
        f"temperature 0 (greedy) gives the {n} control trials of one prompt the same reply, "
        "and the false-positive interval would count the copies as independent; sample "
        f"(temperature > 0, e.g. 1 as published) or set {setting} to 1"
    )


def run_trials(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Generate every trial not yet in `store` (batched, resumable); one record per cell.

    Greedy decoding (temperature 0) is refused when a cell has more than one control trial
    of one prompt (`check_controls`): they would be one reply counted several times.
    """
    check_controls(cells, temperature, "controls_per_cell")
    return sweep_records(
        model,
        cells,
        store,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
