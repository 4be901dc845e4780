"""Steering on the embedded model: peer parity for CAA, generation parity, batched sweeps."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp import caa
from interp.positions import LAST, RESPONSE
from interp.steering import interventions as iv
from interp.steering.generation import generate

pytestmark = pytest.mark.embedded

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Give me one tip for sleeping better."}],
    [{"role": "user", "content": "Write a haiku about rain."}],
]


@pytest.fixture(scope="module")
def sycophancy():
    train, test = caa.split(caa.load_behaviour("sycophancy"))
    return train, test


@pytest.fixture(scope="module")
def caa_vector(smollm, sycophancy):
    return caa.vector(smollm, sycophancy[0], behaviour="sycophancy")


def test_caa_vector_equals_steering_vectors(smollm, sycophancy, caa_vector):
    from steering_vectors import train_steering_vector

    train = sycophancy[0]
    pos, neg = caa.contrast_examples(train)
    pairs = [
        (smollm.format_chat(p.prompt) + p.response, smollm.format_chat(n.prompt) + n.response)
        for p, n in zip(pos, neg, strict=True)
    ]
    hf = AutoModelForCausalLM.from_pretrained(smollm.source, dtype=torch.float32).eval()
    peer = train_steering_vector(
        hf, smollm.tokenizer, pairs, layers=list(range(30)), read_token_index=-2, batch_size=8
    )
    theirs = torch.stack([peer.layer_activations[i] for i in range(30)]).float()
    cosine = torch.nn.functional.cosine_similarity(caa_vector.vectors, theirs, dim=-1)
    assert float(cosine.min()) >= 0.999, cosine
    # magnitude too: CAA vectors are used raw, so a scaled copy would steer differently
    relative = (caa_vector.vectors - theirs).norm(dim=-1) / theirs.norm(dim=-1)
    assert float(relative.max()) <= 1e-4, relative
    assert caa_vector.meta.method == "caa:paired_mean_diff(index(-2))"


def test_generation_matches_hf_generate(smollm):
    hf = AutoModelForCausalLM.from_pretrained(smollm.source, dtype=torch.float32).eval()
    ours = generate(smollm, CHATS, max_new_tokens=20)
    for chat, out in zip(CHATS, ours, strict=True):
        ids = smollm.tokenizer(
            smollm.format_chat(chat), add_special_tokens=False, return_tensors="pt"
        )
        ref = hf.generate(
            **ids, max_new_tokens=20, do_sample=False, pad_token_id=smollm.tokenizer.pad_token_id
        )
        expected = ref[0, ids["input_ids"].shape[1] :].tolist()
        eos = smollm.tokenizer.eos_token_id
        assert list(out.tokens) == [t for t in expected if t != eos][: len(out.tokens)]
        assert out.finish == ("eos" if eos in expected else "length")


def test_batched_sweep_equals_each_configuration_alone(smollm, caa_vector):
    configs = [
        [iv.add(caa_vector, layer, coef, positions=pos)]
        for layer in (9, 12, 15)
        for coef in (-10.0, 0.0, 10.0, 20.0)
        for pos in (RESPONSE,)
    ]
    prompts = [CHATS[i % 2] for i in range(len(configs))]
    batched = generate(smollm, prompts, configs, max_new_tokens=8, batch_size=len(configs))
    alone = [
        generate(smollm, [p], c, max_new_tokens=8)[0] for p, c in zip(prompts, configs, strict=True)
    ]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]
    persona = generate(
        smollm, CHATS[:1], iv.add(caa_vector, 12, 0.0, positions=LAST), max_new_tokens=8
    )
    assert persona[0].tokens == generate(smollm, CHATS[:1], max_new_tokens=8)[0].tokens


def test_ab_sweep_writes_every_cell_once_and_resumes(smollm, sycophancy, caa_vector, tmp_path):
    test = sycophancy[1][:2]
    store = caa.ab_sweep(
        smollm,
        test,
        caa_vector,
        [12],
        [-10.0, 0.0, 10.0],
        tmp_path / "ab.jsonl",
        behaviour="sycophancy",
    )
    records = store.records()
    assert len(records) == 6 and all(0 < r["p_match"] < 1 for r in records)
    again = caa.ab_sweep(
        smollm,
        test,
        caa_vector,
        [12],
        [-10.0, 0.0, 10.0, 20.0],
        tmp_path / "ab.jsonl",
        behaviour="sycophancy",
    )
    assert len(again.records()) == 8  # only the new multiplier ran
