"""Contrastive rollouts: each question answered under each positive and negative instruction.

Following Persona Vectors (Chen et al. 2025, papers.md §1.4): the system prompt is "You are
{a/an} {adjective} assistant. {positive instruction}" (or the antonym and the negative
instruction), the user turn is one question, and the model samples a reply (temperature 1 in
the paper). Questions × instruction pairs × samples, for both polarities, go through one
batched, resumable sweep (`interp.runs.sweeps`): every rollout is a unit of the run store keyed
by the model, the exact prompt, the decoding settings and its indices, so a rerun reads what is
stored and an interrupted run generates only the rest.

Rollout i of the positive side and rollout i of the negative side share (instruction, question,
sample): that is the pairing the paper's filter uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from interp.eval.judges.base import JudgeItem
from interp.models import Model
from interp.persona.spec import TraitSpec
from interp.runs.store import RunStore
from interp.runs.sweeps import Cell, sweep_records

Polarity = Literal["pos", "neg"]
POLARITIES: tuple[Polarity, ...] = ("pos", "neg")
QuestionSet = Literal["extraction", "evaluation"]


@dataclass(frozen=True)
class Rollout:
    """One sampled reply to one question under one system prompt."""

    polarity: Polarity
    instruction: int
    question: int
    sample: int
    system: str
    question_text: str
    response: str
    n_tokens: int
    finish: str

    @property
    def pair(self) -> tuple[int, int, int]:
        """(instruction, question, sample): what a positive and a negative rollout share."""
        return (self.instruction, self.question, self.sample)

    def chat(self) -> list[dict[str, str]]:
        """The prompt the reply was generated from."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.question_text},
        ]

    def item(self) -> JudgeItem:
        """What a judge sees: the question and the reply (never the system prompt)."""
        return JudgeItem(self.question_text, self.response)


def questions_of(spec: TraitSpec, which: QuestionSet) -> tuple[str, ...]:
    if which not in ("extraction", "evaluation"):
        raise ValueError(f"question set must be 'extraction' or 'evaluation', got {which!r}")
    return tuple(spec.extraction_questions if which == "extraction" else spec.evaluation_questions)


def rollout_cells(
    spec: TraitSpec,
    which: QuestionSet = "extraction",
    samples: int = 1,
    questions: int | None = None,
) -> list[Cell]:
    """polarity × instruction × question × sample, positive side first (one cell each).

    questions: use only the first this many questions of the set (all by default).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a whole number >= 1, got {samples!r}")
    chosen = questions_of(spec, which)
    if questions is not None:
        if questions < 1:
            raise ValueError(f"questions must be at least 1, got {questions}")
        chosen = chosen[:questions]
    cells = []
    for polarity in POLARITIES:
        for i in range(len(spec.instructions)):
            system = spec.system_prompt(polarity, i)
            for q, question in enumerate(chosen):
                for s in range(samples):
                    chat = [
                        {"role": "system", "content": system},
                        {"role": "user", "content": question},
                    ]
                    config = {
                        "kind": "persona-rollout",
                        "trait": spec.name,
                        "questions": which,
                        "polarity": polarity,
                        "instruction": i,
                        "question": q,
                        "sample": s,
                    }
                    cells.append(Cell(chat, (), config))
    return cells


def generate_rollouts(
    model: Model,
    spec: TraitSpec,
    store: RunStore | str | Path,
    *,
    which: QuestionSet = "extraction",
    samples: int = 1,
    questions: int | None = None,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[Rollout]:
    """Sample every rollout not yet in `store` (batched) and return all of them, in cell order.

    The paper samples at temperature 1 with up to 1000 new tokens; the default here is 96,
    which is what a small model's replies need on a CPU (each rollout records `finish`).
    """
    cells = rollout_cells(spec, which, samples, questions)
    records = sweep_records(
        model,
        cells,
        store,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    out = []
    for cell, record in zip(cells, records, strict=True):
        config = cell.config
        out.append(
            Rollout(
                polarity=config["polarity"],
                instruction=config["instruction"],
                question=config["question"],
                sample=config["sample"],
                system=cell.prompt[0]["content"],
                question_text=cell.prompt[1]["content"],
                response=record["text"],
                n_tokens=record["n_tokens"],
                finish=record["finish"],
            )
        )
    return out


def split(rollouts: Sequence[Rollout]) -> tuple[list[Rollout], list[Rollout]]:
    """The positive and negative rollouts, each ordered by (instruction, question, sample)."""
    pos = sorted((r for r in rollouts if r.polarity == "pos"), key=lambda r: r.pair)
    neg = sorted((r for r in rollouts if r.polarity == "neg"), key=lambda r: r.pair)
    return pos, neg
