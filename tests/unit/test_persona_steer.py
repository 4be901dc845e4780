"""Layer/coefficient choice, side cost, monitoring and ΔP screening, each against a hand
computation (plain HF forwards with a torch hook, or arithmetic written here)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.eval.side_cost import side_cost
from interp.persona import select as ps
from interp.persona.monitor import correlations, monitor_prompts, projections
from interp.persona.screen import projection_difference, rank, separation
from interp.persona.spec import load_spec
from interp.positions import ALL
from interp.steering import interventions as iv
from interp.vectors import DirectionSet
from tests.tolerance import FP32

SPEC = load_spec("sycophantic")
NEUTRAL = ["The bus leaves at nine every morning.", "Water boils at one hundred degrees."]


def table(rows):
    frame = pd.DataFrame(rows, columns=["layer", "coef", "trait", "coherence"])
    frame["raw_coef"] = frame["coef"]
    frame["text"] = "x"
    frame["scale"] = "raw"
    frame["trait_name"] = "t"
    frame["question"] = "q"
    frame["sample"] = 0
    return ps.summarize(frame)


def test_choose_takes_the_largest_gain_that_keeps_coherence_above_the_gate():
    summary = table(
        [
            (4, 0.0, 10, 90),
            (4, 0.5, 30, 80),
            (4, 1.0, 70, 60),  # 1.0 wins but babbles
            (8, 0.0, 20, 90),
            (8, 0.5, 45, 76),
            (8, -0.5, 5, 90),
        ]
    )
    best = ps.choose(summary, gate=75.0)
    assert best is not None
    assert (best.layer, best.coef, best.gain, best.baseline) == (8, 0.5, 25.0, 20.0)
    down = ps.choose(summary, gate=75.0, direction="suppress")
    assert down is not None
    assert (down.layer, down.coef, down.gain) == (8, -0.5, -15.0)
    second = ps.choose(summary, gate=77.0)  # layer 8's 76 no longer passes
    assert second is not None and (second.layer, second.coef, second.gain) == (4, 0.5, 20.0)
    assert ps.choose(summary, gate=95.0) is None
    assert "no setting" in ps.describe(None)


def test_raw_coefficient_makes_the_same_edit(tiny):
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(0))
    ds = DirectionSet.from_tensor(v, tiny, stats={"resid_norm": torch.full((tiny.n_layers,), 7.0)})
    raw = ps.raw_coefficient(ds, 2, 0.5, "resid_norm")
    assert raw * v[2].norm() == pytest.approx(0.5 * 7.0, rel=1e-6)  # |raw · v| = α · resid_norm
    assert ps.raw_coefficient(ds, 2, 0.5, "unit") * v[2].norm() == pytest.approx(0.5, rel=1e-6)
    assert ps.raw_coefficient(ds, 2, 0.5, "raw") == 0.5


def _hf(tiny_dir):
    return (
        AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(tiny_dir),
    )


def test_side_cost_equals_a_plain_hf_forward_with_a_hook(tiny, tiny_dir):
    hf, tok = _hf(tiny_dir)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=gen)
    ds = DirectionSet.from_tensor(v, tiny)
    coef, layer = 2.0, 1
    got = side_cost(tiny, NEUTRAL, iv.add(ds, layer, coef, positions=ALL))

    def add(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden + coef * v[layer]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    kl = nll_p = nll_q = 0.0
    count = 0
    for text in NEUTRAL:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            p = hf(ids).logits[0].log_softmax(-1)
            handle = hf.model.layers[layer].register_forward_hook(add)
            q = hf(ids).logits[0].log_softmax(-1)
            handle.remove()
        targets = ids[0, 1:]
        kl += float((p[:-1].exp() * (p[:-1] - q[:-1])).sum())
        nll_p -= float(p[:-1].gather(-1, targets[:, None]).sum())
        nll_q -= float(q[:-1].gather(-1, targets[:, None]).sum())
        count += len(targets)
    assert got.n_tokens == count
    assert got.kl == pytest.approx(kl / count, rel=1e-4)
    assert got.ppl_plain == pytest.approx(math.exp(nll_p / count), rel=1e-5)
    assert got.ppl_steered == pytest.approx(math.exp(nll_q / count), rel=1e-5)
    assert got.kl > 0 and got.ppl_ratio != 1.0
    zero = side_cost(tiny, NEUTRAL, iv.add(ds, layer, 0.0, positions=ALL))
    assert zero.kl == pytest.approx(0.0, abs=1e-7) and zero.ppl_ratio == pytest.approx(1.0)


def test_monitor_prompts_are_graded_system_prompts_and_many_shot_chats():
    prompts = monitor_prompts(SPEC, questions=2, shots=(0, 5))
    system = [c for c, _ in prompts if c["experiment"] == "system"]
    shots = [(c, chat) for c, chat in prompts if c["experiment"] == "many-shot"]
    assert len(system) == len(SPEC.monitor_prompts) * 2 and len(shots) == 2 * 2
    five = next(chat for c, chat in shots if c["level"] == 5)
    assert len(five) == 11 and five[1]["content"] == SPEC.many_shot[0].answer
    assert (
        five[-1]["content"] == SPEC.evaluation_questions[1]
        or five[-1]["content"] == (SPEC.evaluation_questions[0])
    )
    with pytest.raises(ValueError, match="many-shot examples"):
        monitor_prompts(SPEC, shots=(len(SPEC.many_shot) + 1,))


def test_projection_is_the_last_prompt_token_on_the_unit_vector(tiny, tiny_dir):
    hf, tok = _hf(tiny_dir)
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(2))
    ds = DirectionSet.from_tensor(v, tiny)
    chats = [
        [{"role": "user", "content": "Hello there."}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi?"}],
    ]
    got = projections(tiny, chats, ds, 1)
    for chat, value in zip(chats, got, strict=True):
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            hidden = hf(ids, output_hidden_states=True).hidden_states[2][0, -1]
        # rounding of a projection scales with the vector projected, not with the projection
        want = float(hidden @ (v[1] / v[1].norm()))
        assert abs(value - want) <= FP32 * float(hidden.norm()), (value, want)


def test_correlations_are_scipys_pearson_overall_and_per_condition():
    gen = torch.Generator().manual_seed(3)
    proj = torch.randn(24, generator=gen).tolist()
    trait = [50 + 10 * p + float(torch.randn(1, generator=gen)) * 5 for p in proj]
    frame = pd.DataFrame(
        {
            "experiment": ["system"] * 24,
            "level": [i % 3 for i in range(24)],
            "projection": proj,
            "trait": trait,
        }
    )
    frame.loc[0, "trait"] = None  # no score: left out
    table = correlations(frame)
    overall = table[table["condition"] == "overall"].iloc[0]
    kept = frame.dropna()
    assert overall["n"] == 23
    assert overall["r"] == pytest.approx(pearsonr(kept["projection"], kept["trait"])[0])
    assert overall["low"] <= overall["r"] <= overall["high"]
    level1 = table[table["condition"] == "level 1"].iloc[0]
    part = kept[kept["level"] == 1]
    assert level1["r"] == pytest.approx(pearsonr(part["projection"], part["trait"])[0])


def test_delta_p_is_train_minus_own_response_projection(tiny, tiny_dir, tmp_path):
    hf, tok = _hf(tiny_dir)
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(4))
    ds = DirectionSet.from_tensor(v, tiny)
    samples = [
        {"id": "a", "prompt": "Is my plan good?", "response": "Yes, it is brilliant!"},
        {"id": "b", "prompt": "Check my sum: 2+2=5.", "response": "That is not right."},
    ]
    frame = projection_difference(tiny, samples, ds, 2, tmp_path, name="demo", max_new_tokens=5)
    unit = v[2] / v[2].norm()

    def mean_proj(prompt: str, response: str) -> tuple[float, float]:
        """The mean response activation's projection on `unit`, and the mean's norm."""
        chat = [{"role": "user", "content": prompt}]
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        p = tok(text, add_special_tokens=False)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hs = hf(torch.tensor([p + r]), output_hidden_states=True).hidden_states[3][0]
        mean = hs[len(p) :].mean(0)
        return float(mean @ unit), float(mean.norm())

    for sample, row in zip(samples, frame.itertuples(), strict=True):
        train, train_norm = mean_proj(sample["prompt"], sample["response"])
        own, own_norm = mean_proj(sample["prompt"], row.own_response)
        # rounding of a projection scales with the vector projected, not with the projection
        assert abs(row.projection_train - train) <= FP32 * train_norm
        assert abs(row.delta_p - (train - own)) <= FP32 * (train_norm + own_norm)
    assert list(rank(frame)["delta_p"]) == sorted(frame["delta_p"], reverse=True)
    # the model's own responses are stored: a rerun generates nothing new
    lines = (tmp_path / "own_responses.jsonl").read_text().count("\n")
    projection_difference(tiny, samples, ds, 2, tmp_path, name="demo", max_new_tokens=5)
    assert (tmp_path / "own_responses.jsonl").read_text().count("\n") == lines
    with pytest.raises(ValueError, match="empty"):
        projection_difference(tiny, [], ds, 2, tmp_path)


def test_separation_is_the_auroc_of_delta_p():
    high = pd.DataFrame({"delta_p": [3.0, 2.0, 1.5, 0.2]})
    low = pd.DataFrame({"delta_p": [0.1, 0.5, -1.0, 0.0]})
    est = separation(high, low)
    # pairs (h, l) with h > l: 4 + 4 + 4 + 2 (0.2 beats 0.1, -1.0 and 0.0) = 15 of 16
    assert est.value == pytest.approx(15 / 16)
    assert est.low <= est.value <= est.high
