"""Concept vectors (Lindsey 2025, appendix "Concept Vector Details"; papers.md §2.2).

A concept's vector at block ℓ is the residual stream at the last token before the assistant's
reply to "Tell me about {word}" (the word lower-cased), minus the mean of the same activation
over the baseline words: v_ℓ(word) = h_ℓ(word) − mean_b h_ℓ(b). It is not normalised, and it
is recorded and injected at the same block. Both prompts go through the model's chat template
(or the plain fallback for a base model), so "the token before the reply" is the last token of
the generation prompt, whatever the template spells there.

One batched capture serves every concept and baseline word, at every block, and also measures
the mean residual norm over the prompts' tokens (first token excluded), which the `resid_norm`
injection scale reads.

Injection scales (`ConceptVectors.direction(word, scale)`):
- `raw`: strength × v, the published convention for "injection strength";
- `unit_norm`: strength × v̂ × the mean norm of all the set's concept vectors at that block, so
  every concept is injected with the same norm and the strengths keep the raw scale's size;
- `resid_norm`: strength × v̂ × the mean residual norm at that block (the replications that use
  α·‖h‖·v̂; one warns that α = 2 is already destructive on open models).

`contrast_vector` makes the other kind the paper shows: the same activation on paired texts
(e.g. a sentence in all caps minus the same sentence in normal case), mean difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import capture
from interp.introspection.words import checked_words, word_list
from interp.io import load_tensors, save_tensors
from interp.models import LayerSpec, Model
from interp.ops import ScaleMode, unit
from interp.sites import Site
from interp.vectors import DirectionSet, VectorMeta, VectorMismatch, data_hash

InjectionScale = Literal["raw", "unit_norm", "resid_norm"]
INJECTION_SCALES: tuple[InjectionScale, ...] = get_args(InjectionScale)
CONCEPT_PROMPT = "Tell me about {word}"
FORMAT = "interp.concept_vectors/1"
METHOD = "concept: last token before the reply, minus the baseline-word mean"
_REDUCE = {"last": "last:mean", "norm": "all&!first:norm"}


def concept_prompt(word: str) -> list[dict[str, str]]:
    """The one-turn chat whose final token is read: "Tell me about {word}" (lower case)."""
    return [{"role": "user", "content": CONCEPT_PROMPT.format(word=word.lower())}]


@dataclass(frozen=True)
class ConceptVectors:
    """One vector per (concept, block) of one model, with the baseline they were taken from."""

    words: tuple[str, ...]
    vectors: Float[Tensor, "concept layer d_model"]
    baseline: Float[Tensor, "layer d_model"]  # mean activation over the baseline words
    resid_norm: Float[Tensor, " layer"]  # mean residual norm over the prompts' tokens
    layers: tuple[int, ...]
    meta: VectorMeta

    def __post_init__(self) -> None:
        n, n_layers, d = self.vectors.shape
        if n != len(self.words) or n_layers != len(self.layers) or d != self.meta.d_model:
            raise ValueError(
                f"concept vectors have shape {tuple(self.vectors.shape)} for {len(self.words)} "
                f"words, {len(self.layers)} layers and d_model {self.meta.d_model}"
            )
        if len({w.lower() for w in self.words}) != len(self.words):
            raise ValueError("concept words repeat (case-insensitively); give each word once")
        if not bool(torch.isfinite(self.vectors).all()):
            raise ValueError("concept vectors contain NaN or inf; re-extract them")

    def index(self, word: str) -> int:
        """Position of `word` (case-insensitive), or an error that says how to add it."""
        lowered = [w.lower() for w in self.words]
        if word.lower() not in lowered:
            shown = ", ".join(self.words[:8]) + (" …" if len(self.words) > 8 else "")
            raise ValueError(
                f"no concept vector for {word!r}: this set has {len(self.words)} concepts "
                f"({shown}); extract it with `interp inject vectors --words {word}`"
            )
        return lowered.index(word.lower())

    def norms(self) -> Float[Tensor, "concept layer"]:
        return self.vectors.norm(dim=-1)

    def direction(
        self, word: str, scale: InjectionScale | str = "raw"
    ) -> tuple[DirectionSet, ScaleMode]:
        """`word`'s direction set and the engine scale that together make `scale` (see top)."""
        if scale not in INJECTION_SCALES:
            raise ValueError(
                f"unknown injection scale {scale!r}; use one of {', '.join(INJECTION_SCALES)}"
            )
        vectors = self.vectors[self.index(word)]
        mode: ScaleMode = "raw"
        if scale == "unit_norm":
            vectors = unit(vectors) * self.norms().mean(dim=0)[:, None]
        elif scale == "resid_norm":
            mode = "resid_norm"
        extra = {**self.meta.extra, "concept": word, "injection_scale": scale}
        meta = replace(self.meta, extra=extra)
        return DirectionSet(vectors, self.layers, meta, {"resid_norm": self.resid_norm}), mode

    def check(self, model: Model) -> ConceptVectors:
        """Raise unless these vectors were made on `model` (`DirectionSet.check`'s rules)."""
        try:
            DirectionSet(self.baseline, self.layers, self.meta).check(model)
        except VectorMismatch as err:
            raise VectorMismatch(f"concept vectors: {err}; extract them on this model") from None
        return self

    def save(self, path: str | Path) -> Path:
        tensors = {
            "vectors": self.vectors,
            "baseline": self.baseline,
            "resid_norm": self.resid_norm,
        }
        meta = {**self.meta.to_dict(), "format": FORMAT, "words": list(self.words)}
        return save_tensors(path, tensors, {**meta, "layers": list(self.layers)})

    @classmethod
    def load(cls, path: str | Path) -> ConceptVectors:
        tensors, raw = load_tensors(path)
        if raw.get("format") != FORMAT or set(tensors) != {"vectors", "baseline", "resid_norm"}:
            raise ValueError(
                f"{path} is not an interp concept-vector file; make one with "
                "`interp inject vectors`"
            )
        try:
            return cls(
                tuple(raw["words"]),
                tensors["vectors"].float(),
                tensors["baseline"].float(),
                tensors["resid_norm"].float(),
                tuple(raw["layers"]),
                VectorMeta.from_dict({k: v for k, v in raw.items() if k not in ("words",)}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path}: malformed concept-vector file ({err}); re-extract it"
            ) from None


def extract_concepts(
    model: Model,
    words: Sequence[str] | None = None,
    baseline: Sequence[str] | None = None,
    *,
    layers: LayerSpec = "all",
    site: Site = "resid_post",
    batch_size: int = 16,
    progress: bool | None = None,
) -> ConceptVectors:
    """Concept vectors for `words` (default: the 50 published concepts) against `baseline`
    (default: the 100 published baseline words), at `layers` of `site`, in one capture."""
    concepts = checked_words(word_list("concepts") if words is None else words, "words")
    base = checked_words(word_list("baseline") if baseline is None else baseline, "baseline")
    acts = capture(
        model,
        [concept_prompt(w) for w in (*concepts, *base)],
        _REDUCE,
        layers=layers,
        sites=site,
        batch_size=batch_size,
        progress=progress,
    )
    last = acts["last"]  # [word, layer, d_model]
    mean = last[len(concepts) :].mean(dim=0)
    meta = VectorMeta(
        model=model.name,
        n_layers=model.n_layers,
        d_model=model.d_model,
        site=site,
        method=METHOD,
        data_hash=data_hash(base),
        extra={"prompt": CONCEPT_PROMPT, "n_baseline": len(base)},
        fingerprint=model.fingerprint(),
    )
    return ConceptVectors(
        concepts,
        last[: len(concepts)] - mean,
        mean,
        acts["norm"].mean(dim=0),
        tuple(acts.layers),
        meta,
    )


def contrast_vector(
    model: Model,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    name: str,
    layers: LayerSpec = "all",
    site: Site = "resid_post",
    batch_size: int = 16,
) -> DirectionSet:
    """Mean over pairs of h(positive) − h(negative), each text one user turn, read at the token
    before the reply (the concept vectors' position); e.g. all-caps text minus normal case."""
    pos = checked_words(positive, "positive texts")
    neg = checked_words(negative, "negative texts")
    if len(pos) != len(neg):
        raise ValueError(
            f"contrast pairs need as many positive as negative texts, got {len(pos)} and {len(neg)}"
        )
    chats: list[Any] = [[{"role": "user", "content": t}] for t in (*pos, *neg)]
    acts = capture(model, chats, "last:mean", layers=layers, sites=site, batch_size=batch_size)
    last = acts["last:mean"]
    diff = (last[: len(pos)] - last[len(pos) :]).mean(dim=0)
    return DirectionSet.from_tensor(
        diff,
        model,
        acts.layers,
        site=site,
        method="contrast: last token before the reply, paired mean difference",
        data=[*pos, *neg],
        concept=name,
    )
