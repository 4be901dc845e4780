"""The logprob method of reading a judge's number (Chen et al. 2025; papers.md §1.3).

The judge writes one token at temperature 0 and we read its top-20 log-probabilities. The
score is the expected value over the tokens that are integers in [0, scale_max], normalised by
their total probability, and mapped to 0-100; with less than `MIN_NUMBER_MASS` (0.25) of the
probability on such tokens there is no score (a refusal or a reply that is not a number).

Many tokenizers split numbers into single digits (SmolLM2, Gemma, Qwen); with them one token
can only be 0-9, and a 0-100 scale read this way is silently wrong. `splits_numbers` detects such
a tokenizer; judges then use a 0-9 rubric scale (one digit token; not 0-10, whose "10" would be
two tokens read as "1") mapped to 0-100, or,
where the backend allows it, an exact expected value over digit sequences (the local judge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from interp.eval.judges.base import MIN_NUMBER_MASS, Method, Score

DIGIT_SCALE = 9  # the largest number a digit-splitting tokenizer writes as one token


def number_value(token: str, scale_max: int) -> int | None:
    """The integer a token stands for, if it is one in [0, scale_max] (spaces ignored)."""
    text = token.strip()
    if not text.isdigit() or not text.isascii():
        return None
    if len(text) > 1 and text.startswith("0"):
        return None  # "07" is not how a judge writes 7
    value = int(text)
    return value if value <= scale_max else None


def expected_score(
    top_logprobs: Mapping[str, float], scale_max: int = 100, min_mass: float = MIN_NUMBER_MASS
) -> Score:
    """Expected value over number tokens among `top_logprobs` (token -> logprob), as 0-100.

    Tokens that decode to the same number (e.g. "7" and " 7") add their probabilities.
    """
    mass = 0.0
    total = 0.0
    for token, logprob in top_logprobs.items():
        value = number_value(token, scale_max)
        if value is None or not math.isfinite(logprob):
            continue
        p = math.exp(logprob)
        mass += p
        total += p * value
    top = max(top_logprobs, key=lambda t: top_logprobs[t]) if top_logprobs else ""
    if mass < min_mass or mass == 0.0:  # min_mass=0 still needs some mass to average
        return Score(None, "low_mass", mass, top)
    score = total / mass * (100.0 / scale_max)
    return Score(min(max(score, 0.0), 100.0), None, mass, top)


def splits_numbers(tokenizer: Any) -> bool:
    """True when the tokenizer cannot write 10..100 as one token (it splits numbers into digits)."""
    for number in ("42", "100", "57"):
        for text in (number, " " + number):
            ids = tokenizer.encode(text, add_special_tokens=False)
            pieces = [tokenizer.decode([i]).strip() for i in ids]
            if [p for p in pieces if p] == [number]:
                return False
    return True


def one_token_reading(scale_max: int, splits: bool) -> tuple[int, Method]:
    """The scale a one-token judge reads a 0..`scale_max` rubric on, and the method's name.

    On a digit-splitting vocabulary a scale past 9 is asked on 0-9 ("logprob-0-9"); a 0-100
    rubric on a multi-digit vocabulary is the paper's "logprob-0-100"; a scale whose numbers are
    all single tokens (AxBench's 0-2, say) is read as it is ("logprob").
    """
    if splits and scale_max > DIGIT_SCALE:
        return DIGIT_SCALE, "logprob-0-9"
    if scale_max == 100:
        return 100, "logprob-0-100"
    return scale_max, "logprob"
