"""Choosing the layer and coefficient: a steering sweep judged for the trait and for coherence.

Following Persona Vectors (papers.md §1.5 and App. B.4): steer with `h ← h + α·v` on the
extraction questions at each candidate layer and coefficient, judge every generation, and pick
the setting with the largest trait gain over coefficient 0 whose mean coherence stays above a
gate (75 by default: the paper reports coherence > 75 for all its results). Negative
coefficients suppress the trait; `direction="suppress"` picks the largest drop instead.

Scale. On small models the raw response-mean vector is a small fraction of the residual norm
(7-12% on SmolLM2), so the paper's raw coefficients (0.5-2.5) barely move anything. Sweeps use
`scale="resid_norm"` by default: the edit is α × (mean residual norm at that layer, position 0
left out) × v̂. Each row also gives `raw_coef`, the raw coefficient that makes the same edit
(α × resid_norm / ‖v‖), so settings compare with the paper's.

Every generation is a unit of a run store (`steering.jsonl`), every score one of another
(`judgements.jsonl`): a rerun skips finished work, and another vector, layer, coefficient,
decoding setting or judge computes new units instead of reusing old ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from interp.eval.judges.base import Judge, JudgeItem
from interp.eval.judges.rubrics import builtin
from interp.eval.judges.run import judge_all
from interp.eval.side_cost import SideCost, side_cost
from interp.io import inside, output_dir
from interp.models import Model
from interp.ops import ScaleMode
from interp.persona.rollouts import QuestionSet, questions_of
from interp.persona.spec import TraitSpec
from interp.positions import ALL, LAST_PROMPT, RESPONSE, Positions
from interp.runs.sweeps import Cell, grid, sweep_records
from interp.steering.interventions import add, measure_resid_norm
from interp.vectors import DirectionSet

COHERENCE_GATE = 75.0
Direction = Literal["elicit", "suppress"]


@dataclass(frozen=True)
class Choice:
    """The chosen setting and what it does."""

    layer: int
    coef: float  # in the sweep's scale
    raw_coef: float  # the raw coefficient that makes the same edit
    trait: float  # mean trait score at this setting
    baseline: float  # mean trait score at coefficient 0, same layer
    gain: float  # trait - baseline
    coherence: float
    scale: ScaleMode

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def with_resid_norm(model: Model, vectors: DirectionSet, texts: Sequence[Any]) -> DirectionSet:
    """`vectors` with the `resid_norm` stat measured on `texts` if it has none yet.

    A string in `texts` is a question, measured as one chat-formatted user turn (as the sweep
    asks it); chats and Examples are used as they are.
    """
    if "resid_norm" in vectors.stats:
        return vectors
    prompts = [[{"role": "user", "content": t}] if isinstance(t, str) else t for t in texts]
    return measure_resid_norm(model, prompts, vectors)


def raw_coefficient(vectors: DirectionSet, layer: int, coef: float, scale: str) -> float:
    """The raw coefficient α' with α'·v equal to the edit `coef` makes in `scale`."""
    if scale == "raw":
        return coef
    norm = float(vectors.at([layer]).vectors[0].norm())
    if scale == "unit":
        return coef / norm
    resid = float(vectors.at([layer]).stats["resid_norm"][0])
    return coef * resid / norm


def steering_sweep(
    model: Model,
    spec: TraitSpec,
    vectors: DirectionSet,
    out: str | Path,
    trait_judge: Judge,
    coherence_judge: Judge,
    *,
    layers: Sequence[int],
    coefs: Sequence[float],
    which: QuestionSet = "extraction",
    questions: int | None = None,
    samples: int = 1,
    scale: ScaleMode = "resid_norm",
    positions: Positions = RESPONSE | LAST_PROMPT,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Generate and judge questions × layers × coefs × samples; one row per generation.

    Coefficient 0 is always included: one unsteered baseline of questions × (samples ×
    layers) generations, shared by every layer (its rows appear under each layer with coef 0).
    Columns: layer, coef, raw_coef, sample, question, text, trait, coherence.
    """
    root = output_dir(out, "persona output directory")
    asked = list(questions_of(spec, which))[: questions or None]
    # each question is one user turn, chat-formatted by the model, as in the paper's evaluation
    chats = [[{"role": "user", "content": q}] for q in asked]
    if scale == "resid_norm":
        vectors = with_resid_norm(model, vectors, chats)
    steered = sorted({float(c) for c in coefs} - {0.0})
    # One unsteered baseline shared by every layer (coefficient 0 is the same model whatever
    # the layer), with as many samples per question as all the layers' baselines would have
    # had apart, so the gain of every layer is measured against the same, larger sample.
    n_base = samples * max(len(layers), 1)
    cells = [
        Cell(chat, (), {"baseline": True, "prompt_index": p, "sample": k})
        for p, chat in enumerate(chats)
        for k in range(n_base)
    ]
    cells += grid(chats, vectors, layers, steered, positions, scale, samples)
    records = sweep_records(
        model,
        cells,
        inside(root, "steering.jsonl"),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    items = [JudgeItem(asked[r["config"]["prompt_index"]], r["text"]) for r in records]
    judgements = inside(root, "judgements.jsonl")
    trait = judge_all(trait_judge, items, spec.rubric(), judgements, progress=progress)
    coherence = judge_all(
        coherence_judge, items, builtin("coherence"), judgements, progress=progress
    )
    rows = []
    for record, item, t, c in zip(records, items, trait, coherence, strict=True):
        config = record["config"]
        at = list(layers) if config.get("baseline") else [config["layer"]]
        for layer in at:  # the shared baseline is every layer's coefficient 0
            coef = 0.0 if config.get("baseline") else config["coef"]
            rows.append(
                {
                    "trait_name": spec.name,
                    "layer": int(layer),
                    "coef": coef,
                    "raw_coef": raw_coefficient(vectors, int(layer), coef, scale),
                    "scale": scale,
                    "sample": config["sample"],
                    "question": item.question,
                    "text": item.answer,
                    "trait": t.value,
                    "coherence": c.value,
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_json(
        inside(root, "steering_scores.jsonl"), orient="records", lines=True, force_ascii=False
    )
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean trait and coherence (and counts) per (layer, coef), with the gain over coef 0."""
    table = (
        frame.groupby(["layer", "coef"])
        .agg(
            raw_coef=("raw_coef", "first"),
            trait=("trait", "mean"),
            trait_sem=("trait", "sem"),
            coherence=("coherence", "mean"),
            n=("text", "size"),
            scored=("trait", "count"),
        )
        .reset_index()
    )
    base = table[table["coef"] == 0.0].set_index("layer")["trait"]
    table["gain"] = table["trait"] - table["layer"].map(base)
    return table


def choose(
    table: pd.DataFrame,
    gate: float = COHERENCE_GATE,
    direction: Direction = "elicit",
    scale: ScaleMode = "resid_norm",
) -> Choice | None:
    """The largest gain (or drop, to suppress) whose mean coherence is >= `gate`; None if none.

    Only coefficients of the matching sign count (positive to elicit, negative to suppress).
    """
    if direction not in ("elicit", "suppress"):
        raise ValueError(f"direction must be 'elicit' or 'suppress', got {direction!r}")
    sign = 1.0 if direction == "elicit" else -1.0
    ok = table[(table["coef"] * sign > 0) & (table["coherence"] >= gate)]
    ok = ok[ok["gain"].notna()]
    if ok.empty:
        return None
    best = ok.loc[(ok["gain"] * sign).idxmax()]
    return Choice(
        layer=int(best["layer"]),
        coef=float(best["coef"]),
        raw_coef=float(best["raw_coef"]),
        trait=float(best["trait"]),
        baseline=float(best["trait"] - best["gain"]),
        gain=float(best["gain"]),
        coherence=float(best["coherence"]),
        scale=scale,
    )


def describe(choice: Choice | None, gate: float = COHERENCE_GATE) -> str:
    if choice is None:
        return f"no setting raised the trait with mean coherence >= {gate:g}"
    return (
        f"layer {choice.layer}, coef {choice.coef:g} ({choice.scale}; raw {choice.raw_coef:.3g}): "
        f"trait {choice.trait:.1f} vs {choice.baseline:.1f} unsteered (gain {choice.gain:+.1f}), "
        f"coherence {choice.coherence:.1f}"
    )


def side_cost_of(
    model: Model, vectors: DirectionSet, setting: Choice, texts: Sequence[str] | None = None
) -> SideCost:
    """What `setting` costs on neutral text (`interp/data/persona/neutral.jsonl` by default):
    KL of the next-token distributions and the perplexity change, steered on every token."""
    from interp.io import data_path, read_jsonl

    if texts is None:
        texts = [row["text"] for row in read_jsonl(data_path("persona/neutral.jsonl"))]
    edit = add(vectors, setting.layer, setting.coef, positions=ALL, scale=setting.scale)
    return side_cost(model, list(texts), edit)
