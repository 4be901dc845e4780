"""24 steering configurations in one batched call vs 24 sequential batch-1 calls (goal ≥ 8×).

The baseline steers the way the persona-vectors reference code does: plain HF `generate` at
batch 1, one configuration at a time, with a forward hook on the decoder block that adds
coef × vector to the last position of every forward pass (its "response" mode). interp runs the
24 rows (8 coefficients × 3 blocks) in one `generate` call, each row with its own intervention,
under the same policy (`LAST`). Greedy; all 24 outputs must be identical.

Two regimes: exactly 40 new tokens per row (EOS suppressed on both sides: HF `min_new_tokens`,
interp `min_new_tokens`), which compares equal work; and stopping at EOS (up to 40 tokens), where
rows end at different lengths: the sequential baseline then skips the tail of short rows, and the
batched call runs its last steps on a shrinking batch.
"""

from __future__ import annotations

import time
from typing import Any

import torch

import interp
from benchmarks.common import machine, plain_hf, record
from interp import caa
from interp.positions import LAST
from interp.steering import interventions as iv
from interp.steering.generation import generate

COEFS = [-8.0, -4.0, -2.0, -1.0, 1.0, 2.0, 4.0, 8.0]
LAYERS = [9, 12, 15]
NEW_TOKENS = 40
CHAT = [{"role": "user", "content": "Describe your ideal weekend in a few sentences."}]


def persona_style(
    hf: Any, ids: torch.Tensor, layer: int, vector: torch.Tensor, coef: float, min_new: int
) -> list[int]:
    """One configuration at batch 1: a hook adds coef·v at the last position of each forward."""

    def hook(module: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[:, -1, :] += coef * vector
        return output

    handle = hf.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=min_new,
                do_sample=False,
                pad_token_id=2,
            )
    finally:
        handle.remove()
    return [t for t in out[0, ids.shape[1] :].tolist() if t != 2]  # drop the EOS (id 2)


def main() -> None:
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    train, _ = caa.split(caa.load_behaviour("myopic-reward"))
    vectors = caa.vector(model, train, behaviour="myopic-reward")
    ids = model.tokenizer(model.format_chat(CHAT), add_special_tokens=False, return_tensors="pt")[
        "input_ids"
    ]
    configs = [(layer, coef) for layer in LAYERS for coef in COEFS]

    report = {}
    for regime, min_new in (("fixed_40_tokens", NEW_TOKENS), ("stop_at_eos", 0)):
        start = time.perf_counter()
        sequential = [
            persona_style(hf, ids, layer, vectors[layer], coef, min_new) for layer, coef in configs
        ]
        t_sequential = time.perf_counter() - start
        plans = [[iv.add(vectors, layer, coef, positions=LAST)] for layer, coef in configs]
        start = time.perf_counter()
        batched = generate(
            model,
            [CHAT] * len(configs),
            plans,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=min_new,
            batch_size=len(configs),
        )
        t_batched = time.perf_counter() - start
        identical = sum(list(b.tokens) == s for b, s in zip(batched, sequential, strict=True))
        tokens = sum(len(b.tokens) for b in batched)
        report[regime] = {
            "sequential_s": t_sequential,
            "batched_s": t_batched,
            "speedup": t_sequential / t_batched,
            "identical_outputs": identical,
            "new_tokens": tokens,
        }
        print(
            f"{regime}: 24 sequential batch-1 calls {t_sequential:.1f} s, one 24-row call "
            f"{t_batched:.1f} s ({t_sequential / t_batched:.1f}x); identical {identical}/24; "
            f"{tokens} new tokens"
        )
    record(
        "sweep_vs_sequential",
        {
            "configs": len(configs),
            "coefs": COEFS,
            "layers": LAYERS,
            "max_new_tokens": NEW_TOKENS,
            "device": machine().get("gpu", "cpu"),
            "regimes": report,
        },
    )


if __name__ == "__main__":
    main()
