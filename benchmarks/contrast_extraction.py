"""Last-token activations at all 30 layers for 100 contrast pairs: interp vs steering-vectors.

The peer baseline is `steering_vectors.train_steering_vector` at batch size 1 (its default) on a
plain HF model, reading the last token of each text at every decoder block (= resid_post). interp
captures the same positions in one batched pass (batch 16) and takes the difference of means.
Goal: ≥ 2.5× faster, with identical vectors (cosine ≥ 0.9999 at every layer). steering-vectors
at batch 16 is reported too, for reference.
"""

from __future__ import annotations

import torch
from steering_vectors import train_steering_vector

import interp
from benchmarks.common import interleaved, plain_hf, record
from interp import ops

THINGS = [
    "film",
    "book",
    "concert",
    "meal",
    "holiday",
    "game",
    "lecture",
    "hotel",
    "museum",
    "play",
    "album",
    "podcast",
    "hike",
    "course",
    "café",
    "train ride",
    "festival",
    "exhibition",
    "workshop",
    "novel",
    "series",
    "match",
    "recipe",
    "garden",
    "city",
]
TEMPLATES = [
    ("I loved the {x}; honestly it was wonderful", "I hated the {x}; honestly it was awful"),
    ("The {x} made me so happy that", "The {x} made me so angry that"),
    ("Everyone agreed the {x} was a delight, and", "Everyone agreed the {x} was a disaster, and"),
    ("What a brilliant {x}! I would", "What a terrible {x}! I would"),
]


def pairs() -> list[tuple[str, str]]:
    return [(p.format(x=x), n.format(x=x)) for p, n in TEMPLATES for x in THINGS]


def main() -> None:
    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    hf = plain_hf(model.source)
    data = pairs()
    assert len(data) == 100
    results: dict[str, torch.Tensor] = {}

    def peer(batch_size: int) -> None:
        sv = train_steering_vector(
            hf,
            model.tokenizer,
            data,
            layers=list(range(30)),
            read_token_index=-1,
            batch_size=batch_size,
        )
        results[f"steering_vectors_bs{batch_size}"] = torch.stack(
            [sv.layer_activations[i] for i in range(30)]
        )

    def ours() -> None:
        texts = [p for p, _ in data] + [n for _, n in data]
        acts = interp.capture(model, texts, "last", layers="all", batch_size=16, progress=False)
        results["interp"] = ops.mean_diff(acts["last"][:100], acts["last"][100:])

    times = interleaved(
        {
            "steering_vectors_bs1": lambda: peer(1),
            "steering_vectors_bs16": lambda: peer(16),
            "interp": ours,
        },
        repeats=3,
    )
    reference = results["steering_vectors_bs1"].float()
    summary = {}
    for name, seconds in times.items():
        vec = results[name].float()
        cosine = torch.nn.functional.cosine_similarity(vec, reference, dim=-1)
        summary[name] = {
            "seconds": seconds,
            "speedup_vs_steering_vectors_bs1": times["steering_vectors_bs1"] / seconds,
            "min_cosine_to_bs1_vector": float(cosine.min()),
            "max_relative_difference": float(
                ((vec - reference).norm(dim=-1) / reference.norm(dim=-1)).max()
            ),
        }
        s = summary[name]
        print(
            f"{name:22s} {seconds:6.2f} s  {s['speedup_vs_steering_vectors_bs1']:.2f}x  "
            f"min cosine {s['min_cosine_to_bs1_vector']:.6f}  "
            f"max rel diff {s['max_relative_difference']:.1e}"
        )
    record(
        "contrast_extraction", {"pairs": len(data), "layers": 30, "repeats": 3, "results": summary}
    )


if __name__ == "__main__":
    main()
