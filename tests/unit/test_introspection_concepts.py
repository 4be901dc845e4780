"""Concept vectors (Lindsey 2025) on the tiny model, checked against plain HF forwards written
here: the last token before the reply, minus the baseline-word mean, at every block."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.introspection.concepts import (
    ConceptVectors,
    concept_prompt,
    contrast_vector,
    extract_concepts,
)
from interp.introspection.words import word_list
from interp.vectors import VectorMismatch
from tests.tolerance import FP32, assert_close

WORDS = ["Dust", "Snow", "Peace"]
BASELINE = ["Desks", "Jackets", "Sand", "Honey"]


def last_token_states(model: interp.Model, model_dir: Path, chats: list) -> torch.Tensor:
    """[chat, block, d_model] residual after each block at the chat's final token (plain HF)."""
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = []
    for chat in chats:
        text = model.format_chat(chat)
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hs = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states
        # hidden_states[l + 1] is block l's output; the last entry has the final norm applied,
        # so the last block is compared apart (below) through the bridge's own hook
        rows.append(torch.stack([h[0, -1] for h in hs[1:-1]]))
    return torch.stack(rows)


def test_published_lists_are_shipped_whole():
    assert len(word_list("concepts")) == 50
    assert len(word_list("baseline")) == 100
    assert word_list("concepts")[0] == "Dust" and word_list("baseline")[-1] == "Enigmas"
    assert len(word_list("sentences")) == 50 and len(word_list("control_words")) == 100
    assert len(word_list("no_questions")) == 20
    for category in ("famous_people", "countries", "concrete_nouns", "abstract_nouns", "verbs"):
        assert len(word_list(f"category_{category}")) == 50
    with pytest.raises(ValueError, match=r"no word list .nope..*concepts"):
        word_list("nope")


def test_concept_vector_is_the_token_before_the_reply_minus_the_baseline_mean(tiny, tiny_dir):
    cv = extract_concepts(tiny, WORDS, BASELINE, batch_size=3)
    states = last_token_states(tiny, tiny_dir, [concept_prompt(w) for w in WORDS + BASELINE])
    expected = states[: len(WORDS)] - states[len(WORDS) :].mean(dim=0)
    blocks = tiny.n_layers - 1
    # batches of 3 against plain HF alone (measured 1.0e-6 here): 10 x FP32 for margin
    assert_close(cv.vectors[:, :blocks], expected, rel=10 * FP32, what="concept vectors")
    assert cv.vectors.shape == (3, tiny.n_layers, tiny.d_model)
    assert concept_prompt("Dust")[0]["content"] == "Tell me about dust"  # lower-cased word


def test_batching_does_not_change_a_concept_vector(tiny):
    one = extract_concepts(tiny, WORDS, BASELINE, batch_size=1)
    many = extract_concepts(tiny, WORDS, BASELINE, batch_size=7)
    # a concept vector is a difference of activations: padding moves each activation by float
    # noise relative to *its* size (~1e-6), so the bound is relative to the activations, not to
    # the (smaller) difference, which made a fixed 1e-5 fail at random
    scale = float(one.baseline.abs().max())
    torch.testing.assert_close(one.vectors, many.vectors, atol=1e-5 * scale, rtol=1e-5)
    assert_close(many.baseline, one.baseline, rel=FP32, what="baseline mean")


def test_scales_put_every_concept_at_the_stated_norm(tiny):
    cv = extract_concepts(tiny, WORDS, BASELINE)
    raw, mode = cv.direction("snow", "raw")  # case-insensitive lookup
    assert mode == "raw"
    torch.testing.assert_close(raw.vectors, cv.vectors[1])
    mean_norm = cv.vectors.norm(dim=-1).mean(dim=0)
    for word in WORDS:
        same, mode = cv.direction(word, "unit_norm")
        assert mode == "raw"
        torch.testing.assert_close(same.vectors.norm(dim=-1), mean_norm, atol=1e-4, rtol=1e-4)
        cos = torch.nn.functional.cosine_similarity(same.vectors, cv.vectors[cv.index(word)])
        assert bool((cos > 0.9999).all())
    rel, mode = cv.direction("Peace", "resid_norm")
    assert mode == "resid_norm"
    torch.testing.assert_close(rel.stats["resid_norm"], cv.resid_norm)
    assert bool((cv.resid_norm > 0).all())
    with pytest.raises(ValueError, match=r"unknown injection scale 'loud'.*raw, unit_norm"):
        cv.direction("Peace", "loud")


def test_a_concept_without_a_vector_is_named_with_the_fix(tiny):
    cv = extract_concepts(tiny, WORDS, BASELINE)
    with pytest.raises(ValueError, match=r"no concept vector for 'Milk'.*3 concepts.*--words Milk"):
        cv.direction("Milk")


def test_empty_or_blank_word_lists_are_refused(tiny):
    with pytest.raises(ValueError, match="words is empty"):
        extract_concepts(tiny, [], BASELINE)
    with pytest.raises(ValueError, match=r"baseline\[1\] is ' '"):
        extract_concepts(tiny, WORDS, ["Desks", " "])


def test_round_trip_and_wrong_model(tiny, tiny_base, tmp_path):
    cv = extract_concepts(tiny, WORDS, BASELINE)
    back = ConceptVectors.load(cv.save(tmp_path / "concepts.safetensors"))
    assert back.words == cv.words and back.layers == cv.layers
    torch.testing.assert_close(back.vectors, cv.vectors)
    torch.testing.assert_close(back.resid_norm, cv.resid_norm)
    back.check(tiny)
    with pytest.raises(VectorMismatch, match="extract them on this model"):
        back.check(tiny_base)
    other = cv.direction("Dust")[0]
    other.save(tmp_path / "direction.safetensors")
    with pytest.raises(ValueError, match="not an interp concept-vector file"):
        ConceptVectors.load(tmp_path / "direction.safetensors")


def test_contrast_vector_is_the_paired_mean_difference(tiny, tiny_dir):
    loud = ["HI! HOW ARE YOU?", "STOP THAT NOW."]
    calm = ["Hi! How are you?", "Stop that now."]
    vec = contrast_vector(tiny, loud, calm, name="all caps")
    chats = [[{"role": "user", "content": t}] for t in loud + calm]
    states = last_token_states(tiny, tiny_dir, chats)
    expected = (states[:2] - states[2:]).mean(dim=0)
    assert_close(vec.vectors[: tiny.n_layers - 1], expected, rel=FP32, what="contrast vector")
    assert vec.meta.extra["concept"] == "all caps"
    with pytest.raises(ValueError, match="as many positive as negative texts, got 2 and 1"):
        contrast_vector(tiny, loud, calm[:1], name="x")
