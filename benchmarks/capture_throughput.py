"""Capture throughput as a ratio to a plain HF forward over the same token batch.

Three interp captures (last-token mean, one site) against a plain HF forward with logits on
identical tokens (16 sequences × 128 tokens per batch): resid_post of the last block (goal
≥ 0.95), resid_post of block 9 (goal ≥ 3.5: the forward stops early and skips the unembedding),
and all 30 blocks at once. A hand-stopped HF forward (a hook raises after block 9) is the
reference for how much stopping early can give.
"""

from __future__ import annotations

import contextlib

import torch

import interp
from benchmarks.common import interleaved, plain_hf, record
from interp.batching import encode_all, make_batch

BATCH, LENGTH, N_BATCHES = 16, 128, 4


class _Stop(Exception):
    pass


def main() -> None:
    torch.manual_seed(0)
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    vocab = model.tokenizer.vocab_size
    # random token ids decoded to text and re-encoded; we then time exactly those tokens
    texts = [
        model.tokenizer.decode(torch.randint(1000, vocab, (LENGTH,)))
        for _ in range(BATCH * N_BATCHES)
    ]
    rows = encode_all(model, texts)
    n_tokens = sum(len(r) for r in rows)
    batches = [
        make_batch(rows[i : i + BATCH], model.tokenizer.pad_token_id, "right")
        for i in range(0, len(rows), BATCH)
    ]

    def hf_forward() -> None:
        with torch.no_grad():
            for b in batches:
                hf(b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    def hf_stopped_after_block_9() -> None:
        def stop(*args: object) -> None:
            raise _Stop

        handle = hf.model.layers[9].register_forward_hook(stop)
        try:
            with torch.no_grad():
                for b in batches:
                    with contextlib.suppress(_Stop):
                        hf(b.input_ids, attention_mask=b.attention_mask, use_cache=False)
        finally:
            handle.remove()

    def capture(layers: list[int]) -> None:
        interp.capture(model, texts, "last", layers=layers, batch_size=BATCH, progress=False)

    times = interleaved(
        {
            "hf_forward": hf_forward,
            "hf_stopped_after_block_9": hf_stopped_after_block_9,
            "capture_block_29": lambda: capture([29]),
            "capture_block_9": lambda: capture([9]),
            "capture_all_30_blocks": lambda: capture(list(range(30))),
        },
        repeats=5,
    )
    base = times["hf_forward"]
    rows_out = {
        name: {"seconds": t, "tokens_per_s": n_tokens / t, "ratio_to_hf_forward": base / t}
        for name, t in times.items()
    }
    for name, r in rows_out.items():
        print(
            f"{name:28s} {r['tokens_per_s']:8.0f} tok/s   "
            f"{r['ratio_to_hf_forward']:.2f}x HF forward"
        )
    record(
        "capture_throughput",
        {"tokens": n_tokens, "batch": BATCH, "length": LENGTH, "repeats": 5, "results": rows_out},
    )


if __name__ == "__main__":
    main()
