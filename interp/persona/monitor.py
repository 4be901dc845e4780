"""Monitoring prompt-induced shifts: the last prompt token's projection predicts the trait.

Following Persona Vectors §3.3 (papers.md §1.6): under a graded series of system prompts (from
trait-suppressing to trait-eliciting, the spec's `monitor.system_prompts`) and under many-shot
prompts (0, 5, 10, 15 and 20 example exchanges showing the trait, `monitor.many_shot`), each
evaluation question is asked; the monitor is the projection of the **last prompt token**'s
resid_post at one layer onto the unit persona vector, `proj = a·v / ‖v‖`, read before the
model answers. The model then answers (sampled, resumable), the answer is judged for the
trait, and the Pearson r between projection and trait score is reported overall (per
experiment) and within each condition (each system prompt, each shot count), with bootstrap
95% intervals. The paper's Table 2 gives r = 0.75-0.83 overall on 7-8B models and notes that
the correlation is driven mostly by prompt type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from interp.batching import Example
from interp.capture import PROMPT_LAST, capture
from interp.eval.judges.base import Judge, JudgeItem
from interp.eval.judges.run import judge_all
from interp.eval.stats import pearson
from interp.io import inside, output_dir
from interp.models import Model
from interp.persona.spec import TraitSpec
from interp.runs.sweeps import Cell, sweep_records
from interp.vectors import DirectionSet

SHOTS = (0, 5, 10, 15, 20)


def monitor_prompts(
    spec: TraitSpec, questions: int | None = None, shots: Sequence[int] = SHOTS
) -> list[tuple[dict[str, Any], list[dict[str, str]]]]:
    """(condition, chat) for every system prompt and shot count × evaluation question."""
    asked = list(spec.evaluation_questions)[: questions or None]
    examples = list(spec.many_shot)
    if max(shots, default=0) > len(examples):
        raise ValueError(
            f"{spec.name} has {len(examples)} many-shot examples, fewer than the {max(shots)} "
            "shots asked for; add examples to monitor.many_shot or ask for fewer shots"
        )
    out = []
    for level, system in enumerate(spec.monitor_prompts):
        for q, question in enumerate(asked):
            asked_with = [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ]
            out.append(({"experiment": "system", "level": level, "question": q}, asked_with))
    for k in shots:
        for q, question in enumerate(asked):
            chat: list[dict[str, str]] = []
            for shot in examples[:k]:
                chat += [
                    {"role": "user", "content": shot.question},
                    {"role": "assistant", "content": shot.answer},
                ]
            chat.append({"role": "user", "content": question})
            out.append(({"experiment": "many-shot", "level": k, "question": q}, chat))
    return out


def projections(
    model: Model, chats: Sequence[Any], vectors: DirectionSet, layer: int, batch_size: int = 8
) -> list[float]:
    """Last-prompt-token resid_post at `layer` projected on the unit vector there."""
    acts = capture(
        model,
        [Example(chat, "") for chat in chats],
        {"last": PROMPT_LAST},
        layers=[layer],
        sites=vectors.meta.site,
        batch_size=batch_size,
    )
    v = vectors.at([layer]).vectors[0].float()
    unit = v / v.norm()
    values: torch.Tensor = acts["last"][:, 0].float() @ unit
    return [float(x) for x in values]


def run_monitor(
    model: Model,
    spec: TraitSpec,
    vectors: DirectionSet,
    layer: int,
    out: str | Path,
    trait_judge: Judge,
    *,
    questions: int | None = None,
    shots: Sequence[int] = SHOTS,
    samples: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Projection, generation and trait score per (condition, question, sample); saved as CSV."""
    root = output_dir(out, "persona output directory")
    layer = model.layer(layer)
    prompts = monitor_prompts(spec, questions, shots)
    proj = projections(model, [chat for _, chat in prompts], vectors, layer)
    cells = [
        Cell(chat, (), {"kind": "persona-monitor", "trait": spec.name, **cond, "sample": s})
        for cond, chat in prompts
        for s in range(samples)
    ]
    records = sweep_records(
        model,
        cells,
        inside(root, "monitor.jsonl"),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    items = [
        JudgeItem(cell.prompt[-1]["content"], r["text"])
        for cell, r in zip(cells, records, strict=True)
    ]
    scores = judge_all(
        trait_judge, items, spec.rubric(), inside(root, "judgements.jsonl"), progress=progress
    )
    rows = []
    for i, (cell, record, score) in enumerate(zip(cells, records, scores, strict=True)):
        rows.append(
            {
                "trait_name": spec.name,
                "layer": layer,
                "experiment": cell.config["experiment"],
                "level": cell.config["level"],
                "question": cell.config["question"],
                "sample": cell.config["sample"],
                "projection": proj[i // samples],
                "text": record["text"],
                "trait": score.value,
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_json(
        inside(root, "monitor_scores.jsonl"), orient="records", lines=True, force_ascii=False
    )
    return frame


def correlations(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Pearson r (95% bootstrap CI) of projection vs trait: per experiment, and per condition."""
    rows = []
    scored = frame.dropna(subset=["trait"])
    for experiment, part in scored.groupby("experiment", sort=False):
        groups: list[tuple[str, pd.DataFrame]] = [("overall", part)]
        groups += [(f"level {level}", rows_) for level, rows_ in part.groupby("level")]
        for name, rows_ in groups:
            entry: dict[str, Any] = {"experiment": experiment, "condition": name, "n": len(rows_)}
            if len(rows_) >= 3:
                est = pearson(rows_["projection"], rows_["trait"], seed=seed)
                entry.update(r=est.value, low=est.low, high=est.high)
            else:
                entry.update(r=math.nan, low=math.nan, high=math.nan)
            rows.append(entry)
    return pd.DataFrame(rows)
