"""Persona-vector extraction: judge the rollouts, filter pairs, take per-layer mean differences.

Following Persona Vectors (Chen et al. 2025, papers.md §1.4, steps 3-6):

1. every rollout is judged for the trait (the spec's rubric, any `Judge`) and for coherence
   (the offline `CoherenceJudge` by default, or an LLM judge with the coherence rubric);
2. the filter is paired: pair (instruction, question, sample) is kept only when the positive
   rollout scores >= `threshold` on the trait, the negative one < `threshold`, and both have
   coherence >= `coherence_min` (50, 50 and 50 in the paper); "no score" fails a test;
3. one capture pass over the kept rollouts (prompt and reply tokenized apart, so the response
   mask is exact) reads three reductions at every block: the response-token mean (the paper's
   vector), the prompt-token mean and the last prompt token;
4. vector[l] = mean over kept pairs of (positive − negative), raw (not normalised), saved as a
   `DirectionSet` per reduction with the trait, the judges and the filter counts in its metadata.

Without an LLM judge, the trait judge is the offline classifier (`ClassifierJudge`), trained on
these same rollouts (positive side vs negative side, grouped by question) and scoring each one
out of fold. It measures "reads like the positive side", which is what the filter needs (drop
positive rollouts that ignored the instruction), not the trait as a careful reader would judge
it; an API judge on a strong model is the paper's setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.batching import Example
from interp.capture import PROMPT_LAST, PROMPT_MEAN, RESPONSE_MEAN, capture
from interp.eval.coherence import CoherenceJudge
from interp.eval.judges.base import Judge
from interp.eval.judges.rubrics import builtin
from interp.eval.judges.run import judge_all
from interp.io import inside, output_dir
from interp.models import Model
from interp.ops import paired_mean_diff
from interp.persona.rollouts import Rollout, generate_rollouts, split
from interp.persona.spec import TraitSpec
from interp.vectors import DirectionSet

REDUCTIONS = {
    "response_mean": RESPONSE_MEAN,
    "prompt_mean": PROMPT_MEAN,
    "prompt_last": PROMPT_LAST,
}
THRESHOLD = 50.0  # trait: positive >= 50, negative < 50 (papers.md §1.4)
COHERENCE_MIN = 50.0  # both sides


class TooFewPairs(ValueError):
    """Filtering left fewer pairs than the extraction needs."""


@dataclass(frozen=True)
class Judged:
    """A rollout with its trait and coherence scores (None: the judge gave no score)."""

    rollout: Rollout
    trait: float | None
    coherence: float | None


@dataclass(frozen=True)
class FilterCounts:
    """How many pairs pass each step of the paired filter, in order (cumulative)."""

    pairs: int  # positive/negative rollouts that share (instruction, question, sample)
    pos_trait: int  # ... and the positive one scores >= threshold
    neg_trait: int  # ... and the negative one scores < threshold
    coherent: int  # ... and both are coherent (>= coherence_min): kept
    threshold: float = THRESHOLD
    coherence_min: float = COHERENCE_MIN

    def describe(self) -> str:
        return (
            f"{self.pairs} pairs → {self.pos_trait} with positive trait >= {self.threshold:g} → "
            f"{self.neg_trait} with negative trait < {self.threshold:g} → {self.coherent} with "
            f"both coherence >= {self.coherence_min:g}"
        )


@dataclass(frozen=True)
class FollowRate:
    """How often an instruction pair's positive side showed the trait (judged >= threshold)."""

    instruction: int
    followed: int
    scored: int  # positive rollouts with a score
    total: int

    @property
    def rate(self) -> float:
        return self.followed / self.total if self.total else float("nan")


@dataclass
class Extraction:
    """What `extract` produced (also written to its output directory)."""

    vectors: dict[str, DirectionSet]
    counts: FilterCounts
    follow: list[FollowRate]
    judged: list[Judged]
    judges: dict[str, Any]  # "trait" / "coherence": judge identities
    classifier: dict[str, Any] = field(default_factory=dict)  # held-out metrics, if trained


def judge_rollouts(
    rollouts: Sequence[Rollout],
    spec: TraitSpec,
    trait_judge: Judge,
    coherence_judge: Judge,
    store: str | Path,
    *,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[Judged]:
    """Trait and coherence scores for each rollout, stored and resumed through `judge_all`."""
    items = [r.item() for r in rollouts]
    trait = judge_all(
        trait_judge, items, spec.rubric(), store, batch_size=batch_size, progress=progress
    )
    coherence = judge_all(
        coherence_judge,
        items,
        builtin("coherence"),
        store,
        batch_size=batch_size,
        progress=progress,
    )
    return [Judged(r, t.value, c.value) for r, t, c in zip(rollouts, trait, coherence, strict=True)]


def paired_filter(
    judged: Sequence[Judged],
    threshold: float = THRESHOLD,
    coherence_min: float = COHERENCE_MIN,
) -> tuple[list[tuple[Judged, Judged]], FilterCounts]:
    """The kept (positive, negative) pairs and the counts at each step of the filter."""
    pos = {j.rollout.pair: j for j in judged if j.rollout.polarity == "pos"}
    neg = {j.rollout.pair: j for j in judged if j.rollout.polarity == "neg"}
    pairs = [(pos[k], neg[k]) for k in sorted(pos.keys() & neg.keys())]

    def at_least(value: float | None, bound: float) -> bool:
        return value is not None and value >= bound

    step1 = [(p, n) for p, n in pairs if at_least(p.trait, threshold)]
    step2 = [(p, n) for p, n in step1 if n.trait is not None and n.trait < threshold]
    kept = [
        (p, n)
        for p, n in step2
        if at_least(p.coherence, coherence_min) and at_least(n.coherence, coherence_min)
    ]
    counts = FilterCounts(len(pairs), len(step1), len(step2), len(kept), threshold, coherence_min)
    return kept, counts


def follow_rates(judged: Sequence[Judged], threshold: float = THRESHOLD) -> list[FollowRate]:
    """Per instruction pair: the share of its positive rollouts judged >= threshold."""
    by: dict[int, list[Judged]] = {}
    for j in judged:
        if j.rollout.polarity == "pos":
            by.setdefault(j.rollout.instruction, []).append(j)
    return [
        FollowRate(
            i,
            sum(j.trait is not None and j.trait >= threshold for j in rows),
            sum(j.trait is not None for j in rows),
            len(rows),
        )
        for i, rows in sorted(by.items())
    ]


def vectors_from_pairs(
    model: Model,
    pairs: Sequence[tuple[Judged, Judged]],
    *,
    batch_size: int = 16,
    extra: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> dict[str, DirectionSet]:
    """One capture pass (all blocks, resid_post); per reduction, mean of (pos − neg)."""
    if not pairs:
        raise TooFewPairs("no pairs to extract from")
    examples = [Example(j.rollout.chat(), j.rollout.response) for pair in pairs for j in pair]
    acts = capture(
        model, examples, REDUCTIONS, layers="all", batch_size=batch_size, progress=progress
    )
    out = {}
    for name in REDUCTIONS:
        values = acts[name]  # [2 × pairs, layer, d_model], positive then negative per pair
        pos, neg = values[0::2], values[1::2]
        vector = paired_mean_diff(pos, neg)
        if not bool(torch.isfinite(vector).all()):
            raise ValueError(
                f"the {name} difference has NaN/inf values: some kept rollout selects no tokens "
                "for it (an empty reply?); drop empty replies before extracting"
            )
        out[name] = DirectionSet.from_tensor(
            vector,
            model,
            method=f"persona:paired_mean_diff({REDUCTIONS[name]})",
            data=[{"prompt": e.prompt, "response": e.response} for e in examples],
            reduction=name,
            n_pairs=len(pairs),
            **dict(extra or {}),
        )
    return out


def classifier_judge(
    spec: TraitSpec, rollouts: Sequence[Rollout], path: Path, *, folds: int = 5
) -> Any:
    """The offline trait judge trained on these rollouts (positive vs negative side)."""
    from interp.eval.judges.classifier import ClassifierJudge

    pos, neg = split(rollouts)
    pos = [r for r in pos if r.response.strip()]
    neg = [r for r in neg if r.response.strip()]
    judge = ClassifierJudge.train(
        [r.item() for r in pos],
        [r.item() for r in neg],
        trait=spec.name,
        folds=folds,
    )
    judge.save(path)
    return judge


def extract(
    model: Model,
    spec: TraitSpec,
    out: str | Path,
    *,
    judge: Judge | None = None,
    coherence_judge: Judge | None = None,
    samples: int = 1,
    questions: int | None = None,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    threshold: float = THRESHOLD,
    coherence_min: float = COHERENCE_MIN,
    min_pairs: int = 5,
    progress: bool | None = None,
) -> Extraction:
    """Rollouts → judged → paired filter → three `DirectionSet`s, all written under `out`.

    Files in `out`: `rollouts.jsonl` and `judgements.jsonl` (run stores: a rerun resumes and
    skips finished work), `classifier/` (when no trait judge is given), `vectors/{trait}_
    {reduction}.safetensors` and `extraction.json` (counts, follow rates, judge identities).

    judge: the trait judge; None trains the offline classifier on the rollouts.
    coherence_judge: None uses the offline coherence score under the unsteered `model`.
    """
    root = output_dir(out, "persona output directory")
    rollouts = generate_rollouts(
        model,
        spec,
        inside(root, "rollouts.jsonl"),
        samples=samples,
        questions=questions,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    metrics: dict[str, Any] = {}
    if judge is None:
        trained = classifier_judge(spec, rollouts, inside(root, "classifier"))
        metrics = dict(trained.metrics)
        judge = trained
    coherence_judge = coherence_judge or CoherenceJudge(model)
    judged = judge_rollouts(
        rollouts,
        spec,
        judge,
        coherence_judge,
        inside(root, "judgements.jsonl"),
        progress=progress,
    )
    kept, counts = paired_filter(judged, threshold, coherence_min)
    follow = follow_rates(judged, threshold)
    judges = {
        "trait": judge.identity(spec.rubric()).to_dict(),
        "coherence": coherence_judge.identity(builtin("coherence")).to_dict(),
    }
    summary: dict[str, Any] = {
        "trait": spec.name,
        "spec": spec.digest(),
        "model": model.name,
        "fingerprint": model.fingerprint(),
        "rollouts": len(rollouts),
        "filter": asdict(counts),
        "follow_rates": [{**asdict(f), "rate": f.rate} for f in follow],
        "judges": judges,
        "classifier_metrics": metrics,
        "settings": {
            "samples": samples,
            "questions": questions,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        },
    }
    summary_path = inside(root, "extraction.json")
    if len(kept) < min_pairs:
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
        rates = ", ".join(f"{f.instruction}: {f.followed}/{f.total}" for f in follow)
        raise TooFewPairs(
            f"{spec.name}: the paired filter kept {len(kept)} pairs, fewer than min_pairs="
            f"{min_pairs}: {counts.describe()}. Positive rollouts judged >= {threshold:g} per "
            f"instruction: {rates}. Remedies: more samples per question (samples=), more "
            "questions, a stronger judge or generator model, longer replies (max_new_tokens=), "
            "or a lower threshold / coherence_min (say so when you report results)"
        )
    vectors = vectors_from_pairs(
        model,
        kept,
        extra={
            "trait": spec.name,
            "spec": spec.digest(),
            "judges": judges,
            "filter": asdict(counts),
        },
        progress=progress,
    )
    folder = output_dir(inside(root, "vectors"), "vector directory")
    for name, ds in vectors.items():
        ds.save(inside(folder, f"{spec.name}_{name}.safetensors"))
    summary["vectors"] = {name: ds.digest() for name, ds in vectors.items()}
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return Extraction(vectors, counts, follow, judged, judges, metrics)
