"""Offline coherence: teacher-forced NLL equals a plain HF computation; repetition is penalised."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.batching import Example
from interp.eval.coherence import coherence, fluency, repetition, response_nll
from interp.eval.judges.base import JudgeItem
from tests.tolerance import FP32, assert_close

ITEMS = [
    JudgeItem("Tell me about the ocean.", "The ocean and the mountains."),
    JudgeItem("Why did the chicken cross the road?", "To get to the other side, I am told."),
    JudgeItem("What is the capital of France?", "Paris."),
    JudgeItem("Say something.", "Snowflakes drifted lazily from the gray sky. " * 3),
]


def test_repetition_counts_repeated_word_trigrams_by_hand():
    # trigrams: (a b a) (b a b) (a b a) (b a b): 4, of which 2 repeat an earlier one
    assert repetition("a b a b a b") == 0.5
    assert repetition("The cat sat on the mat.") == 0.0
    assert repetition("yes yes") == 0.0  # too short to say
    # punctuation marks are words: "aye , aye , ..." has 2 distinct trigrams
    text = ", ".join(["aye"] * 20)
    words = 2 * 20 - 1
    assert repetition(text) == pytest.approx(1 - 2 / (words - 2))


def test_fluency_maps_perplexity_to_0_100():
    # 100 up to the reference perplexity 20, 0 from 1000, log-linear between (by hand)
    assert fluency(0.0) == 100.0 and fluency(math.log(20)) == pytest.approx(100.0)
    assert fluency(math.log(50)) == pytest.approx(100 * math.log(20) / math.log(50))  # 76.6
    assert fluency(math.log(100)) == pytest.approx(100 * math.log(10) / math.log(50))  # 58.9
    assert fluency(math.log(1000)) == pytest.approx(0.0, abs=1e-9)
    assert fluency(20.0) == 0.0
    # another reference moves the anchor: perplexity 10 scores 100 with ppl_ref=10 only
    assert fluency(math.log(10), ppl_ref=10) == pytest.approx(100.0)
    assert fluency(math.log(20), ppl_ref=10) < 100
    with pytest.raises(ValueError, match="ppl_ref must be in"):
        fluency(1.0, ppl_ref=0.5)


def test_response_nll_equals_a_plain_hf_forward_row_by_row(tiny, tiny_dir):
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    got = response_nll(tiny, ITEMS, batch_size=3)  # batches mix lengths (left padding)
    for item, (nll, n) in zip(ITEMS, got, strict=True):
        chat = [{"role": "user", "content": item.question}]
        prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        r_ids = tok(item.answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r_ids])
        with torch.no_grad():
            logprobs = hf(ids).logits[0].log_softmax(-1)
        expected = -sum(
            logprobs[t - 1, ids[0, t]].item() for t in range(len(p_ids), ids.shape[1])
        ) / len(r_ids)
        assert n == len(r_ids)
        assert_close(nll, expected, rel=FP32, what=item.question)  # a mean of -log-probs


def test_coherence_combines_fluency_and_repetition(tiny):
    items = [*ITEMS, JudgeItem("Empty?", ""), Example("Tell me about the ocean", " and the sky")]
    out = coherence(tiny, items, batch_size=2)
    for result in out[:4]:
        assert result.score == pytest.approx(fluency(result.nll) * (1 - result.repetition))
        assert result.perplexity == pytest.approx(math.exp(result.nll))
    assert out[3].repetition > 0.5  # the sentence said three times
    assert out[4].score is None and out[4].n_tokens == 0  # an empty answer has no coherence
    assert out[5].n_tokens > 0 and out[5].score is not None  # Examples work as everywhere


def test_the_judge_scores_an_empty_answer_0_and_keys_the_reference(tiny):
    from interp.eval.coherence import CoherenceJudge

    judge = CoherenceJudge(tiny)
    empty, full = judge.score([JudgeItem("Empty?", ""), ITEMS[0]])
    assert empty.value == 0.0 and empty.raw == "empty answer"  # a steered model said nothing
    assert full.value is not None and full.value > 0
    assert judge.identity().settings["ppl_ref"] == 20.0
    assert CoherenceJudge(tiny, ppl_ref=10).identity() != judge.identity()


class RubricEcho:
    """A judge that scores each item by the length of the prompt the rubric renders for it."""

    def __init__(self) -> None:
        self.calls = 0

    def identity(self, rubric):
        from interp.eval.judges.base import JudgeIdentity

        return JudgeIdentity("api", "echo", "text", rubric.digest())

    def score(self, items, rubric):
        from interp.eval.judges.base import Score

        self.calls += 1
        return [Score(float(len(rubric.render(item)) % 101)) for item in items]


def test_coherence_judged_uses_the_builtin_rubric_and_resumes_from_a_store(tmp_path):
    from interp.eval.coherence import coherence_judged
    from interp.eval.judges.rubrics import builtin
    from interp.runs.store import read_records

    rubric = builtin("coherence")
    judge = RubricEcho()
    expected = [float(len(rubric.render(item)) % 101) for item in ITEMS]
    assert [s.value for s in coherence_judged(judge, ITEMS)] == expected
    store = tmp_path / "coherence.jsonl"
    assert [s.value for s in coherence_judged(judge, ITEMS, store)] == expected
    calls = judge.calls
    assert [s.value for s in coherence_judged(judge, ITEMS, store)] == expected
    assert judge.calls == calls  # the second run read the store
    records = read_records(store)
    assert len(records) == len(ITEMS) and {r["rubric_name"] for r in records} == {"coherence"}
