"""Entity latent scoring: one batched capture of every entity at every block vs per-entity forwards.

interp reads the residual at the last entity token and the next token of all 300 shipped
entities' scoring prompts, at all 30 blocks, in one batched capture (`capture_entities`), then
encodes every shipped SAE's latents on the captured rows. The baseline is what a script without
the toolkit does: one plain HF forward per entity with `output_hidden_states=True`, picking the
two positions out of every layer. Both read the same numbers (checked here); the benchmark
reports the medians of interleaved runs and their ratio, plus the SAE encoding time.
"""

from __future__ import annotations

import pandas as pd
import torch

import interp
from benchmarks.common import interleaved, plain_hf, record
from interp.entities.data import load_entities
from interp.entities.scoring import capture_entities
from interp.entities.tokens import locate_all
from interp.saes.load import load_sae, shipped_saes


def main() -> None:
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    data = load_entities()
    entities = list(data.entities)
    # labels only decide which rows are kept: keep every entity
    labels = pd.DataFrame(
        {
            "type": [e.type for e in entities],
            "name": [e.name for e in entities],
            "label": ["known" if i % 2 else "unknown" for i in range(len(entities))],
        }
    )
    prompts, found = locate_all(model, entities, data.types)
    saes = [load_sae(name) for name in shipped_saes("smollm2-135m-instruct")]

    def ours() -> dict[str, torch.Tensor]:
        return capture_entities(model, data, labels, batch_size=64).acts

    def baseline() -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for prompt, where in zip(prompts, found, strict=True):
                ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
                states = hf(ids, output_hidden_states=True).hidden_states[1:]
                rows.append(torch.stack([h[0, where.last] for h in states]))
        return torch.stack(rows)

    got, expected = ours(), baseline()
    # the last hidden state carries HF's final norm; compare the other blocks
    torch.testing.assert_close(got["last"][:, :-1], expected[:, :-1], atol=1e-3, rtol=1e-3)
    times = interleaved({"interp": ours, "hf_per_entity": baseline}, repeats=3)

    def encode() -> None:
        for sae in saes:
            for position in ("last", "after"):
                sae.encode(got[position][:, sae.layer])

    encode_time = interleaved({"encode": encode}, repeats=3)["encode"]
    ratio = times["hf_per_entity"] / times["interp"]
    print(
        f"capture {times['interp']:.2f} s vs per-entity HF {times['hf_per_entity']:.2f} s "
        f"({ratio:.1f}x); SAE encoding of {len(saes)} SAEs x 2 positions {encode_time:.3f} s"
    )
    record(
        "entity_scoring",
        {
            "entities": len(entities),
            "blocks": model.n_layers,
            "seconds": times,
            "speedup_vs_hf_per_entity": ratio,
            "sae_encode_seconds": encode_time,
            "saes": [s.source for s in saes],
        },
    )


if __name__ == "__main__":
    main()
