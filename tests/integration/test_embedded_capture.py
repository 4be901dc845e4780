"""Capture on the embedded real models equals Hugging Face's own hidden states."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.batching import PaddingSide, encode_all, make_batch
from interp.io import data_path, read_jsonl

pytestmark = pytest.mark.embedded

PROMPTS = [
    {"prompt": "The capital of France is", "response": " Paris."},
    {
        "messages": [
            {"role": "user", "content": "Write a haiku about rain."},
            {
                "role": "assistant",
                "content": "Soft rain on the roof, the garden drinks in silence.",
            },
        ]
    },
    {"prompt": "Hi", "response": "!"},
    {
        "prompt": "Explain photosynthesis to a ten-year-old in two sentences, please.",
        "response": " Plants eat light.",
    },
]


def max_relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1)).max())


def check_parity(model: interp.Model, data, side: PaddingSide) -> float:
    hf = AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
    batch = make_batch(encode_all(model, data), model.tokenizer.pad_token_id, side)
    with torch.no_grad():
        out = hf(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
        )
    acts = interp.capture(
        model, data, "all:tokens", batch_size=len(data), padding_side=side, progress=False
    )
    tokens = acts["all:tokens"]  # [token, layer, d], examples in order, real tokens only
    real = batch.attention_mask.bool()
    worst = 0.0
    for layer in range(model.n_layers):
        ours = tokens[:, layer]
        if layer == model.n_layers - 1:  # HF's last entry is taken after the final norm
            with torch.no_grad():
                ours = hf.model.norm(ours)
        worst = max(worst, max_relative_error(ours, out.hidden_states[layer + 1][real]))
    return worst


@pytest.mark.parametrize("side", ["right", "left"])
def test_smollm_resid_post_equals_hf_hidden_states(smollm, side: PaddingSide):
    assert check_parity(smollm, PROMPTS, side) < 1e-4


def test_smollm_batch_size_and_padding_invariance(smollm):
    chats = read_jsonl(data_path("demo_chats.jsonl"))
    reduce = {
        "resp": "response:mean",
        "prompt": "prompt:mean",
        "last": "last_prompt",
        "norm": "all&!first:norm",
    }
    base = interp.capture(smollm, chats, reduce, batch_size=1, progress=False)
    cases: list[tuple[int, PaddingSide]] = [(8, "right"), (8, "left")]
    for batch_size, side in cases:
        other = interp.capture(
            smollm, chats, reduce, batch_size=batch_size, padding_side=side, progress=False
        )
        for key, value in base.data.items():
            assert (
                max_relative_error(
                    other.data[key].unsqueeze(-1) if value.ndim == 2 else other.data[key],
                    value.unsqueeze(-1) if value.ndim == 2 else value,
                )
                < 1e-5
            ), key


def test_gemma3_loads_and_matches_hf():
    gemma = interp.load_model("gemma-3-270m", device="cpu")
    assert (gemma.n_layers, gemma.d_model, gemma.post_norms) == (18, 640, True)
    assert not gemma.has_chat_template  # base model: the plain chat fallback applies
    assert check_parity(gemma, PROMPTS, "left") < 1e-4
