"""Steering with entity latents: knowledge refusal, hallucination, "are you sure" logit diff.

Protocol (Ferrando et al. 2025 §5; papers.md §3.3), on the chat model:

- The known and the unknown latent each come from the SAE block where that kind separates best
  (as the paper picks them), so each is steered at its own block.
- Steering adds α × the latent's decoder row (as a unit direction times α × the mean residual
  norm at that block, so α = 2 is the paper's "about twice the residual norm") at the tokens
  from the last entity token to the end of the prompt, and only in the prefill (new tokens are
  never steered). Greedy decoding, 30 new tokens, one attribute question per entity.
- Measured per (condition, α, entity group): the rate of refusing or hedging (a string
  classifier, `is_refusal`), the rate of hallucinated attributes (an answer that neither
  refuses nor gives an accepted answer), and the logit difference " Yes" − " No" after "Are you
  sure you know the {type} {name}? Answer yes or no." with the reply started as "Answer:".
- Baselines: for each chosen latent, 10 random latents of its SAE whose separation is 0 in
  every type (alive on generic text), steered the same way at the same block ("random_known_*",
  "random_unknown_*", pooled as "random_known" and "random_unknown"); and the unknown
  direction projected out of everything written to the residual stream (`orthogonalizers`:
  ablation at resid_pre of block 0 and at resid_mid and resid_post of every block, which equals
  orthogonalising the embedding, every attention output and every MLP output matrix on pre-norm
  blocks; tested against the weight edit itself).

Every generation is a run-store unit keyed by the model, prompt tokens, decoding and the
intervention's content (vector values, positions, scale, α), so a rerun resumes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import Example
from interp.entities.data import Entity, EntitySet
from interp.entities.matching import is_correct
from interp.eval.stats import mean_ci
from interp.models import Model
from interp.positions import PROMPT, FromMarker, Positions
from interp.runs.sweeps import Cell, sweep_records
from interp.saes.load import LoadedSAE
from interp.steering import interventions as iv
from interp.steering.generation import next_token_logprobs
from interp.vectors import DirectionSet

# Refusal and hedging markers, in the spirit of the paper's string lists (our own wording).
REFUSAL_STARTS = ("i'm sorry", "i am sorry", "sorry", "unfortunately", "i apologize", "i cannot")
REFUSAL_PHRASES = (
    "not familiar",
    "couldn't find",
    "could not find",
    "any information",
    "no information",
    "i'm unable",
    "i am unable",
    "i don't know",
    "i do not know",
    "not aware of",
    "i'm not sure",
    "i am not sure",
    "i don't have",
    "i do not have",
    "no record",
    "not able to",
    "i can't",
    "i cannot",
    "doesn't exist",
    "does not exist",
    "not a real",
)
SURE_QUESTION = "Are you sure you know the {noun} {name}? Answer yes or no."
SURE_PREFIX = "Answer:"


def is_refusal(text: str) -> bool:
    """Whether a reply refuses or hedges instead of answering (string matching)."""
    low = " ".join(text.lower().replace("’", "'").split())
    return low.startswith(REFUSAL_STARTS) or any(p in low for p in REFUSAL_PHRASES)


def latent_direction(model: Model, sae: LoadedSAE, index: int, resid_norm: float) -> DirectionSet:
    """The decoder row of latent `index` as a direction at the SAE's block, with its norm stat."""
    row = sae.decoder_row(index)
    return DirectionSet.from_tensor(
        row[None],
        model,
        [sae.layer],
        site=sae.site,
        method="sae_decoder",
        stats={"resid_norm": torch.tensor([resid_norm])},
        sae=sae.source,
        latent=index,
    )


@dataclass(frozen=True)
class Condition:
    """One steered latent: its role, its index, and its decoder row at its SAE's block."""

    name: str  # "known_latent", "unknown_latent", "random_known_3", "random_unknown_0", …
    latent: int
    direction: DirectionSet  # one row at the SAE's block, with the resid_norm stat α scales by

    @property
    def layer(self) -> int:
        (layer,) = self.direction.layers
        return layer


def latent_conditions(
    model: Model, sae: LoadedSAE, latents: Mapping[str, int], resid_norm: float
) -> list[Condition]:
    """A condition per (name, latent index) of `sae`, scaled by that block's `resid_norm`."""
    return [
        Condition(name, index, latent_direction(model, sae, index, resid_norm))
        for name, index in latents.items()
    ]


def pooled(condition: str) -> str:
    """The pool a condition belongs to: "random_known_3" → "random_known"; others unchanged."""
    return re.sub(r"_\d+$", "", condition) if condition.startswith("random") else condition


def latent_edit(condition: Condition, alpha: float, positions: Positions) -> iv.Intervention:
    """α × ‖resid‖ × the unit decoder row at the condition's block, on `positions`.

    Labelled by block and latent, not by role: the edit is what it adds. (A steering cell's
    config also holds the role, so one latent steered under two roles is stored twice; that
    happens only for random latents when both kinds come from one block.)
    """
    return iv.add(
        condition.direction,
        condition.layer,
        alpha,
        positions=positions,
        scale="resid_norm",
        label=f"block{condition.layer}/latent{condition.latent}",
    )


def orthogonalizers(model: Model, direction: Float[Tensor, " d_model"]) -> list[iv.Intervention]:
    """Remove `direction` from everything written to the residual stream, at every position."""
    unit = direction.float() / direction.float().norm()
    n = model.n_layers
    sets = [
        DirectionSet.from_tensor(unit[None], model, [0], site="resid_pre", method="orthogonalize"),
        DirectionSet.from_tensor(
            unit.expand(n, -1), model, list(range(n)), site="resid_mid", method="orthogonalize"
        ),
        DirectionSet.from_tensor(
            unit.expand(n, -1), model, list(range(n)), site="resid_post", method="orthogonalize"
        ),
    ]
    return [iv.ablate(s, label="orthogonalize") for s in sets]


def entity_positions(entity: Entity, prefill_only: bool = True) -> Positions:
    """From the last token of the entity's name (its last mention) to the end of the prompt."""
    # optional: a batch mixes entities, and each row's selector sees the other rows too
    span = FromMarker(entity.name, anchor="end", last=True, optional=True)
    return span & PROMPT if prefill_only else span


def question(entity: Entity, data: EntitySet, index: int = 0) -> tuple[list[dict[str, str]], str]:
    """One attribute question for `entity` (attributes taken in turn by `index`) and its name."""
    attrs = data.types[entity.type].attributes
    attr = attrs[index % len(attrs)]
    return [{"role": "user", "content": attr.ask(entity.name)}], attr.name


def random_latents(
    separations: np.ndarray,
    density: np.ndarray,
    n: int,
    seed: int,
    *,
    types: Sequence[str] | None = None,
    where: str = "the SAE",
) -> list[int]:
    """`n` latents whose separation is 0 in every type and that fire on generic text.

    `separations` is [type, latent] (`scoring.separation`); `types` names its rows and `where`
    the SAE, for the error.
    """
    zero = np.where((np.abs(separations) == 0).all(axis=0) & (density > 0))[0]
    if zero.size < n:
        undefined = [
            str(types[i]) if types is not None else f"row {i}"
            for i in range(separations.shape[0])
            if np.isnan(separations[i]).all()
        ]
        why = (
            f"; the types {', '.join(undefined)} have no known or no unknown training entity, so "
            "no latent has a defined separation there: label more entities of those types"
            if undefined
            else f"; ask for ≤ {zero.size} (--random)"
        )
        raise ValueError(
            f"only {zero.size} latents of {where} have zero separation in every type and fire on "
            f"generic text, {n} asked{why}"
        )
    rng = np.random.default_rng(seed)
    return sorted(int(j) for j in rng.choice(zero, size=n, replace=False))


def steering_cells(
    model: Model,
    data: EntitySet,
    groups: Mapping[str, Sequence[Entity]],
    conditions: Sequence[Condition],
    alphas: Sequence[float],
    orthogonal: Float[Tensor, " d_model"] | None = None,
) -> list[Cell]:
    """Cells: every entity of every group × (unsteered, each condition × α, orthogonalised)."""
    ortho = orthogonalizers(model, orthogonal) if orthogonal is not None else None
    cells = []
    for group, entities in groups.items():
        for i, entity in enumerate(entities):
            messages, attr = question(entity, data, i)
            base = {"group": group, "type": entity.type, "entity": entity.name, "attribute": attr}
            cells.append(Cell(messages, (), {**base, "condition": "none", "alpha": 0.0}))
            if ortho is not None:
                cells.append(
                    Cell(
                        messages,
                        tuple(ortho),
                        {**base, "condition": "orthogonalized", "alpha": 0.0},
                    )
                )
            for cond in conditions:
                for alpha in alphas:
                    edit = latent_edit(cond, alpha, entity_positions(entity))
                    config = {
                        **base,
                        "condition": cond.name,
                        "layer": cond.layer,
                        "latent": cond.latent,
                        "alpha": float(alpha),
                    }
                    cells.append(Cell(messages, (edit,), config))
    return cells


def run_steering(
    model: Model,
    data: EntitySet,
    cells: Sequence[Cell],
    store: str | Path,
    *,
    max_new_tokens: int = 30,
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Generate every cell (greedy, resumable) and classify each reply."""
    records = sweep_records(
        model,
        cells,
        store,
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        batch_size=batch_size,
        progress=progress,
    )
    by_name = {(e.type, e.name): e for e in data.entities}
    rows = []
    for cell, record in zip(cells, records, strict=True):
        cfg = cell.config
        entity = by_name[(cfg["type"], cfg["entity"])]
        text = record["text"]
        refused = is_refusal(text)
        kind = data.types[entity.type].attribute(cfg["attribute"]).kind
        accepted = entity.answers.get(cfg["attribute"], ())
        correct = bool(accepted) and is_correct(text, accepted, kind)
        rows.append(
            {
                **{k: cfg[k] for k in ("group", "type", "entity", "attribute", "condition")},
                "layer": cfg.get("layer"),
                "latent": cfg.get("latent"),
                "alpha": cfg["alpha"],
                "text": text,
                "refusal": refused,
                "correct": correct,
                "hallucination": not refused and not correct,
            }
        )
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Refusal and hallucination rates (95% bootstrap intervals) per group, condition and α.

    The random latents are pooled by block: "random_known" (those at the known latent's block)
    and "random_unknown" (each latent's own rate stays in `frame`). A pool's interval treats its
    answers as independent; `{metric}_latent_min` / `_latent_max` give the range of its latents'
    own rates, the comparison a single chosen latent should be read against.
    """
    pools = frame.assign(pool=frame["condition"].map(pooled))
    rows = []
    for (group, cond, alpha), part in pools.groupby(["group", "pool", "alpha"]):
        row: dict[str, Any] = {"group": group, "condition": cond, "alpha": alpha, "n": len(part)}
        for metric in ("refusal", "hallucination", "correct"):
            values = part[metric].astype(float).to_numpy()
            if len(values) >= 2:
                est = mean_ci(values, n_resamples=1000)
                row.update(
                    {metric: est.value, f"{metric}_low": est.low, f"{metric}_high": est.high}
                )
            else:
                row.update({metric: float(values.mean()) if len(values) else math.nan})
            if str(cond).startswith("random"):
                rates = part.groupby("condition")[metric].mean()  # each latent's own rate
                row.update(
                    {f"{metric}_latent_min": rates.min(), f"{metric}_latent_max": rates.max()}
                )
        rows.append(row)
    return pd.DataFrame(rows)


def yes_no_token_ids(model: Model) -> tuple[int, int]:
    yes = model.tokenizer(" Yes", add_special_tokens=False).input_ids
    no = model.tokenizer(" No", add_special_tokens=False).input_ids
    return int(yes[0]), int(no[0])


def sure_logit_diffs(
    model: Model,
    data: EntitySet,
    groups: Mapping[str, Sequence[Entity]],
    conditions: Sequence[Condition],
    alphas: Sequence[float],
    *,
    batch_size: int = 16,
) -> pd.DataFrame:
    """logit(" Yes") − logit(" No") after "Are you sure you know …?", per condition and α."""
    yes, no = yes_no_token_ids(model)
    prompts: list[Example] = []
    plans: list[list[iv.Intervention]] = []
    meta: list[dict[str, Any]] = []
    for group, entities in groups.items():
        for entity in entities:
            noun = data.types[entity.type].noun
            chat = [{"role": "user", "content": SURE_QUESTION.format(noun=noun, name=entity.name)}]
            example = Example(prompt=chat, response=SURE_PREFIX)
            base = {"group": group, "type": entity.type, "entity": entity.name}
            prompts.append(example)
            plans.append([])
            meta.append({**base, "condition": "none", "layer": None, "latent": None, "alpha": 0.0})
            for cond in conditions:
                for alpha in alphas:
                    prompts.append(example)
                    plans.append([latent_edit(cond, alpha, entity_positions(entity, False))])
                    meta.append(
                        {
                            **base,
                            "condition": cond.name,
                            "layer": cond.layer,
                            "latent": cond.latent,
                            "alpha": float(alpha),
                        }
                    )
    logprobs = next_token_logprobs(model, prompts, plans, batch_size=batch_size)
    diff = (logprobs[:, yes] - logprobs[:, no]).tolist()
    return pd.DataFrame([{**m, "yes_minus_no": d} for m, d in zip(meta, diff, strict=True)])
