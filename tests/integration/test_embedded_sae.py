"""A published SAE placed in an embedded model: Gemma Scope 2 on Gemma 3 270M.

The SAE comes through SAELens's real `SAE.from_pretrained` from a hub on 127.0.0.1 serving
random weights of Gemma Scope 2's layout (tests/fake_hub.py). SAELens names the SAE's input
`blocks.12.hook_resid_post` and, on the Hugging Face side, `model.layers.12.output`; the test
checks that `interp` encodes exactly that tensor: latents of our capture at block 12 equal the
JumpReLU formula applied to Hugging Face's own `hidden_states[13]`.
"""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import interp
from interp.batching import encode_all, make_batch
from interp.saes.load import load_sae
from tests.fake_hub import fake_hub
from tests.tolerance import FP32, assert_close
from tests.unit.test_saes_load import GEMMA_SCOPE_2, gemma_scope_2_files, serve_gemma_scope_2

pytestmark = pytest.mark.embedded

PROMPTS = [
    {"prompt": "The Eiffel Tower is in the city of", "response": " Paris."},
    {"prompt": "Michael Jordan played the sport of", "response": " basketball."},
]


def test_gemma_scope_2_reads_hf_layer_output_on_the_embedded_gemma(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    gemma = interp.load_model("gemma-3-270m", device="cpu")
    arrays = gemma_scope_2_files(d_in=gemma.d_model)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with fake_hub(serve_gemma_scope_2(arrays)) as server:
        server.patch(monkeypatch)
        sae = load_sae(GEMMA_SCOPE_2).check(gemma)  # google/gemma-3-270m is the embedded model
    acts = interp.capture(
        gemma,
        PROMPTS,
        "all:tokens",
        layers=[12],
        batch_size=2,
        padding_side="right",
        progress=False,
    )
    ours = sae.encode_captured(acts, "all:tokens")

    hf = AutoModelForCausalLM.from_pretrained(gemma.source, dtype=torch.float32).eval()
    batch = make_batch(encode_all(gemma, PROMPTS), gemma.tokenizer.pad_token_id, "right")
    with torch.no_grad():
        states = hf(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
        ).hidden_states
    real = batch.attention_mask.bool()

    def jumprelu(hidden: torch.Tensor) -> torch.Tensor:
        pre = hidden @ torch.from_numpy(arrays["w_enc"]) + torch.from_numpy(arrays["b_enc"])
        return pre.relu() * (pre > torch.from_numpy(arrays["threshold"]))

    want = jumprelu(states[13][real])  # hidden_states[l + 1] is model.layers.l.output
    assert ours.shape == want.shape == (int(real.sum()), 16384)
    same_gate = (ours > 0) == (want > 0)
    assert (
        same_gate.float().mean() > 0.9999
    )  # a gate may flip only for a pre-activation at threshold
    # 18 blocks through the bridge against plain HF (measured 1.3e-7 here); a wrong tensor
    # read moves latents by O(1) of their size
    assert_close(ours[same_gate], want[same_gate], rel=FP32, what="latents")
    for neighbour in (12, 14):  # the blocks either side give other latents: not off by one
        assert ((ours > 0) == (jumprelu(states[neighbour][real]) > 0)).float().mean() < 0.99
    assert np.isfinite(ours.numpy()).all()
