"""Entity steering and attention on the tiny model, against computations written here: the
weight edit that orthogonalisation stands for, the "are you sure" logit difference with and
without a decoder-row edit (plain HF forward with a hand-written hook), the steered positions,
and the attention weights that eager HF attention returns."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.batching import Example, encode, make_batch
from interp.entities.attention import entity_attention, last_entity_token
from interp.entities.data import load_entities
from interp.entities.steering import (
    SURE_PREFIX,
    SURE_QUESTION,
    entity_positions,
    is_refusal,
    latent_conditions,
    latent_direction,
    latent_edit,
    orthogonalizers,
    pooled,
    random_latents,
    sure_logit_diffs,
)
from interp.saes.load import load_sae
from interp.steering.generation import next_token_logprobs
from tests.tiny_sae import write_sae
from tests.tolerance import FP32, assert_close, relative_error


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    types = {
        "city": {
            "noun": "city",
            "attributes": {
                "country": {
                    "kind": "text",
                    "question": "Which country is the city {entity} in?",
                    "prefix": "{entity} is in",
                }
            },
        }
    }
    entities = [
        {"type": "city", "name": n, "origin": "real", "attributes": {"country": ["France"]}}
        for n in ("Paris", "Snowflakes", "Road side")
    ]
    path = tmp_path_factory.mktemp("entities") / "entities.json"
    path.write_text(json.dumps({"types": types, "entities": entities}))
    return load_entities(path)


@pytest.fixture(scope="module")
def sae(tiny, tmp_path_factory):
    path = write_sae(tmp_path_factory.mktemp("sae") / "sae", fingerprint=tiny.fingerprint())
    return load_sae(path).check(tiny)


def hf_model(tiny_dir: Path, eager: bool = False):
    kwargs = {"attn_implementation": "eager"} if eager else {}
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, **kwargs).eval()


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I couldn't find any information about that city.", True),
        ("Unfortunately, I am not familiar with Velmora.", True),
        ("I don't know who directed it.", True),
        ("There is no record of such a film.", True),
        ("The city of Porto is in Portugal.", False),
        ("It was directed by Steven Spielberg in 1993.", False),
        ("Ruslan Teveryakov is a fictional character from a TV series.", False),  # an answer
    ],
)
def test_refusal_classifier(text, refused):
    assert is_refusal(text) is refused


def test_orthogonalising_equals_editing_the_weights(tiny, tiny_dir):
    torch.manual_seed(0)
    d = torch.randn(tiny.d_model)
    u = d / d.norm()
    prompt = "The capital of France is Paris."
    ours = next_token_logprobs(tiny, [prompt], [orthogonalizers(tiny, d)])[0]
    # the weight edit of Ferrando et al.: W ← W − u uᵀ W for every matrix writing the residual
    hf = copy.deepcopy(hf_model(tiny_dir))
    proj = torch.eye(tiny.d_model) - torch.outer(u, u)
    with torch.no_grad():
        emb = hf.model.embed_tokens.weight
        emb.copy_(emb @ proj)
        for block in hf.model.layers:
            block.self_attn.o_proj.weight.copy_(proj @ block.self_attn.o_proj.weight)
            block.mlp.down_proj.weight.copy_(proj @ block.mlp.down_proj.weight)
        ids = tiny.tokenizer(prompt, return_tensors="pt")["input_ids"]
        expected = hf(ids).logits[0, -1].log_softmax(-1)
    assert_close(ours, expected, rel=FP32, what="orthogonalised against edited weights")
    plain = next_token_logprobs(tiny, [prompt])[0]
    assert relative_error(ours, plain) > 1e-3  # the edit does something


def test_steered_positions_run_from_the_last_entity_token_to_the_end_of_the_prompt(tiny, data):
    entity = data.entities[2]  # "Road side": two words
    chat = [{"role": "user", "content": f"Is {entity.name} near {entity.name}? Say."}]
    row = encode(tiny, Example(prompt=chat, response="It is"))
    view = make_batch([row], tiny.tokenizer.pad_token_id).view(tiny)
    end_char = row.text.rindex(entity.name) + len(entity.name) - 1
    last = next(i for i, (a, b) in enumerate(row.spans) if a <= end_char < b)
    steered = entity_positions(entity).mask(view)[0].nonzero().flatten().tolist()
    assert steered == list(range(last, row.prompt_len))  # prefill only, not the reply
    everything = entity_positions(entity, prefill_only=False).mask(view)[0]
    assert everything.nonzero().flatten().tolist() == list(range(last, len(row)))
    only = last_entity_token(entity).mask(view)[0].nonzero().flatten().tolist()
    assert only == [last]


def test_sure_logit_diff_with_and_without_a_decoder_row(tiny, tiny_dir, data, sae):
    groups = {"known": list(data.entities[:2])}
    norm = 3.0
    conditions = latent_conditions(tiny, sae, {"unknown_latent": 5}, norm)
    table = sure_logit_diffs(tiny, data, groups, conditions, [2.0], batch_size=2)
    assert len(table) == 4 and set(table["condition"]) == {"none", "unknown_latent"}
    assert set(table.loc[table["condition"] == "unknown_latent", "layer"]) == {sae.layer}
    yes = tiny.tokenizer(" Yes", add_special_tokens=False)["input_ids"][0]
    no = tiny.tokenizer(" No", add_special_tokens=False)["input_ids"][0]
    hf = hf_model(tiny_dir)
    row = sae.decoder_row(5)
    edit = 2.0 * norm * row / row.norm()
    for entity in groups["known"]:
        chat = [{"role": "user", "content": SURE_QUESTION.format(noun="city", name=entity.name)}]
        text = tiny.format_chat(chat) + SURE_PREFIX
        ids = torch.tensor([encode(tiny, Example(prompt=chat, response=SURE_PREFIX)).ids])
        end = text.rindex(entity.name) + len(entity.name)
        first = len(tiny.tokenizer(text[:end], add_special_tokens=False)["input_ids"]) - 1

        def hook(module, args, output, first=first):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden.clone()
            hidden[:, first:] += edit
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        with torch.no_grad():
            plain = hf(ids).logits[0, -1].log_softmax(-1)
            handle = hf.model.layers[sae.layer].register_forward_hook(hook)
            try:
                steered = hf(ids).logits[0, -1].log_softmax(-1)
            finally:
                handle.remove()
        rows = table[table["entity"] == entity.name].set_index("condition")["yes_minus_no"]
        # a difference of two log-probs: its rounding scales with the log-probs, not with it
        scale = float(torch.cat([plain, steered]).abs().max())
        assert abs(rows["none"] - float(plain[yes] - plain[no])) <= FP32 * scale
        assert abs(rows["unknown_latent"] - float(steered[yes] - steered[no])) <= FP32 * scale
        assert abs(rows["unknown_latent"] - rows["none"]) > 1e-3 * scale


def test_latent_direction_is_the_decoder_row(tiny, sae):
    direction = latent_direction(tiny, sae, 7, resid_norm=2.5)
    torch.testing.assert_close(direction.vectors[0], sae.decoder_row(7))
    assert direction.layers == (sae.layer,) and float(direction.stats["resid_norm"][0]) == 2.5
    with pytest.raises(ValueError, match="out of range"):
        latent_direction(tiny, sae, sae.d_sae, resid_norm=1.0)


def test_an_edit_is_identified_by_its_block_and_latent_not_its_role(tiny, sae, data):
    """Two roles of one latent give the same edit; another latent gives another."""
    a, b, c = latent_conditions(
        tiny, sae, {"random_known_0": 7, "random_unknown_3": 7, "random_unknown_4": 8}, 2.0
    )
    positions = entity_positions(data.entities[0])
    assert latent_edit(a, 1.0, positions).describe() == latent_edit(b, 1.0, positions).describe()
    assert latent_edit(a, 1.0, positions).describe() != latent_edit(c, 1.0, positions).describe()
    assert a.layer == sae.layer
    assert [pooled(x) for x in ("random_known_0", "random_unknown_12", "known_latent", "none")] == [
        "random_known",
        "random_unknown",
        "known_latent",
        "none",
    ]


def test_random_latents_have_zero_separation_and_fire_on_text():
    separations = np.array([[0.0, 0.2, 0.0, 0.0, 0.0], [0.0, 0.0, -0.1, 0.0, 0.0]])
    density = np.array([0.01, 0.01, 0.01, 0.0, 0.3])
    assert random_latents(separations, density, 2, seed=0) == [0, 4]
    with pytest.raises(ValueError, match=r"only 2 latents of the SAE .* 3 asked; ask for ≤ 2"):
        random_latents(separations, density, 3, seed=0)
    # a type without both labels leaves every separation undefined there: said, with the type
    undefined = np.vstack([separations, np.full(5, np.nan)])
    with pytest.raises(ValueError, match="the types book have no known or no unknown"):
        random_latents(undefined, density, 1, seed=0, types=["city", "person", "book"])


def test_attention_to_the_entity_equals_eager_hf_attention(tiny, tiny_dir, data, sae):
    prompts = [
        [{"role": "user", "content": f"Which country is the city {e.name} in?"}]
        for e in data.entities
    ]
    names = [e.name for e in data.entities]
    got = entity_attention(tiny, prompts, names, batch_size=2)
    hf = hf_model(tiny_dir, eager=True)
    for i, (chat, name) in enumerate(zip(prompts, names, strict=True)):
        text = tiny.format_chat(chat)
        ids = tiny.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        end = text.rindex(name) + len(name)
        target = len(tiny.tokenizer(text[:end], add_special_tokens=False)["input_ids"]) - 1
        with torch.no_grad():
            attentions = hf(ids, output_attentions=True).attentions
        expected = torch.stack([a[0, :, -1, target] for a in attentions])  # [layer, head]
        assert_close(got[i], expected, rel=FP32, what=f"attention of prompt {i}")
    # steering the last entity token after block 1 changes attention only in later blocks
    direction = latent_direction(tiny, sae, 3, resid_norm=4.0)
    from interp.steering import interventions as iv

    plans = [
        [iv.add(direction, sae.layer, 4.0, positions=last_entity_token(e), scale="resid_norm")]
        for e in data.entities
    ]
    steered = entity_attention(tiny, prompts, names, plans, batch_size=2)
    torch.testing.assert_close(steered[:, : sae.layer + 1], got[:, : sae.layer + 1])
    assert (steered[:, sae.layer + 1 :] - got[:, sae.layer + 1 :]).abs().max() > 1e-4


def test_summaries_give_each_random_latents_own_range():
    """A pool's band is the range of its latents' own rates and means, computed here by hand."""
    from interp.entities.figures import sure_summary
    from interp.entities.steering import summarize

    rows = []
    for latent, refusals in (("random_known_0", [1, 1, 0, 0]), ("random_known_1", [0, 0, 0, 1])):
        for i, refused in enumerate(refusals):
            rows.append(
                {"group": "known", "condition": latent, "alpha": 1.0, "refusal": bool(refused),
                 "hallucination": not refused, "correct": False, "yes_minus_no": i + 10 * refused}
            )  # fmt: skip
    rows.append(
        {"group": "known", "condition": "known_latent", "alpha": 1.0, "refusal": True,
         "hallucination": False, "correct": False, "yes_minus_no": 3.0}
    )  # fmt: skip
    frame = pd.DataFrame(rows)
    table = summarize(frame).set_index("condition")
    pool = table.loc["random_known"]
    assert pool["n"] == 8 and pool["refusal"] == pytest.approx(3 / 8)
    assert (pool["refusal_latent_min"], pool["refusal_latent_max"]) == (0.25, 0.5)
    assert np.isnan(table.loc["known_latent"].get("refusal_latent_min", np.nan))
    sure = sure_summary(frame).set_index("condition")
    means = [np.mean([0 + 10, 1 + 10, 2, 3]), np.mean([0, 1, 2, 3 + 10])]
    assert (sure.loc["random_known", "latent_min"], sure.loc["random_known", "latent_max"]) == (
        pytest.approx(min(means)),
        pytest.approx(max(means)),
    )
