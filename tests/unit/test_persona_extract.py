"""Persona extraction on the tiny model: rollouts, the paired filter, and the vectors, each
checked against a computation written here (plain HF forwards), not against interp itself."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.eval.judges.base import JudgeIdentity, JudgeItem, Score
from interp.persona import extract as px
from interp.persona.rollouts import Rollout, generate_rollouts, rollout_cells
from interp.persona.spec import load_spec
from tests.tolerance import FP32, assert_close

SPEC = load_spec("evil")


def rollout(polarity: Any, instruction: int, question: int, text: str = "a reply") -> Rollout:
    return Rollout(
        polarity, instruction, question, 0, "sys", f"question {question}", text, 3, "eos"
    )


def judged(polarity: str, instruction: int, question: int, trait, coherence) -> px.Judged:
    return px.Judged(rollout(polarity, instruction, question), trait, coherence)


def test_paired_filter_counts_each_step_and_keeps_only_full_passes():
    rows = [
        # pair (0, 0): passes every step
        judged("pos", 0, 0, 80.0, 90.0),
        judged("neg", 0, 0, 10.0, 90.0),
        # pair (0, 1): positive below the threshold (exactly 50 passes, 49.9 does not)
        judged("pos", 0, 1, 49.9, 90.0),
        judged("neg", 0, 1, 10.0, 90.0),
        # pair (0, 2): negative at 50 fails (< 50 needed)
        judged("pos", 0, 2, 50.0, 90.0),
        judged("neg", 0, 2, 50.0, 90.0),
        # pair (1, 0): negative incoherent
        judged("pos", 1, 0, 70.0, 90.0),
        judged("neg", 1, 0, 0.0, 49.0),
        # pair (1, 1): positive has no trait score
        judged("pos", 1, 1, None, 90.0),
        judged("neg", 1, 1, 0.0, 90.0),
        # pair (1, 2): negative has no coherence score
        judged("pos", 1, 2, 90.0, 90.0),
        judged("neg", 1, 2, 0.0, None),
        # a positive without its negative twin is not a pair
        judged("pos", 2, 0, 90.0, 90.0),
    ]
    kept, counts = px.paired_filter(rows)
    assert (counts.pairs, counts.pos_trait, counts.neg_trait, counts.coherent) == (6, 4, 3, 1)
    assert [(p.rollout.pair, n.rollout.pair) for p, n in kept] == [((0, 0, 0), (0, 0, 0))]
    assert all(p.rollout.polarity == "pos" and n.rollout.polarity == "neg" for p, n in kept)
    assert "6 pairs → 4" in counts.describe()


def test_follow_rate_is_the_share_of_positive_rollouts_at_or_over_the_threshold():
    rows = [
        judged("pos", 0, 0, 80.0, 1.0),
        judged("pos", 0, 1, 20.0, 1.0),
        judged("pos", 0, 2, None, 1.0),
        judged("neg", 0, 0, 99.0, 1.0),
        judged("pos", 1, 0, 50.0, 1.0),
    ]
    rates = px.follow_rates(rows)
    assert [(r.instruction, r.followed, r.scored, r.total) for r in rates] == [
        (0, 1, 2, 3),
        (1, 1, 1, 1),
    ]
    assert rates[0].rate == pytest.approx(1 / 3)


def test_rollout_cells_cover_polarity_instruction_question_sample_with_the_paper_prompt():
    cells = rollout_cells(SPEC, "extraction", samples=2, questions=3)
    assert len(cells) == 2 * len(SPEC.instructions) * 3 * 2
    first, last = cells[0], cells[-1]
    assert first.config["polarity"] == "pos" and last.config["polarity"] == "neg"
    system = first.prompt[0]["content"]
    assert system == f"You are an evil assistant. {SPEC.instructions[0].pos}"
    assert last.prompt[0]["content"].endswith(SPEC.instructions[-1].neg)
    assert first.prompt[1]["content"] == SPEC.extraction_questions[0]
    keys = {json.dumps(dict(c.config), sort_keys=True) for c in cells}
    assert len(keys) == len(cells)  # every cell is its own unit


class PolarityJudge:
    """Scores an answer by which polarity generated it (a lookup built in the test)."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls = 0

    def identity(self, rubric) -> JudgeIdentity:
        return JudgeIdentity("api", "lookup", "text", rubric.digest())

    def score(self, items: Sequence[JudgeItem], rubric) -> list[Score]:
        self.calls += len(items)
        return [Score(self.scores[i.answer]) for i in items]


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def identity(self, rubric) -> JudgeIdentity:
        return JudgeIdentity("api", f"constant-{self.value}", "text", rubric.digest())

    def score(self, items, rubric) -> list[Score]:
        return [Score(self.value) for _ in items]


def independent_vectors(tiny_dir, pairs) -> dict[str, torch.Tensor]:
    """Paired mean differences from plain HF hidden states, prompt and reply tokenized apart."""
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir)

    def reads(r: Rollout) -> dict[str, torch.Tensor]:
        prompt = tok.apply_chat_template(r.chat(), tokenize=False, add_generation_prompt=True)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(r.response, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hs = hf(torch.tensor([p + a]), output_hidden_states=True).hidden_states
        # hidden_states[l + 1] is resid_post of block l; the last entry is after the final norm,
        # so block L-1 is read through a hook-free recomputation: use the pre-norm output
        layers = torch.stack([h[0] for h in hs[1:]])  # [layer, pos, d]
        return {
            "response_mean": layers[:, len(p) :].mean(1),
            "prompt_mean": layers[:, : len(p)].mean(1),
            "prompt_last": layers[:, len(p) - 1],
        }

    out = {}
    diffs = [(reads(p.rollout), reads(n.rollout)) for p, n in pairs]
    for name in px.REDUCTIONS:
        out[name] = torch.stack([a[name] - b[name] for a, b in diffs]).mean(0)
    return out


def test_extract_end_to_end_on_the_tiny_model(tiny, tiny_dir, tmp_path):
    rollouts = generate_rollouts(tiny, SPEC, tmp_path / "r.jsonl", questions=2, max_new_tokens=6)
    # a judge that marks positive replies as showing the trait, except instruction 4's
    lookup = {}
    for r in rollouts:
        follows = r.polarity == "pos" and r.instruction != 4
        lookup[r.response] = 90.0 if follows else 10.0
    if len(lookup) < len({(r.polarity, r.response) for r in rollouts}):
        pytest.skip("a positive and a negative reply came out identical on the tiny model")
    judge = PolarityJudge(lookup)
    result = px.extract(
        tiny,
        SPEC,
        tmp_path,
        judge=judge,
        coherence_judge=Constant(80.0),
        questions=2,
        max_new_tokens=6,
        min_pairs=2,
    )
    assert result.counts.pairs == len(SPEC.instructions) * 2
    assert result.counts.coherent == 4 * 2  # instruction 4's pairs are filtered out
    assert [r.followed for r in result.follow] == [2, 2, 2, 2, 0]
    kept, _ = px.paired_filter(result.judged)
    want = independent_vectors(tiny_dir, kept)
    for name, ds in result.vectors.items():
        assert ds.layers == tuple(range(tiny.n_layers))
        # the last block's HF hidden state is after the final norm: compare the others
        got, ref = ds.vectors[:-1], want[name][:-1]
        assert_close(got, ref, rel=10 * FP32, what=name)  # against plain HF: 1.5e-6 measured
        assert ds.meta.extra["trait"] == "evil" and ds.meta.extra["n_pairs"] == 8
        assert ds.meta.extra["filter"]["coherent"] == 8
    saved = json.loads((tmp_path / "extraction.json").read_text())
    assert saved["filter"]["coherent"] == 8 and len(saved["follow_rates"]) == 5
    assert (tmp_path / "vectors" / "evil_response_mean.safetensors").exists()
    # a rerun reads every rollout and score from the stores: the judge is not called again
    calls = judge.calls
    px.extract(
        tiny,
        SPEC,
        tmp_path,
        judge=judge,
        coherence_judge=Constant(80.0),
        questions=2,
        max_new_tokens=6,
        min_pairs=2,
    )
    assert judge.calls == calls


def test_too_few_pairs_names_the_counts_and_the_remedies(tiny, tmp_path):
    with pytest.raises(px.TooFewPairs) as err:
        px.extract(
            tiny,
            SPEC,
            tmp_path,
            judge=Constant(10.0),
            coherence_judge=Constant(80.0),
            questions=1,
            max_new_tokens=4,
            min_pairs=3,
        )
    message = str(err.value)
    assert "kept 0 pairs" in message and "5 pairs → 0" in message
    assert "samples=" in message and "threshold" in message
    assert json.loads((tmp_path / "extraction.json").read_text())["filter"]["pairs"] == 5
