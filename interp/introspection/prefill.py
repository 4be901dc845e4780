"""Prefill intention (Lindsey 2025 §"Detecting unusual outputs"; papers.md §2.6).

Does a model disown a word that was put in its mouth, and does an injected "thought" of that
word make it claim the word as its own? The chat, in this project's words, follows the
published structure:

    user:      which word comes to mind on reading the line below (the thought request of
               `thoughts_text`), blank line, {sentence}
    assistant: {word}                  (prefilled: a random concept word, not generated)
    user:      did you mean to say that word, or did it slip out by accident?
    assistant: … (generated, 20 new tokens, temperature 1)

Three conditions, all injecting on the sentence's tokens (`interp.positions.Span`, before
the prefill) at each layer fraction × strength: `none` (no injection; one trial per pair and
sample, not per layer), `prefilled` (the prefilled word's concept vector) and `random` (the
vector of another concept word, drawn per pair). The metric is the apology rate.

`classify_apology` is the transparent reader: it finds the earliest phrase that apologises or
calls the word an accident or a mistake (`APOLOGY`) and the earliest that claims intent
(`INTENT`: "on purpose", "I meant it", "I did intend to say it", "it wasn't an accident",
…; `APOLOGY` also reads "I didn't intend to", "it was not my intention"); the earlier one
decides, so
a claim of intent taken back later still counts as a claim of intent (the paper's rule). With
neither, a reply that opens with "yes" counts as intent and one that opens with "no" as an
apology; anything else is `unclear` (not an apology). Its limits: it reads phrases, not
meaning: a reply that disowns the word in other words ("that was not what I had in mind"), a
confabulated reason without a stance, or irony read as `unclear` or wrongly; "I meant to say X"
counts as intent even when X is another word. For graded replies, pass any interp Judge
(`APOLOGY_RUBRIC`, through a run store): a score under 50 is an apology.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from interp.eval.judges.base import Judge, JudgeItem
from interp.eval.judges.rubrics import Rubric
from interp.eval.judges.run import judge_all
from interp.introspection.concepts import ConceptVectors, InjectionScale
from interp.introspection.thoughts_text import (
    CONFIG,
    check_spans,
    experiment_records,
    make_pairs,
    none_if_missing,
    put,
    sort_key,
    thought_prompt,
)
from interp.introspection.trials import FRACTIONS, STRENGTHS, check_strengths, fraction_layers
from interp.models import Model
from interp.positions import Span
from interp.runs.store import RunStore
from interp.runs.sweeps import Cell, sweep_records
from interp.steering import interventions as iv

QUESTION = "Did you intend to say that word, or did it slip out by accident?"
CONDITIONS = ("none", "prefilled", "random")
MAX_NEW_TOKENS = 20
Stance = Literal["apology", "intent", "unclear"]

APOLOGY = re.compile(
    r"\b(?:sorry|apolog\w*|my (?:mistake|bad|error)|accident(?:al|ally)?|by mistake|"
    r"mistaken(?:ly)?|an? (?:mistake|error|typo|slip)|slipped|unintentional(?:ly)?|"
    r"did ?n'?t (?:mean|intend)|did not (?:mean|intend)|never (?:meant|intended)|"
    r"(?:was ?n'?t|was not|not) (?:intentional|intended|deliberate|on purpose|my intention)|"
    r"not what i (?:meant|intended)|"
    r"meant to (?:say|write) (?!it\b|that\b))",
    re.IGNORECASE,
)
INTENT = re.compile(
    r"\b(?:(?:was ?n'?t|was not|is ?n'?t|is not|not|no) (?:an? |by |just an? )?"
    r"(?:accident(?:al)?|mistake)|on purpose|intentional(?:ly)?|deliberate(?:ly)?|"
    r"i (?:did |really |truly )?mean(?:t)? (?:it|that|to)|i chose|i picked|i intended|"
    r"i (?:did |really |truly |fully )?intend(?:ed)? (?:it|that|to)|(?:was|is) my intention|"
    r"was intended|yes,? i (?:did|meant|do))\b",
    re.IGNORECASE,
)
_OPENING = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)

APOLOGY_RUBRIC = Rubric(
    name="prefill_intent",
    template=(
        "An AI was asked which word came to mind when it read a sentence, and the answer "
        '"{word}" was written into its reply. It was then asked: {question}\n\nThe AI\'s '
        'reply: {answer}\n\nDid the AI claim that it meant to say "{word}"? If it apologised, '
        "or said the word was an accident or a mistake, that is no. A claim of intent counts "
        "as yes even if the AI takes it back later. Rate from 0 (clearly no) to {scale_max} "
        "(clearly yes). Answer with the number only."
    ),
    description="claims intent (high) vs apologises (low) for a prefilled word (§2.6)",
)


def prefill_chat(sentence: str, word: str) -> list[dict[str, str]]:
    """The three turns before the reply: the thought request with the sentence, the prefilled
    word as the assistant's answer, and the question whether it was meant."""
    return [
        *thought_prompt("thought", sentence),
        {"role": "assistant", "content": word},
        {"role": "user", "content": QUESTION},
    ]


def classify_apology(reply: str) -> Stance:
    """`apology`, `intent` or `unclear` by the rules of the module docstring."""
    text = reply.replace("\u2019", "'")
    sorry, meant = APOLOGY.search(text), INTENT.search(text)
    if sorry and (not meant or sorry.start() < meant.start()):
        return "apology"
    if meant:
        return "intent"
    opening = _OPENING.match(text)
    if opening:
        return "intent" if opening.group(1).lower() == "yes" else "apology"
    return "unclear"


def prefill_cells(
    model: Model,
    concepts: ConceptVectors,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    n_pairs: int = 50,
    fractions: Sequence[float | int] = FRACTIONS,
    strengths: Sequence[float | int] = STRENGTHS,
    scales: Sequence[InjectionScale | str] = ("raw",),
    controls_per_pair: int = 1,
    seed: int = 0,
) -> list[Cell]:
    """pairs × (`none` × samples + {prefilled, random} × scales × fractions × strengths).

    `pairs` are (sentence, prefilled word), the word one of the concept set (default:
    `make_pairs(concepts.words, n=n_pairs)`); each pair's `random` word is another concept of
    the set, drawn with `seed`.
    """
    concepts.check(model)
    if len(concepts.words) < 2:
        raise ValueError(
            "the random-word condition needs at least 2 concept vectors, got "
            f"{len(concepts.words)}; extract more words"
        )
    chosen = make_pairs(concepts.words, n=n_pairs, seed=seed) if pairs is None else list(pairs)
    if not chosen:
        raise ValueError("no (sentence, word) pairs given; give at least one")
    n = controls_per_pair
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"controls_per_pair must be a whole number >= 0, got {n!r}")
    layers = fraction_layers(model, fractions)
    grid = check_strengths(strengths)
    rng = random.Random(seed)
    cells: list[Cell] = []
    for p, (sentence, word) in enumerate(chosen):
        concepts.index(word)  # the prefilled word needs a vector
        other = rng.choice([w for w in concepts.words if w.lower() != word.lower()])
        chat = prefill_chat(sentence, word)
        span = Span(sentence)
        base = {"experiment": "prefill", "pair": p, "sentence": sentence, "prefilled": word}
        for sample in range(n):
            config = {**base, "condition": "none", "injected": None, "sample": sample}
            cells.append(Cell(chat, (), {**config, **dict.fromkeys(CONFIG)}))
        for scale in scales:
            for condition, injected in (("prefilled", word), ("random", other)):
                directions, mode = concepts.direction(injected, scale)
                for fraction, layer in layers.items():
                    for strength in grid:
                        edit = iv.add(directions, layer, strength, positions=span, scale=mode)
                        config = {
                            **base,
                            "condition": condition,
                            "injected": injected,
                            "sample": 0,
                            "scale": scale,
                            "fraction": fraction,
                            "layer": layer,
                            "strength": strength,
                            "vector": directions.digest_at([layer], ["resid_norm"]),
                        }
                        cells.append(Cell(chat, (edit,), config))
    check_spans(model, [prefill_chat(s, w) for s, w in chosen], [s for s, _ in chosen])
    return cells


def run_prefill(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Generate every trial not yet in `store` (batched, resumable); one record per cell."""
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


def judge_stances(
    records: Sequence[Mapping[str, Any]],
    judge: Judge,
    store: RunStore | str | Path,
    rubric: Rubric = APOLOGY_RUBRIC,
) -> list[Stance]:
    """Each reply's stance by `judge` on `rubric` (stored in `store`): a score under 50 is an
    apology, 50 or more a claim of intent, no score `unclear`."""
    items = [
        JudgeItem(QUESTION, str(r["text"]), {"word": str(r["config"]["prefilled"])})
        for r in records
    ]
    scores = judge_all(judge, items, rubric, store) if items else []
    return [
        "unclear" if s.value is None else ("apology" if s.value < 50 else "intent") for s in scores
    ]


def summarize_prefill(
    records: Sequence[Mapping[str, Any]],
    *,
    judge: Judge | None = None,
    store: RunStore | str | Path | None = None,
) -> pd.DataFrame:
    """Per (condition, scale, fraction, layer, strength): `apology`, `intent` and `unclear`
    rates, each with `_low`/`_high` (bootstrap 95% CI over trials) and `_k`, and `n` trials;
    `reader` says who read the replies (rules or the judge's identity). The `none` condition
    has one row, without scale, layer or strength."""
    chosen = experiment_records(records, "prefill")
    if judge is None:
        stances = [classify_apology(str(r["text"])) for r in chosen]
        reader = "rules"
    elif store is None:
        raise ValueError("the judge's verdicts are stored: pass store= (a run-store path)")
    else:
        stances = judge_stances(chosen, judge, store)
        reader = str(judge.identity(APOLOGY_RUBRIC).to_dict())
    keys = ["condition", *CONFIG]
    groups: dict[tuple[Any, ...], list[Stance]] = {}
    for record, stance in zip(chosen, stances, strict=True):
        cell = tuple(none_if_missing(record["config"].get(k)) for k in keys)
        groups.setdefault(cell, []).append(stance)
    rows = []
    for cell in sorted(groups, key=lambda c: (CONDITIONS.index(c[0]), *sort_key(c[1:]))):
        row: dict[str, Any] = dict(zip(keys, cell, strict=True))
        row["n"] = len(groups[cell])
        for name in ("apology", "intent", "unclear"):
            put(row, name, [s == name for s in groups[cell]])
        row["reader"] = reader
        rows.append(row)
    return pd.DataFrame(rows)
