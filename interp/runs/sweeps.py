"""Steering sweeps: many (prompt, intervention) cells as batched generations, resumable.

A sweep is a list of cells; each cell is one prompt under one list of interventions plus a
JSON description of that configuration. `run_sweep` generates every cell not yet in the run
store, `batch_size` rows per generate call (each row with its own interventions), and appends
each finished cell at once, so a killed run loses at most the batch in flight. Each cell samples
with a seed derived from its own config, so re-batching or resuming reproduces the same text.

A cell's key covers everything that produced it: the model fingerprint (not its name, which is
stored as a plain field), decoding settings, the prompt, each intervention (the vector by content
digest, layers, site, positions, scale, coefficient) and the identity of the run-time `Scorer`.
Another vector, decoding setting or scorer therefore computes new units, never reuses old ones.

`grid` builds the usual sweep: prompts × layers × coefficients (× samples) with one additive
intervention per cell; its cells also record the vector's digest, so every coefficient
(including the unsteered 0) is a point of that vector's curve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.batching import as_example
from interp.models import Model
from interp.ops import ScaleMode
from interp.positions import LAST_PROMPT, RESPONSE, Positions
from interp.progress import bar as progress_bar
from interp.runs.store import RunStore, unit_key
from interp.steering import interventions as iv
from interp.steering.generation import Generation, generate
from interp.vectors import DirectionSet

# score(configs, generations) -> one dict of extra result fields per cell (e.g. a projection)
ScoreFn = Callable[[list[Mapping[str, Any]], list[Generation]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Scorer:
    """A run-time scorer and its JSON identity (what it computes, on what), part of every key."""

    identity: Mapping[str, Any]
    score: ScoreFn


@dataclass(frozen=True)
class Cell:
    """One unit of a sweep."""

    prompt: Any  # string, chat or Example
    interventions: tuple[iv.Intervention, ...]
    config: Mapping[str, Any] = field(default_factory=dict)  # what varies (layer, coef, sample …)


def _prompt_json(prompt: Any) -> dict[str, Any]:
    """The prompt as stored in results: a dict that `as_example` reads back."""
    example = as_example(prompt)
    return {"prompt": example.prompt, "response": example.response}


def grid(
    prompts: Sequence[Any],
    vectors: DirectionSet,
    layers: Sequence[int],
    coefs: Sequence[float],
    positions: Positions = RESPONSE | LAST_PROMPT,
    scale: ScaleMode = "raw",
    samples: int = 1,
) -> list[Cell]:
    """prompts × layers × coefs × samples, one `add` per cell (coef 0 runs unsteered)."""
    cells = []
    for p, prompt in enumerate(prompts):
        for layer in layers:
            for coef in coefs:
                plan = (
                    (iv.add(vectors, layer, coef, positions=positions, scale=scale),)
                    if coef != 0
                    else ()
                )
                for sample in range(samples):
                    config = {
                        "vector": vectors.digest(),
                        "prompt_index": p,
                        "layer": layer,
                        "coef": coef,
                        "positions": str(positions),
                        "scale": scale,
                        "sample": sample,
                    }
                    cells.append(Cell(prompt, plan, config))
    return cells


def run_sweep(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    scorer: Scorer | None = None,
    allow_other_model: bool = False,
    progress: bool | None = None,
) -> RunStore:
    """Generate every cell not yet in `store` and append it; returns the store."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not cells:
        raise ValueError("the sweep has no cells")
    store = store if isinstance(store, RunStore) else RunStore(store)
    generation = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
    }
    identity = {"fingerprint": model.fingerprint()}
    produced = [
        {
            **identity,
            **generation,
            **cell.config,
            "prompt": _prompt_json(cell.prompt),
            "interventions": [i.describe() for i in cell.interventions],
        }
        for cell in cells
    ]
    # the scorer is part of the key, not of the sampling seed: same text under any scorer
    scored = {"scorer": dict(scorer.identity) if scorer is not None else None}
    full = [{**config, **scored} for config in produced]
    todo = store.todo(full)
    with progress_bar(len(cells), "sweep", "gen", progress, initial=len(cells) - len(todo)) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            seeds = [seed + int(unit_key(produced[i])[:12], 16) % 2**31 for i in chunk]
            outs = generate(
                model,
                [cells[i].prompt for i in chunk],
                [list(cells[i].interventions) for i in chunk],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seeds=seeds,
                batch_size=batch_size,
                allow_other_model=allow_other_model,
                progress=False,
            )
            extras = (
                scorer.score([full[i] for i in chunk], outs)
                if scorer is not None
                else [{} for _ in chunk]
            )
            for i, out, extra in zip(chunk, outs, extras, strict=True):
                store.append(
                    full[i],
                    {
                        "model": model.name,
                        "text": out.text,
                        "n_tokens": len(out.tokens),
                        "finish": out.finish,
                        **extra,
                    },
                )
            bar.update(len(chunk))
    return store
