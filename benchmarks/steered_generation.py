"""Steered generation throughput as a ratio to plain HF `generate` (goal ≥ 0.9).

Same prompts, same batch, exactly 40 new tokens each (HF: min_new_tokens=40; interp:
stop_at_eos=False), greedy. interp steers with a CAA-style vector at block 12 on every response
token; the baseline is an independent, un-bridged HF model with no steering at all, so the
ratio includes the cost of steering. Batches of 1, 8 and 24.
"""

from __future__ import annotations

from typing import Any

import torch

import interp
from benchmarks.common import interleaved, plain_hf, record
from interp.positions import LAST_PROMPT, RESPONSE
from interp.steering import interventions as iv
from interp.steering.generation import generate
from interp.vectors import DirectionSet

NEW_TOKENS = 40
QUESTIONS = [
    "What is the capital of France?",
    "Give me one tip for sleeping better.",
    "Explain photosynthesis briefly.",
    "Write a haiku about rain.",
    "How many legs does a spider have?",
    "Suggest a name for a grey cat.",
    "What does a compiler do?",
    "Is it safe to look at the sun?",
]


def main() -> None:
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    g = torch.Generator().manual_seed(0)
    vector = DirectionSet.from_tensor(
        torch.randn(30, 576, generator=g) * 0.2, model, method="random"
    )
    steer = iv.add(vector, 12, 4.0, positions=RESPONSE | LAST_PROMPT)
    tokenizer = model.tokenizer
    rows = {}
    for batch in (1, 8, 24):
        chats = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(batch)]
        texts = [model.format_chat(c) for c in chats]
        tokenizer.padding_side = "left"
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        tokenizer.padding_side = "right"

        def hf_generate(enc: Any = enc) -> None:
            with torch.no_grad():
                hf.generate(
                    **enc,
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )

        def ours(chats: list[Any] = chats, batch: int = batch) -> None:
            generate(
                model, chats, steer, max_new_tokens=NEW_TOKENS, stop_at_eos=False, batch_size=batch
            )

        times = interleaved({"hf_generate": hf_generate, "interp_steered": ours}, repeats=3)
        new_tokens = batch * NEW_TOKENS
        rows[batch] = {
            "hf_generate_tok_s": new_tokens / times["hf_generate"],
            "interp_steered_tok_s": new_tokens / times["interp_steered"],
            "ratio": times["hf_generate"] / times["interp_steered"],
        }
        r = rows[batch]
        print(
            f"batch {batch:2d}: HF generate {r['hf_generate_tok_s']:6.1f} new tok/s, "
            f"interp steered {r['interp_steered_tok_s']:6.1f} new tok/s, ratio {r['ratio']:.2f}"
        )
    record(
        "steered_generation", {"new_tokens": NEW_TOKENS, "layer": 12, "repeats": 3, "results": rows}
    )


if __name__ == "__main__":
    main()
