"""Affirmative bias: questions whose answer is "no", and the judge-free Yes−No logit score
(Lindsey 2025 §"Injected thoughts", control for affirmative bias; papers.md §2.4; issue 10).

An injection that merely pushes a model towards "yes" would pass for detection. Two controls:

**No-questions under injection** (`no_question_cells`, generation). The 20 shipped questions
whose true answer is "no" (`word_list("no_questions")`: 10 factual, 10 about the model) are
asked as trial 1 of the detection chat (`trials.detection_chat`, the trial question replaced by
the no-question; `framed=False` asks the question alone, one user turn), under the same
injection as detection trials (from the marker through every generated token; unframed: from
the question on) at each layer fraction × strength, against uninjected trials of the same
questions. `read_yes` reads each reply: the earliest explicit answer word ("yes", "yeah", "yep"
/ "no", "not", "n't", "never", "cannot", …) decides; with neither it is `unclear`. It reads
words, not meaning ("I don't think so, yes" reads as no).

**The judge-free logit score** (`logit_cells`, one forward per trial, no generation or
grading). The detection chat and the no-question chats get the instruction to answer with Yes
or No (`ANSWER_RULE`, appended to the trial turn) so that the reply's first token is the
answer; the readout is logit(Yes) − logit(No) at the first reply position, where each side is
the log-sum-exp over the tokenizer's single-token spellings of the answer (`answer_tokens`:
"Yes" and " Yes", "No" and " No", each kept when it is one token, duplicates merged; a
tokenizer with no single-token spelling is refused). Log-sum-exp of logits differs from
log-sum-exp of log-probabilities by the same constant on both sides, so the difference is
log P(yes spellings) − log P(no spellings).

    detection shift   = diff(detection | injected) − diff(detection | uninjected)
    no-question shift = mean over questions of diff(q | injected) − diff(q | uninjected)
    score             = detection shift − no-question shift

per concept, layer and strength. A positive score means the injection raises "yes" to the
detection question more than to questions whose answer is "no"; zero or negative means it
moves every answer towards "yes" alike (the replications' finding on open models), which the
summary shows as it is. Each unit is stored (`run_logit_score`), keyed by the model, the
prompt's tokens, the intervention (vector values, layer, strength, positions) and the answer
tokens, so a rerun computes only the missing ones; with one forward per unit the whole grid
(`all_fractions`: every block) is affordable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from interp.batching import as_example, encode_all
from interp.introspection.concepts import ConceptVectors, InjectionScale
from interp.introspection.metrics import difference
from interp.introspection.thoughts_text import (
    CONFIG,
    experiment_records,
    none_if_missing,
    put,
    sort_key,
)
from interp.introspection.trials import (
    FRACTIONS,
    INJECT_FROM,
    QUESTION,
    STRENGTHS,
    check_strengths,
    detection_chat,
    fraction_layers,
)
from interp.introspection.words import checked_words, word_list
from interp.models import Model
from interp.positions import RESPONSE, Positions, Span
from interp.progress import bar as progress_bar
from interp.runs.store import RunStore, unit_key
from interp.runs.sweeps import Cell, sweep_records
from interp.steering import interventions as iv
from interp.steering.generation import next_token_logprobs

ANSWER_RULE = "Answer with one word: Yes or No."
YES_SPELLINGS = ("Yes", " Yes")
NO_SPELLINGS = ("No", " No")
MAX_NEW_TOKENS = 20
Answer = Literal["yes", "no", "unclear"]

_YES = re.compile(r"\b(?:yes|yeah|yep|yup)\b", re.IGNORECASE)
_NO = re.compile(r"\b(?:no|nope|not|never|cannot|none|neither)\b|n't\b", re.IGNORECASE)


def question_chat(
    question: str, *, framed: bool = True, answer_rule: bool = False
) -> list[dict[str, str]]:
    """`question` as trial 1 of the detection chat (or alone, `framed=False`), with the
    Yes-or-No instruction appended when `answer_rule`."""
    text = f"{question} {ANSWER_RULE}" if answer_rule else question
    if not framed:
        return [{"role": "user", "content": text}]
    chat = detection_chat()
    trial = chat[-1]["content"]
    if QUESTION not in trial:
        raise RuntimeError("the detection chat no longer ends with trials.QUESTION")
    chat[-1] = {"role": "user", "content": trial.replace(QUESTION, text)}
    return chat


def detection_answer_chat() -> list[dict[str, str]]:
    """The detection chat whose reply starts with the answer: the trial asks only the yes/no
    half of the question ("… what is it about?" would contradict a one-word answer), then the
    instruction. Same framing, marker and injection span as the generated trials."""
    chat = detection_chat()
    yes_no_half = QUESTION.split("?")[0] + "?"
    chat[-1] = {
        "role": "user",
        "content": chat[-1]["content"].replace(QUESTION, f"{yes_no_half} {ANSWER_RULE}"),
    }
    return chat


def read_yes(reply: str) -> Answer:
    """`yes`, `no` or `unclear`: the earliest explicit answer word decides."""
    text = reply.replace("\u2019", "'")
    yes, no = _YES.search(text), _NO.search(text)
    if yes and (not no or yes.start() < no.start()):
        return "yes"
    return "no" if no else "unclear"


def _questions(questions: Sequence[str] | None) -> tuple[str, ...]:
    asked = word_list("no_questions") if questions is None else questions
    return checked_words(asked, "questions", unique=True)


def _positions(question: str, framed: bool) -> Positions:
    # unframed, each row is its own question: a Span selects nothing in the batch's other rows
    # (a FromMarker would raise on them), and from the question on, the reply as it is made
    return INJECT_FROM if framed else Span(question, last=True) | RESPONSE


def no_question_cells(
    model: Model,
    concepts: ConceptVectors,
    words: Sequence[str] | None = None,
    questions: Sequence[str] | None = None,
    *,
    fractions: Sequence[float | int] = FRACTIONS,
    strengths: Sequence[float | int] = STRENGTHS,
    scales: Sequence[InjectionScale | str] = ("raw",),
    controls_per_question: int = 5,
    framed: bool = True,
) -> list[Cell]:
    """questions × scales × fractions × strengths × words (injected), plus
    `controls_per_question` uninjected samples of each question."""
    concepts.check(model)
    chosen = checked_words(concepts.words if words is None else words, "words", unique=True)
    for word in chosen:
        concepts.index(word)
    asked = _questions(questions)
    layers = fraction_layers(model, fractions)
    grid = check_strengths(strengths)
    n = controls_per_question
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"controls_per_question must be a whole number >= 0, got {n!r}")
    made = {(w, s): concepts.direction(w, s) for s in scales for w in chosen}
    cells: list[Cell] = []
    for q, question in enumerate(asked):
        chat = question_chat(question, framed=framed)
        base = {"experiment": "no_questions", "question": q, "text": question, "framed": framed}
        for sample in range(n):
            config = {**base, "trial": "control", "concept": None, "sample": sample}
            cells.append(Cell(chat, (), {**config, **dict.fromkeys(CONFIG)}))
        where = _positions(question, framed)
        for (word, scale), (directions, mode) in made.items():
            for fraction, layer in layers.items():
                for strength in grid:
                    edit = iv.add(directions, layer, strength, positions=where, scale=mode)
                    config = {
                        **base,
                        "trial": "injected",
                        "concept": word,
                        "sample": 0,
                        "scale": scale,
                        "fraction": fraction,
                        "layer": layer,
                        "strength": strength,
                        "vector": directions.digest_at([layer], ["resid_norm"]),
                    }
                    cells.append(Cell(chat, (edit,), config))
    return cells


def run_no_questions(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Generate every trial not yet in `store` (batched, resumable); one record per cell."""
    return sweep_records(
        model,
        cells,
        store,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )


def summarize_no_questions(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per (framed, trial, scale, fraction, layer, strength): `yes`, `no` and `unclear` rates
    with `_low`/`_high` (bootstrap 95% CI) and `_k`, `n` replies, and for injected rows
    `yes_shift` = yes rate − the uninjected yes rate of the same framing (the two resampled
    independently). Records of two runs (another seed, question list, decoding …) are
    refused (`experiment_records`)."""
    trial = ("framed", "trial", *CONFIG, "concept", "question", "sample")
    chosen = experiment_records(records, "no_questions", trial)
    keys = ["framed", "trial", *CONFIG]
    groups: dict[tuple[Any, ...], list[Answer]] = {}
    for record in chosen:
        cell = tuple(none_if_missing(record["config"].get(k)) for k in keys)
        groups.setdefault(cell, []).append(read_yes(str(record["text"])))
    controls: dict[Any, list[bool]] = {}
    for cell, answers in groups.items():
        if cell[1] == "control":
            controls.setdefault(cell[0], []).extend(a == "yes" for a in answers)
    rows = []
    for cell in sorted(
        groups, key=lambda c: (*sort_key(c[:1]), c[1] != "control", *sort_key(c[2:]))
    ):
        answers = groups[cell]
        row: dict[str, Any] = dict(zip(keys, cell, strict=True))
        row["n"] = len(answers)
        for name in ("yes", "no", "unclear"):
            put(row, name, [a == name for a in answers])
        if cell[1] == "injected" and controls.get(cell[0]):
            est = difference([a == "yes" for a in answers], controls[cell[0]])
            row["yes_shift"], row["yes_shift_low"], row["yes_shift_high"] = (
                est.value,
                est.low,
                est.high,
            )
        rows.append(row)
    return pd.DataFrame(rows)


# -- the judge-free logit score -------------------------------------------------------------


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids read as "Yes" and as "No" (each side: log-sum-exp over its ids)."""

    yes: tuple[int, ...]
    no: tuple[int, ...]

    def describe(self) -> dict[str, list[int]]:
        return {"yes": list(self.yes), "no": list(self.no)}


def answer_tokens(
    model: Model, yes: Sequence[str] = YES_SPELLINGS, no: Sequence[str] = NO_SPELLINGS
) -> AnswerTokens:
    """The single-token spellings of each answer under `model`'s tokenizer (see top)."""

    def ids(spellings: Sequence[str], what: str) -> tuple[int, ...]:
        found: list[int] = []
        for spelling in spellings:
            tokens = model.tokenizer.encode(spelling, add_special_tokens=False)
            if len(tokens) == 1 and tokens[0] not in found:
                found.append(int(tokens[0]))
        if not found:
            raise ValueError(
                f"{model.name}'s tokenizer has no single token for {what} (tried "
                f"{', '.join(repr(s) for s in spellings)}); pass spellings that are one token"
            )
        return tuple(found)

    made = AnswerTokens(ids(yes, "Yes"), ids(no, "No"))
    if set(made.yes) & set(made.no):
        raise ValueError(f"the Yes and No spellings share tokens {set(made.yes) & set(made.no)}")
    return made


def all_fractions(model: Model) -> tuple[float, ...]:
    """The layer fraction of every block (the full grid): l / (n_layers − 1)."""
    n = model.n_layers
    return tuple(layer / (n - 1) for layer in range(n)) if n > 1 else (0.0,)


def logit_cells(
    model: Model,
    concepts: ConceptVectors,
    words: Sequence[str] | None = None,
    questions: Sequence[str] | None = None,
    *,
    fractions: Sequence[float | int] = FRACTIONS,
    strengths: Sequence[float | int] = STRENGTHS,
    scales: Sequence[InjectionScale | str] = ("raw",),
) -> list[Cell]:
    """The detection prompt and each no-question (answer instruction appended), each once
    uninjected and once per scale × fraction × strength × word, injected from the trial's
    marker on (the detection trials' span)."""
    concepts.check(model)
    chosen = checked_words(concepts.words if words is None else words, "words", unique=True)
    for word in chosen:
        concepts.index(word)
    asked = _questions(questions)
    layers = fraction_layers(model, fractions)
    grid = check_strengths(strengths)
    prompts: list[tuple[dict[str, Any], list[dict[str, str]]]] = [
        ({"prompt_kind": "detection", "question": None, "text": QUESTION}, detection_answer_chat())
    ]
    prompts += [
        (
            {"prompt_kind": "no_question", "question": q, "text": question},
            question_chat(question, answer_rule=True),
        )
        for q, question in enumerate(asked)
    ]
    cells: list[Cell] = []
    for base, chat in prompts:
        config = {"experiment": "yes_no_logit", **base, "trial": "uninjected", "concept": None}
        cells.append(Cell(chat, (), {**config, **dict.fromkeys(CONFIG)}))
    for scale in scales:
        for word in chosen:
            directions, mode = concepts.direction(word, scale)
            for fraction, layer in layers.items():
                for strength in grid:
                    edit = iv.add(directions, layer, strength, positions=INJECT_FROM, scale=mode)
                    where = {
                        "trial": "injected",
                        "concept": word,
                        "scale": scale,
                        "fraction": fraction,
                        "layer": layer,
                        "strength": strength,
                        "vector": directions.digest_at([layer], ["resid_norm"]),
                    }
                    for base, chat in prompts:
                        config = {"experiment": "yes_no_logit", **base, **where}
                        cells.append(Cell(chat, (edit,), config))
    return cells


def run_logit_score(
    model: Model,
    cells: Sequence[Cell],
    store: RunStore | str | Path,
    *,
    batch_size: int = 8,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """One forward per cell not yet in `store` (batched through `next_token_logprobs`, each
    row its own edit); records `yes`, `no` (log-sum-exp of the answer tokens' log-probs),
    `diff` = yes − no and the `top` next token. Returns one record per cell, in order."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not cells:
        raise ValueError("no cells given; make them with logit_cells")
    answer = answer_tokens(model)
    runs = store if isinstance(store, RunStore) else RunStore(store)
    encoded = encode_all(model, [cell.prompt for cell in cells])
    identity = {
        "fingerprint": model.fingerprint(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "readout": {"kind": "yes-no logit difference", **answer.describe()},
    }
    configs = []
    for cell, row in zip(cells, encoded, strict=True):
        example = as_example(cell.prompt)
        prompt = {"prompt": example.prompt, "response": example.response}
        configs.append(
            {
                **identity,
                **cell.config,
                "prompt": {**prompt, "tokens": row.digest()[:20]},
                "interventions": [i.describe() for i in cell.interventions],
            }
        )
    todo = runs.todo(configs)
    yes, no = list(answer.yes), list(answer.no)
    step = batch_size * 8  # rows per store write: several batches, sorted by length inside
    with progress_bar(len(cells), "logit score", "fwd", progress, len(cells) - len(todo)) as bar:
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            logprobs = next_token_logprobs(
                model,
                [cells[i].prompt for i in chunk],
                [list(cells[i].interventions) for i in chunk],
                batch_size=batch_size,
            )
            p_yes = torch.logsumexp(logprobs[:, yes], dim=-1)
            p_no = torch.logsumexp(logprobs[:, no], dim=-1)
            top = logprobs.argmax(dim=-1).tolist()
            for j, i in enumerate(chunk):
                runs.append(
                    configs[i],
                    {
                        "model": model.name,
                        "yes": float(p_yes[j]),
                        "no": float(p_no[j]),
                        "diff": float(p_yes[j] - p_no[j]),
                        "top": str(model.tokenizer.decode([top[j]])),
                    },
                )
            bar.update(len(chunk))
    keys = [unit_key(c) for c in configs]
    wanted = set(keys)
    found = {r["key"]: r for r in runs.records() if r.get("key") in wanted}
    return [found[k] for k in keys]


def summarize_logit_score(
    records: Sequence[Mapping[str, Any]], *, per_concept: bool = False
) -> pd.DataFrame:
    """The logit score per (scale, fraction, layer, strength) cell, or per cell and concept.

    Columns: the cell (and `concept`), `detection_shift`, `no_shift` and `score`, each with
    `_low`/`_high` (bootstrap 95% CI: over concepts per cell; over questions per concept, where
    the detection shift is one number and has none), `n_concepts`, `n_questions`, and the
    uninjected readouts `detection_base` and `no_base` (mean over questions). Records of two
    runs (another question list, vector set …) are refused (`experiment_records`).
    """
    trial = ("trial", "prompt_kind", "question", *CONFIG, "concept")
    chosen = experiment_records(records, "yes_no_logit", trial)
    base: dict[tuple[str, Any], float] = {}
    shifts: dict[tuple[Any, ...], dict[str, dict[Any, float]]] = {}
    for r in chosen:
        c = r["config"]
        prompt = (str(c["prompt_kind"]), none_if_missing(c.get("question")))
        if c["trial"] == "uninjected":
            base[prompt] = float(r["diff"])
    for r in chosen:
        c = r["config"]
        if c["trial"] != "injected":
            continue
        prompt = (str(c["prompt_kind"]), none_if_missing(c.get("question")))
        if prompt not in base:
            raise ValueError(
                f"no uninjected record for the {prompt[0]} prompt {prompt[1]}: the shift needs "
                "it; run the cells of logit_cells with their uninjected rows"
            )
        cell = (*(c[k] for k in CONFIG), c["concept"])
        side = shifts.setdefault(cell, {"detection": {}, "no_question": {}})
        side[prompt[0]][prompt[1]] = float(r["diff"]) - base[prompt]
    no_base = [v for (kind, _), v in base.items() if kind == "no_question"]
    rows: list[dict[str, Any]] = []
    per_cell: dict[tuple[Any, ...], list[tuple[float, float, int]]] = {}
    for cell in sorted(shifts, key=sort_key):
        side = shifts[cell]
        if not side["detection"] or not side["no_question"]:
            missing = "detection" if not side["detection"] else "no-question"
            raise ValueError(
                f"cell {dict(zip([*CONFIG, 'concept'], cell, strict=True))} has no {missing} "
                "record; run every prompt of logit_cells"
            )
        det = next(iter(side["detection"].values()))
        questions = np.asarray(list(side["no_question"].values()))
        per_cell.setdefault(cell[:-1], []).append((det, float(questions.mean()), len(questions)))
        if per_concept:
            row: dict[str, Any] = dict(zip([*CONFIG, "concept"], cell, strict=True))
            put(row, "detection_shift", [det])
            put(row, "no_shift", list(questions))
            put(row, "score", list(det - questions))
            row["n_concepts"], row["n_questions"] = 1, len(questions)
            rows.append(row)
    if not per_concept:
        for cell, triples in per_cell.items():
            row = dict(zip(CONFIG, cell, strict=True))
            det_shift = np.asarray([t[0] for t in triples])
            no_shift = np.asarray([t[1] for t in triples])
            put(row, "detection_shift", list(det_shift))
            put(row, "no_shift", list(no_shift))
            put(row, "score", list(det_shift - no_shift))
            row["n_concepts"] = len(triples)
            row["n_questions"] = max(t[2] for t in triples)
            rows.append(row)
    for row in rows:
        row["detection_base"] = base.get(("detection", None), float("nan"))
        row["no_base"] = float(np.mean(no_base)) if no_base else float("nan")
    return pd.DataFrame(rows)
