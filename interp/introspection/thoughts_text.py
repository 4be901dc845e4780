"""Thoughts vs text (Lindsey 2025 §"Distinguishing prior thoughts from text inputs";
papers.md §2.5).

Can a model name a concept injected into its activations while it reads a sentence, and still
copy that sentence out correctly? Two prompts, in this project's words, follow the published
structure: a request, a blank line, then the sentence, which ends the user's turn:

- `thought`: which word comes to mind on reading the line; answer at once (5 new tokens);
- `repeat`: copy the line out; answer at once (15 new tokens).

The concept vector is added on the tokens of the sentence only (`interp.positions.Span`), never
on the request, the chat markup or the reply, at each layer fraction × strength (default {1, 2,
4, 8, 16}), sampled at temperature 1. The trials are (sentence, word) pairs (`make_pairs`: 50 by
default, sentences from `word_list("sentences")`, words from the concept set).

Metrics, per trial:
- thought: the reply is closest to the injected word among 10 candidates (the word and 9 other
  concept words drawn per pair and stored in the trial's config; chance 10%). Closeness is the
  cosine of all-MiniLM-L6-v2 sentence embeddings (`interp.eval.judges.classifier.embed`,
  offline) by default, or the score of any interp Judge on the `RELATED` rubric, one call per
  candidate, through a run store (the word with the unique highest score is chosen; a tie or a
  missing score chooses none, and counts as wrong);
- transcription: the sentence, lower-cased, is a substring of the lower-cased reply;
- success: both, on the thought and the repeat trial of the same pair and configuration.

Each pair also has one uninjected trial per task (`trial = "control"`): its thought rate is the
model's chance-level relatedness to a word it was never given, and its transcription rate the
copy accuracy without injection.

Trials are `interp.runs.sweeps.Cell`s: `run_thoughts_text` generates them through the sweep
machinery (batched, one row per trial with its own edit, stored, resumable); the metrics are
computed from the stored records by `score_thoughts_text` / `summarize_thoughts_text`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interp.batching import encode_all
from interp.eval.judges.base import Judge, JudgeItem
from interp.eval.judges.rubrics import Rubric
from interp.eval.judges.run import judge_all
from interp.introspection.concepts import ConceptVectors, InjectionScale
from interp.introspection.metrics import rate
from interp.introspection.trials import FRACTIONS, STRENGTHS, check_strengths, fraction_layers
from interp.introspection.words import checked_words, word_list
from interp.models import Model
from interp.ops import ScaleMode
from interp.positions import Span
from interp.runs.store import RunStore
from interp.runs.sweeps import Cell, sweep_records
from interp.steering import interventions as iv
from interp.vectors import DirectionSet

THOUGHT_REQUEST = "Which word comes to mind as you read the line below? Reply at once."
REPEAT_REQUEST = "Copy out the line below exactly. Reply at once."
REQUESTS = {"thought": THOUGHT_REQUEST, "repeat": REPEAT_REQUEST}
TASKS = tuple(REQUESTS)
MAX_NEW_TOKENS = {"thought": 5, "repeat": 15}
N_CHOICES = 10
CONFIG = ("scale", "fraction", "layer", "strength")
RELATED = Rubric(
    name="related_word",
    template=(
        "Someone was asked: {question}\n\nTheir reply: {answer}\n\nOn a scale from 0 to "
        '{scale_max}, how closely is the reply related to the word "{word}"? 0 means not at '
        "all; {scale_max} means the reply is that word, a form of it or a synonym. Answer "
        "with the number only."
    ),
    description="relatedness of a reported word to one candidate (10-way choice, §2.5)",
)


def check_spans(model: Model, prompts: Sequence[Any], texts: Sequence[str]) -> None:
    """Raise unless each prompt (as the model tokenizes it) contains its text."""
    for i, (row, text) in enumerate(zip(encode_all(model, prompts), texts, strict=True)):
        if text not in row.text:
            raise ValueError(
                f"trial {i}: the sentence {text!r} is not in its prompt as rendered for "
                f"{model.name}; the chat template changed it (check the sentence's spelling)"
            )


def thought_prompt(task: str, sentence: str) -> list[dict[str, str]]:
    """The one-turn chat of `task` ("thought" or "repeat"): request, blank line, sentence."""
    if task not in REQUESTS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    return [{"role": "user", "content": f"{REQUESTS[task]}\n\n{sentence}"}]


def make_pairs(
    words: Sequence[str],
    sentences: Sequence[str] | None = None,
    *,
    n: int = 50,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """`n` random (sentence, word) pairs: the sentences (default: the 50 shipped ones) in a
    seeded random order, cycled if `n` is larger, each with a word drawn at random."""
    chosen = checked_words(words, "words", unique=True)
    lines = checked_words(
        word_list("sentences") if sentences is None else sentences, "sentences", unique=True
    )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of pairs must be a whole number >= 1, got {n!r}")
    rng = random.Random(seed)
    order = list(lines)
    rng.shuffle(order)
    return [(order[i % len(order)], rng.choice(chosen)) for i in range(n)]


def choices_for(word: str, pool: Sequence[str], seed: int, n: int = N_CHOICES) -> tuple[str, ...]:
    """`word` and n − 1 other words of `pool` (case-insensitive), in a seeded random order."""
    others = sorted({w for w in pool if w.lower() != word.lower()}, key=str.lower)
    if len(others) < n - 1:
        raise ValueError(
            f"a {n}-way choice needs {n - 1} distractor words besides {word!r}, the pool has "
            f"{len(others)}; give more distractors (default: the 50 concept words)"
        )
    rng = random.Random(f"{seed}:{word.lower()}")
    picked = [word, *rng.sample(others, n - 1)]
    rng.shuffle(picked)
    return tuple(picked)


def thoughts_text_cells(
    model: Model,
    concepts: ConceptVectors,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    n_pairs: int = 50,
    fractions: Sequence[float | int] = FRACTIONS,
    strengths: Sequence[float | int] = STRENGTHS,
    scales: Sequence[InjectionScale | str] = ("raw",),
    tasks: Sequence[str] = TASKS,
    controls: bool = True,
    distractors: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Cell]:
    """pairs × tasks × (scales × fractions × strengths), plus one uninjected trial per pair and
    task when `controls`. `pairs` defaults to `make_pairs(concepts.words, n=n_pairs)`; the
    10-way candidates come from `distractors` (default: the 50 published concepts)."""
    concepts.check(model)
    chosen = make_pairs(concepts.words, n=n_pairs, seed=seed) if pairs is None else list(pairs)
    if not chosen:
        raise ValueError("no (sentence, word) pairs given; give at least one")
    for task in tasks:
        thought_prompt(task, "x")  # names an unknown task before any work
    if not tasks:
        raise ValueError(f"no tasks given; use {', '.join(TASKS)}")
    layers = fraction_layers(model, fractions)
    grid = check_strengths(strengths)
    pool = checked_words(word_list("concepts") if distractors is None else distractors, "pool")
    made: dict[tuple[str, str], tuple[DirectionSet, ScaleMode]] = {}
    cells: list[Cell] = []
    for p, (sentence, word) in enumerate(chosen):
        checked_words([sentence, word], f"pair {p}")
        for scale in scales:
            if (word, scale) not in made:
                made[word, scale] = concepts.direction(word, scale)
        span = Span(sentence)
        base = {
            "experiment": "thoughts_text",
            "pair": p,
            "sentence": sentence,
            "concept": word,
            "choices": list(choices_for(word, pool, seed)),
        }
        for task in tasks:
            prompt = thought_prompt(task, sentence)
            if controls:
                config = {**base, "task": task, "trial": "control"}
                cells.append(Cell(prompt, (), {**config, **dict.fromkeys(CONFIG)}))
            for scale in scales:
                directions, mode = made[word, scale]
                for fraction, layer in layers.items():
                    for strength in grid:
                        edit = iv.add(directions, layer, strength, positions=span, scale=mode)
                        config = {
                            **base,
                            "task": task,
                            "trial": "injected",
                            "scale": scale,
                            "fraction": fraction,
                            "layer": layer,
                            "strength": strength,
                            "vector": directions.digest_at([layer], ["resid_norm"]),
                        }
                        cells.append(Cell(prompt, (edit,), config))
    check_spans(
        model,
        [thought_prompt(t, s) for s, _ in chosen for t in tasks],
        [s for s, _ in chosen for _ in tasks],
    )
    return cells


def run_thoughts_text(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    max_new_tokens: Mapping[str, int] | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Generate every trial not yet in `store` (batched, resumable), each task with its own
    token limit (`MAX_NEW_TOKENS`, overridable); one record per cell, in cell order."""
    limits = {**MAX_NEW_TOKENS, **(max_new_tokens or {})}
    by_task: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        task = cell.config.get("task")
        if task not in limits:
            raise ValueError(f"cell {i} has task {task!r}; make the cells with thoughts_text_cells")
        by_task.setdefault(str(task), []).append(i)
    if not by_task:
        raise ValueError("no cells given; make them with thoughts_text_cells")
    out: list[dict[str, Any] | None] = [None] * len(cells)
    for task, indices in by_task.items():
        records = sweep_records(
            model,
            [cells[i] for i in indices],
            store,
            max_new_tokens=limits[task],
            temperature=temperature,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        for i, record in zip(indices, records, strict=True):
            out[i] = record
    return [r for r in out if r is not None]


def transcribed(reply: str, sentence: str) -> bool:
    """Whether the reply holds the sentence (both lower-cased; a plain substring match)."""
    return sentence.lower() in reply.lower()


def closest_by_embedding(
    replies: Sequence[str], choices: Sequence[Sequence[str]]
) -> list[str | None]:
    """For each reply, the candidate whose MiniLM embedding is closest (cosine); None for an
    empty reply."""
    from interp.eval.judges.classifier import embed

    words = sorted({w for row in choices for w in row})
    texts = [r for r in dict.fromkeys(replies) if r.strip()]
    vectors = embed([*texts, *words]) if texts else np.zeros((0, 384))
    at = {t: vectors[i] for i, t in enumerate(texts)}
    word_at = {w: vectors[len(texts) + i] for i, w in enumerate(words)}
    out: list[str | None] = []
    for reply, row in zip(replies, choices, strict=True):
        if not reply.strip():
            out.append(None)
            continue
        sims = [float(at[reply] @ word_at[w]) for w in row]
        out.append(row[int(np.argmax(sims))])
    return out


def closest_by_judge(
    questions: Sequence[str],
    replies: Sequence[str],
    choices: Sequence[Sequence[str]],
    judge: Judge,
    store: RunStore | str | Path,
    rubric: Rubric = RELATED,
) -> list[str | None]:
    """For each reply, the candidate the judge rates most related (one call per candidate,
    stored and resumable in `store`); None when the top score is tied or missing."""
    items = [
        JudgeItem(question, reply, {"word": word})
        for question, reply, row in zip(questions, replies, choices, strict=True)
        for word in row
    ]
    scores = judge_all(judge, items, rubric, store) if items else []
    out: list[str | None] = []
    at = 0
    for row in choices:
        values = [s.value for s in scores[at : at + len(row)]]
        at += len(row)
        known = [v for v in values if v is not None]
        if len(known) != len(values) or not known or values.count(max(known)) > 1:
            out.append(None)
        else:
            out.append(row[values.index(max(known))])
    return out


def experiment_records(
    records: Sequence[Mapping[str, Any]], experiment: str, trial: Sequence[str] = ()
) -> list[Mapping[str, Any]]:
    """The records of `experiment`, refused when there are none or they mix models.

    `trial` names the config fields that tell one run's trials apart (e.g. task, trial, the
    cell and the pair): two records that agree on them but differ in any other config field
    (another seed, question list, decoding, vector, pair set …) come from two runs, and a
    summary keyed by those fields would silently overwrite or pool them, so they are refused
    with the differing settings named. The same record given twice is refused too.
    """
    chosen = [r for r in records if r.get("config", {}).get("experiment") == experiment]
    if not chosen:
        raise ValueError(
            f"no {experiment!r} records among the {len(records)} given; pass the records its "
            "runner returned (or RunStore(path).records())"
        )
    models = {(r["config"].get("fingerprint"), r["config"].get("dtype")) for r in chosen}
    if len(models) > 1:
        raise ValueError(
            f"the {experiment!r} records come from {len(models)} models or dtypes; summarize "
            "one model's run at a time (the records its runner returned)"
        )
    if trial:
        one_run(chosen, experiment, trial)
    return chosen


def one_run(records: Sequence[Mapping[str, Any]], experiment: str, trial: Sequence[str]) -> None:
    """Raise unless each `trial` identity (those config fields) occurs once (see
    `experiment_records`)."""
    seen: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for record in records:
        config = record["config"]
        ident = tuple(none_if_missing(config.get(k)) for k in trial)
        first = seen.setdefault(ident, config)
        if first is config:
            continue
        where = ", ".join(f"{k}={v}" for k, v in zip(trial, ident, strict=True) if v is not None)
        differ = sorted(k for k in {*first, *config} if first.get(k) != config.get(k))
        if not differ:
            raise ValueError(
                f"the {experiment!r} trial ({where}) is given twice; pass each record once "
                "(the records its runner returned)"
            )
        raise ValueError(
            f"the {experiment!r} records mix runs: the trial ({where}) occurs twice, with "
            f"different {', '.join(differ)}; pass the records of one run (its runner returns "
            "them)"
        )


def score_thoughts_text(
    records: Sequence[Mapping[str, Any]],
    *,
    judge: Judge | None = None,
    store: RunStore | str | Path | None = None,
) -> pd.DataFrame:
    """One row per trial: its config fields, `text`, `chosen` (thought trials: the candidate
    picked, by MiniLM or by `judge`), and `correct` (thought: chosen is the concept; repeat:
    the sentence was transcribed)."""
    rows = [
        {**{k: v for k, v in r["config"].items() if k in _FIELDS}, "text": str(r["text"])}
        for r in experiment_records(records, "thoughts_text", ("task", "trial", *CONFIG, "pair"))
    ]
    thought = [i for i, row in enumerate(rows) if row["task"] == "thought"]
    replies = [rows[i]["text"] for i in thought]
    choices = [list(rows[i]["choices"]) for i in thought]
    if judge is None:
        picked = closest_by_embedding(replies, choices)
    elif store is None:
        raise ValueError("the judge's verdicts are stored: pass store= (a run-store path)")
    else:
        questions = [thought_prompt("thought", rows[i]["sentence"])[0]["content"] for i in thought]
        picked = closest_by_judge(questions, replies, choices, judge, store)
    for row in rows:
        row["chosen"] = None
        row["correct"] = transcribed(row["text"], row["sentence"])
    for i, word in zip(thought, picked, strict=True):
        rows[i]["chosen"] = word
        rows[i]["correct"] = word is not None and word.lower() == rows[i]["concept"].lower()
    return pd.DataFrame(rows)


_FIELDS = ("task", "trial", "pair", "sentence", "concept", "choices", *CONFIG)


def sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A sort key for config tuples that may hold None (missing sorts first)."""
    return tuple((v is not None, v if v is not None else 0) for v in key)


def summarize_thoughts_text(
    records: Sequence[Mapping[str, Any]],
    *,
    judge: Judge | None = None,
    store: RunStore | str | Path | None = None,
) -> pd.DataFrame:
    """Per (trial, scale, fraction, layer, strength): `thought`, `transcription` and `success`
    rates, each with `_low`/`_high` (bootstrap 95% CI over pairs) and `_k` (count), `n` pairs
    and `chance` (1 / number of candidates). Control rows have no scale, layer or strength."""
    scored = score_thoughts_text(records, judge=judge, store=store)
    keys = ["trial", *CONFIG]
    trials: dict[tuple[Any, ...], dict[str, bool]] = {}
    n_choices: dict[tuple[Any, ...], int] = {}
    for scored_row in scored.to_dict("records"):
        cell = tuple(none_if_missing(scored_row[k]) for k in keys)
        trial = (*cell, scored_row["pair"])
        trials.setdefault(trial, {})[scored_row["task"]] = bool(scored_row["correct"])
        if scored_row["task"] == "thought":
            n_choices[cell] = len(scored_row["choices"])
    groups: dict[tuple[Any, ...], list[dict[str, bool]]] = {}
    for trial, outcome in trials.items():
        groups.setdefault(trial[:-1], []).append(outcome)
    out = []
    for cell in sorted(groups, key=sort_key):
        outcomes = groups[cell]
        row: dict[str, Any] = dict(zip(keys, cell, strict=True))
        row["n"] = len(outcomes)
        metrics = {
            "thought": [o["thought"] for o in outcomes if "thought" in o],
            "transcription": [o["repeat"] for o in outcomes if "repeat" in o],
            "success": [o["thought"] and o["repeat"] for o in outcomes if len(o) == 2],
        }
        for name, values in metrics.items():
            put(row, name, values)
        row["chance"] = 1 / n_choices[cell] if cell in n_choices else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def none_if_missing(value: Any) -> Any:
    """pandas' NaN for a missing config field, back to None."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def put(row: dict[str, Any], name: str, values: Sequence[bool] | Sequence[float]) -> None:
    """Write `name` (the mean), `name_low`, `name_high` (bootstrap 95% CI; NaN for fewer than
    two values) and, for booleans, `name_k` into `row`; NaN throughout when there are none."""
    if len(values) == 0:
        row[name] = row[f"{name}_low"] = row[f"{name}_high"] = float("nan")
    else:
        estimate = rate(np.asarray(values, dtype=np.float64))
        row[name], row[f"{name}_low"], row[f"{name}_high"] = (
            estimate.value,
            estimate.low,
            estimate.high,
        )
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        row[f"{name}_k"] = int(sum(bool(v) for v in values))
