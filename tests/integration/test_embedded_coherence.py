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


def test_fluent_text_passes_the_75_gate_and_scrambled_text_does_not(smollm):
    """The calibration that makes the papers' gate of 75 usable on a small model: ordinary
    fluent answers score at least 80, the same words in a random order well under 75."""
    import random

    answers = [
        ("What is the capital of France?", "The capital of France is Paris."),
        (
            "How do plants make food?",
            "Plants make food by photosynthesis: they use sunlight to turn water and carbon "
            "dioxide into sugar, and give off oxygen.",
        ),
        (
            "Give me a tip for sleeping better.",
            "Try to go to bed at the same time every night, and keep your bedroom dark and cool.",
        ),
    ]
    rng = random.Random(0)
    fluent = [JudgeItem(q, a) for q, a in answers]
    scrambled = []
    for q, a in answers:
        words = a.split()
        rng.shuffle(words)
        scrambled.append(JudgeItem(q, " ".join(words)))
    good = coherence(smollm, fluent)
    bad = coherence(smollm, scrambled)
    for g, b in zip(good, bad, strict=True):
        assert g.score is not None and b.score is not None
        assert g.score >= 80, g
        assert b.score < 75 and b.score < g.score - 15, (g, b)
