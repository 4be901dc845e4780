"""SAE training data: tokens per second of `interp.saes.collect` vs a plain HF forward.

The recipe collects every token's residual (position 0 left out) at blocks 6, 15 and 24 of
SmolLM2 from Debian's Python documentation. interp's path is one capture per chunk of documents
with a `tokens` reduction at the three blocks, the forward cut after block 24. The baseline is
a plain HF forward over the same padded batches with `output_hidden_states=True` (the whole
model, logits included), keeping the same tokens. Medians of interleaved runs and their ratio.
The SAE training time per layer is in each shipped SAE's metrics.json (`train.seconds`).
"""

from __future__ import annotations

import torch

import interp
from benchmarks.common import interleaved, plain_hf, record
from interp.batching import encode_all, make_batch
from interp.saes.collect import collect
from interp.saes.corpus import read_corpus

LAYERS = [6, 15, 24]
DOCS = 48
BATCH = 8


def main() -> None:
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    documents = read_corpus().documents[:DOCS]
    rows = encode_all(model, documents)
    tokens = sum(len(r) - 1 for r in rows)

    def ours() -> None:
        collect(model, documents, LAYERS, batch_size=BATCH, chunk=DOCS, progress=False)

    def baseline() -> None:
        kept = []
        with torch.no_grad():
            for start in range(0, len(rows), BATCH):
                batch = make_batch(rows[start : start + BATCH], model.tokenizer.pad_token_id)
                out = hf(
                    batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
                )
                mask = batch.attention_mask.bool().clone()
                mask[:, 0] = False
                kept.append([out.hidden_states[layer + 1][mask] for layer in LAYERS])

    times = interleaved({"interp": ours, "hf_forward": baseline}, repeats=3)
    rates = {name: tokens / seconds for name, seconds in times.items()}
    print(
        f"{tokens} tokens: interp {rates['interp']:.0f} tok/s, plain HF {rates['hf_forward']:.0f} "
        f"tok/s (ratio {rates['interp'] / rates['hf_forward']:.2f})"
    )
    record(
        "sae_collection",
        {
            "tokens": tokens,
            "layers": LAYERS,
            "seconds": times,
            "tokens_per_second": rates,
            "ratio": rates["interp"] / rates["hf_forward"],
        },
    )


if __name__ == "__main__":
    main()
