"""Offline coherence on SmolLM2: a degenerate loop scores low although its perplexity is low."""

import pytest

from interp.eval.coherence import coherence
from interp.eval.judges.base import JudgeItem

pytestmark = pytest.mark.embedded


def test_degenerate_repetition_scores_low_although_its_perplexity_is_low(smollm):
    question = "What is the capital of France?"
    fluent = JudgeItem(
        question,
        "The capital of France is Paris. It is known for the Eiffel Tower, its museums and "
        "its cafés.",
    )
    loop = JudgeItem(question, "aye, " * 30 + "aye")
    good, bad = coherence(smollm, [fluent, loop])
    assert bad.perplexity < good.perplexity  # perplexity alone would prefer the loop
    assert bad.repetition > 0.9 and good.repetition == 0.0
    assert good.score is not None and bad.score is not None
    assert good.score > 50 and bad.score < 10
