"""AxBench's steering score: three 0-2 judge ratings combined by their harmonic mean.

AxBench (Wu et al. 2025, ICML 2025; stanfordnlp/axbench, `lm_judge.py`) rates each steered
generation on concept relevance, instruction relevance and fluency, each 0, 1 or 2 (the
built-in rubrics `axbench-concept`, `axbench-instruction`, `axbench-fluency`), and scores it
by the harmonic mean of the three, which is 0 as soon as one rating is 0: a fluent, on-topic
text that lacks the concept is a failed steer, and so is gibberish full of the concept.

Judges here return 0-100 (`Score.value`); `points` turns one back into AxBench's 0-2 scale.
`score_steering(judge, items, store)` does the whole thing with any judge (API, local): the
three rubrics through the run store (cached, resumable), then `combine` per item. Each item
needs the field `concept`; `question` is the instruction the steered model was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interp.eval.judges.base import Judge, JudgeItem, Score
from interp.eval.judges.rubrics import builtin
from interp.eval.judges.run import judge_all
from interp.runs.store import RunStore

RUBRICS = ("axbench-concept", "axbench-instruction", "axbench-fluency")

SCALE = 2.0


def points(score: Score) -> float | None:
    """A judge Score on a 0-2 rubric (0-100 in `value`) as AxBench's 0-2 rating, or None."""
    return None if score.value is None else score.value * SCALE / 100.0


def combine(
    concept: float | None, instruction: float | None, fluency: float | None
) -> float | None:
    """Harmonic mean of three 0-2 ratings; 0 if any is 0, None if any is missing."""
    ratings = {"concept": concept, "instruction": instruction, "fluency": fluency}
    for name, value in ratings.items():
        if value is None:
            continue
        if isinstance(value, bool) or not math.isfinite(value) or not 0.0 <= value <= SCALE:
            raise ValueError(
                f"AxBench {name} rating must be a number in [0, 2], got {value!r}; a judge's "
                "0-100 Score converts with axbench.points(score)"
            )
    if any(value is None for value in ratings.values()):
        return None
    values = [float(v) for v in ratings.values() if v is not None]
    if any(v == 0.0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


@dataclass(frozen=True)
class SteeringScore:
    """AxBench's three 0-2 ratings of one steered generation and their harmonic mean."""

    concept: float | None
    instruction: float | None
    fluency: float | None
    combined: float | None  # None when a rating is missing (the judge gave no score)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_steering(
    judge: Judge,
    items: Sequence[JudgeItem],
    store: RunStore | str | Path,
    *,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[SteeringScore]:
    """Rate each item on the three AxBench rubrics with `judge` and combine them, in order.

    Ratings go through `judge_all` into `store`, so judging again costs nothing and an
    interrupted run resumes. Every item needs the field `concept`.
    """
    for i, item in enumerate(items):
        if isinstance(item, JudgeItem) and "concept" not in item.fields:
            raise ValueError(
                f"item {i} has no 'concept' field; AxBench's concept rubric needs it: "
                "JudgeItem(instruction, generation, {'concept': ...})"
            )
    runs = store if isinstance(store, RunStore) else RunStore(store)
    ratings = [
        [
            points(s)
            for s in judge_all(
                judge, items, builtin(name), runs, batch_size=batch_size, progress=progress
            )
        ]
        for name in RUBRICS
    ]
    return [SteeringScore(c, i, f, combine(c, i, f)) for c, i, f in zip(*ratings, strict=True)]
