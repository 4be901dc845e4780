"""Per-token activations for SAE training and evaluation, through the one capture path.

`collect` runs documents through `interp.capture.capture` with a `tokens` reduction (every token
but the first, so the attention sink at position 0 never enters the data), at one site and any
number of layers in the same forward, cut after the deepest layer. Rare "sink" tokens whose norm
is many times the typical norm (SmolLM2 has a few at ~10–100×) are dropped per layer, because a
handful of them dominate a reconstruction loss; the count dropped is reported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import Reduction, capture
from interp.models import Model
from interp.positions import parse as parse_positions
from interp.sites import Site

TOKENS = Reduction(parse_positions("all&!first"), "tokens")


@dataclass
class Collected:
    """Activations per layer (`[token, d_model]`, sinks removed) and how they were gathered."""

    acts: dict[int, Float[Tensor, "token d_model"]]
    site: Site
    tokens_seen: int
    sinks_dropped: dict[int, int]
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / max(self.seconds, 1e-9)


def collect(
    model: Model,
    documents: Sequence[str],
    layers: Sequence[int],
    *,
    site: Site = "resid_post",
    max_tokens: int | None = None,
    batch_size: int = 8,
    chunk: int = 64,
    sink_ratio: float = 8.0,
    dtype: torch.dtype = torch.float16,
    bf16_autocast: bool = False,
    progress: bool | None = None,
) -> Collected:
    """Token activations of `documents` at `layers` of `site`, up to `max_tokens` per layer.

    Documents are read `chunk` at a time through `capture` (bounded memory), and tokens whose
    norm exceeds `sink_ratio` × the median norm of their layer are dropped. `bf16_autocast`
    runs the forward under CPU bfloat16 autocast (faster where the CPU supports it; it moves
    activations by about 1%).
    """
    if not documents:
        raise ValueError("no documents to collect activations from; give a non-empty corpus")
    if not layers:
        raise ValueError("no layers given; e.g. layers=[6, 15, 24]")
    parts: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    seen = 0
    start = time.perf_counter()
    for begin in range(0, len(documents), chunk):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
            acts = capture(
                model,
                documents[begin : begin + chunk],
                {"tokens": TOKENS},
                layers=list(layers),
                sites=site,
                batch_size=batch_size,
                progress=progress,
            )
        block = acts.get("tokens", site)  # [token, layer, d]
        for li, layer in enumerate(acts.layers):
            parts[layer].append(block[:, li].to(dtype))
        seen += block.shape[0]
        if max_tokens is not None and seen >= max_tokens:
            break
    seconds = time.perf_counter() - start
    out: dict[int, Tensor] = {}
    dropped: dict[int, int] = {}
    for layer, chunks in parts.items():
        x = torch.cat(chunks)[:max_tokens]
        norms = x.float().norm(dim=-1)
        keep = norms <= sink_ratio * norms.median()
        out[layer] = x[keep]
        dropped[layer] = int((~keep).sum())
    return Collected(out, site, min(seen, max_tokens or seen), dropped, seconds)
