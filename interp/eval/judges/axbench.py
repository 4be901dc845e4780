"""AxBench's steering score: three 0-2 judge ratings combined by their harmonic mean.

AxBench (Wu et al. 2025, ICML 2025; stanfordnlp/axbench, `lm_judge.py`) rates each steered
generation on concept relevance, instruction relevance and fluency, each 0, 1 or 2 (the
built-in rubrics `axbench-concept`, `axbench-instruction`, `axbench-fluency`), and scores it
by the harmonic mean of the three, which is 0 as soon as one rating is 0: a fluent, on-topic
text that lacks the concept is a failed steer, and so is gibberish full of the concept.

Judges here return 0-100 (`Score.value`); `points` turns one back into AxBench's 0-2 scale.
"""

from __future__ import annotations

import math

from interp.eval.judges.base import Score

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
