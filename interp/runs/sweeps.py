"""Steering sweeps: many (prompt, intervention) cells as batched generations, resumable.

A sweep is a list of cells; each cell is one prompt under one list of interventions plus a
JSON description of that configuration. `run_sweep` generates every cell not yet in the run
store, `batch_size` rows per generate call (each row with its own interventions), and appends
each finished cell at once, so a killed run loses at most the batch in flight. Each cell samples
with a seed derived from its own config, so re-batching or resuming reproduces the same text.

A cell's key covers everything that produced it: the model fingerprint (its weights and
architecture; not its name, which is stored as a plain field) and the dtype it ran in, the
digest of the prompt's token ids (so another chat template or tokenizer never reuses a text),
decoding settings, each intervention (the vector by its values at the edited layers, site,
positions, scale, coefficient) and the identity of the run-time `Scorer`. Another vector,
dtype, decoding setting or scorer therefore computes new units, never reuses old ones. Numbers
are keyed by value (`interp.runs.store.canonical`): coefficients 2 and 2.0 are one unit.

The generation itself is keyed without the scorer (`gen_key`, stored in every record with the
text and tokens): asking for another scorer (or none) reuses the stored generation and only
runs the new scorer, so changing `--metric` never regenerates.

`grid` builds the usual sweep: prompts × layers × coefficients (× samples) with one additive
intervention per cell; its cells also record the vector's digest at their layer, so every
coefficient (including the unsteered 0) is a point of that vector's curve.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.batching import as_example, encode_all
from interp.models import Model
from interp.ops import ScaleMode
from interp.positions import LAST_PROMPT, RESPONSE, Positions
from interp.progress import bar as progress_bar
from interp.runs.store import RunStore, unit_key
from interp.steering import interventions as iv
from interp.steering.generation import Generation, generate, stop_strings
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
    coefs: Sequence[float | int],
    positions: Positions = RESPONSE | LAST_PROMPT,
    scale: ScaleMode = "raw",
    samples: int = 1,
) -> list[Cell]:
    """prompts × layers × coefs × samples, one `add` per cell (coef 0 runs unsteered).

    Each cell records the vector by its values at the cell's layer (`digest_at`), so every
    coefficient, the unsteered 0 included, is a point of that vector's curve there, and a
    sub-set or a set with a stat added keys the same. Coefficients are stored as floats.
    """
    examples = {
        "prompts": "prompts=['Tell me a story']",
        "layers": "layers=[10, 15]",
        "coefs": "coefs=[0, 4, 8] (0 runs unsteered)",
    }
    for name, values in (("prompts", prompts), ("layers", layers), ("coefs", coefs)):
        if len(values) == 0:
            raise ValueError(
                f"grid: {name} is empty ({values!r}), so the sweep would have no cells; give at "
                f"least one, e.g. {examples[name]}"
            )
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"grid: samples must be an integer >= 1, got {samples!r}")
    samples = int(samples)
    cells = []
    for p, prompt in enumerate(prompts):
        for given in layers:
            if isinstance(given, (list, tuple)):
                raise TypeError(
                    f"grid layers are one block per cell, got {given!r}; pass e.g. [10, 15]"
                )
            (layer,) = iv.resolve_layers(vectors, given)
            for coef in coefs:
                value = iv.finite_number("coef", coef)  # 0, 0.0 and -0.0 are one float
                plan = (
                    (iv.add(vectors, layer, value, positions=positions, scale=scale),)
                    if value != 0
                    else ()
                )
                for sample in range(samples):
                    config = {
                        "vector": vectors.digest_at([layer]),
                        "prompt_index": p,
                        "layer": layer,
                        "coef": value,
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
    stop: Sequence[str] | None = None,
    allow_other_model: bool = False,
    progress: bool | None = None,
) -> RunStore:
    """Generate every cell not yet in `store` and append it; returns the store.

    A generation is keyed without the scorer (`gen_key`, stored in each record with its text
    and tokens): a unit asked for under another scorer, whose generation is already stored,
    reuses that text and tokens and only runs the scorer. `stop` is as in `generate` (None:
    the model's own stop strings); stop strings are part of the key when there are any.
    """
    return _run(
        model,
        cells,
        store,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
        scorer=scorer,
        stop=stop,
        allow_other_model=allow_other_model,
        progress=progress,
    )[0]


def _run(
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
    stop: Sequence[str] | None = None,
    allow_other_model: bool = False,
    progress: bool | None = None,
) -> tuple[RunStore, list[str]]:
    """The sweep; returns the store and each cell's unit key, in cell order."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if len(cells) == 0:
        raise ValueError(
            f"the sweep has no cells (cells={cells!r}); build them with grid(prompts, vectors, "
            "layers, coefs), each of those non-empty, or pass Cell(...) objects"
        )
    store = store if isinstance(store, RunStore) else RunStore(store)
    generation: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
    }
    stops = stop_strings(model, stop)
    if stops:  # keyed only when there are any, so runs without stop strings keep their keys
        generation["stop"] = list(stops)
    full, gen_keys = _unit_configs(model, cells, generation, scorer)
    todo = store.todo(full)
    made = _stored_generations(store, {gen_keys[i] for i in todo}) if todo else {}
    with progress_bar(len(cells), "sweep", "gen", progress, initial=len(cells) - len(todo)) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            fresh = [i for i in chunk if gen_keys[i] not in made]
            if fresh:
                outs = generate(
                    model,
                    [cells[i].prompt for i in fresh],
                    [list(cells[i].interventions) for i in fresh],
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    seeds=[seed + int(gen_keys[i][:12], 16) % 2**31 for i in fresh],
                    batch_size=batch_size,
                    stop=stops,
                    allow_other_model=allow_other_model,
                    progress=False,
                )
                made.update((gen_keys[i], out) for i, out in zip(fresh, outs, strict=True))
            gens = [made[gen_keys[i]] for i in chunk]
            extras = (
                scorer.score([full[i] for i in chunk], gens)
                if scorer is not None
                else [{} for _ in chunk]
            )
            for i, out, extra in zip(chunk, gens, extras, strict=True):
                store.append(
                    full[i],
                    {
                        "model": model.name,
                        "gen_key": gen_keys[i],
                        "text": out.text,
                        "tokens": list(out.tokens),
                        "n_tokens": len(out.tokens),
                        "finish": out.finish,
                        **extra,
                    },
                )
            bar.update(len(chunk))
    return store, [unit_key(config) for config in full]


def _unit_configs(
    model: Model, cells: Sequence[Cell], generation: Mapping[str, Any], scorer: Scorer | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each cell's full unit config (its store key's content) and its generation key."""
    # the weights (fingerprint) and the dtype they run in; the tokens the model actually sees
    identity = {"fingerprint": model.fingerprint(), "dtype": _dtype_name(model)}
    encoded = encode_all(model, [cell.prompt for cell in cells])
    produced = [
        {
            **identity,
            **generation,
            **cell.config,
            # the prompt as given, and the digest of the token ids the model actually sees
            "prompt": {**_prompt_json(cell.prompt), "tokens": tokens.digest()[:20]},
            "interventions": [i.describe() for i in cell.interventions],
        }
        for cell, tokens in zip(cells, encoded, strict=True)
    ]
    gen_keys = [unit_key(config) for config in produced]
    # the scorer is part of the unit's key, not of its generation's: same text under any scorer
    scored = {"scorer": dict(scorer.identity) if scorer is not None else None}
    return [{**config, **scored} for config in produced], gen_keys


def sweep_records(
    model: Model, cells: Sequence[Cell], store: RunStore | str | Path, **settings: Any
) -> list[dict[str, Any]]:
    """`run_sweep` (same arguments), then each cell's stored record, in cell order.

    A record holds the unit's `config`, `text`, `tokens`, `finish` and any scorer fields.
    """
    runs, keys = _run(model, cells, store, **settings)
    wanted = set(keys)
    found = {r["key"]: r for r in runs.records() if r.get("key") in wanted}
    return [found[key] for key in keys]


def _dtype_name(model: Model) -> str:
    return str(model.dtype).removeprefix("torch.")


def _stored_generations(store: RunStore, wanted: set[str]) -> dict[str, Generation]:
    """Generations already in `store` (under any scorer) for the generation keys `wanted`."""
    found: dict[str, Generation] = {}
    for record in store.records():
        key = record.get("gen_key")
        if key in wanted and key not in found and isinstance(record.get("tokens"), list):
            found[key] = Generation(record["text"], tuple(record["tokens"]), record["finish"])
    return found
