"""Mechanism: attention from the final position to the last entity token, per head.

Ferrando et al. (§6; papers.md §3.4) find attribute-extraction heads that attend more to known
entities, and that steering the last entity token with the unknown latent lowers that attention
(the known latent raises it) while a random direction does not. Here, for each question prompt,
one forward through the bridge reads `blocks.{l}.attn.hook_pattern` at every block and keeps
the attention weight from the prompt's last token to the name's last token, for every head;
the same forward runs with and without a steering edit on the last entity token only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import encode_all, length_sorted_batches, make_batch
from interp.entities.data import Entity, EntitySet
from interp.entities.steering import Condition, latent_edit, question
from interp.hooks import hooked
from interp.models import Model
from interp.positions import FromMarker, Positions, Span
from interp.steering import interventions as iv
from interp.steering.engine import Steerer
from interp.steering.installers import on_bridge


def last_entity_token(entity: Entity) -> Positions:
    """The last token of the entity's name (its last mention in the prompt), nothing else."""
    return Span(entity.name, last=True) & FromMarker(
        entity.name, anchor="end", last=True, optional=True
    )


def _reader(picked: dict[int, Tensor], layer: int, query: Tensor, key: Tensor) -> Any:
    """A pattern hook that keeps, per row and head, the weight from `query` to `key`."""

    def hook(pattern: Tensor, hook: Any) -> None:  # pattern: [batch, head, query, key]
        rows = torch.arange(pattern.shape[0])
        picked[layer] = pattern[rows, :, query, key].float().cpu()  # [batch, head]

    return hook


def entity_attention(
    model: Model,
    prompts: Sequence[Any],
    names: Sequence[str],
    plans: Sequence[Sequence[iv.Intervention]] | None = None,
    *,
    batch_size: int = 16,
) -> Float[Tensor, "prompt layer head"]:
    """Attention weight from each prompt's last token to the last token of its `names[i]`."""
    rows = encode_all(model, list(prompts))
    plans = list(plans) if plans is not None else [[] for _ in rows]
    targets = [row.find(name, "end", last=True) for row, name in zip(rows, names, strict=True)]
    n_layers = model.n_layers
    results: dict[int, Tensor] = {}
    for group in length_sorted_batches([len(r) for r in rows], batch_size):
        batch = make_batch(
            [rows[i] for i in group], model.tokenizer.pad_token_id, "right", model.device, group
        )
        last = batch.attention_mask.sum(-1) - 1
        key = torch.tensor([targets[i] for i in group])
        picked: dict[int, Tensor] = {}
        group_plans = [plans[i] for i in group]
        steerer = Steerer.compile(model, group_plans) if any(group_plans) else None
        fwd = [
            (f"blocks.{layer}.attn.hook_pattern", _reader(picked, layer, last, key))
            for layer in range(n_layers)
        ]
        with torch.no_grad(), hooked(model, fwd):
            if steerer is not None:
                with on_bridge(steerer):
                    steerer.set_view(batch.view(model))
                    model.bridge(
                        batch.input_ids,
                        attention_mask=batch.attention_mask,
                        position_ids=batch.position_ids,
                        use_cache=False,
                    )
            else:
                model.bridge(
                    batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    use_cache=False,
                )
        stacked = torch.stack([picked[layer] for layer in range(n_layers)], dim=1)
        for j, i in enumerate(group):
            results[i] = stacked[j]
    return torch.stack([results[i] for i in range(len(rows))])


def attention_changes(
    model: Model,
    data: EntitySet,
    groups: Mapping[str, Sequence[Entity]],
    conditions: Sequence[Condition],
    alpha: float,
    *,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Per head: mean attention to the entity, unsteered and steered by each condition.

    Each condition's edit adds α × ‖resid‖ × its unit decoder row at its own block, at the last
    entity token only. Returns one row per (group, condition, block, head) with the unsteered
    mean, the steered mean and the change.
    """
    rows = []
    for group, entities in groups.items():
        if not entities:
            continue
        prompts = [question(e, data, i)[0] for i, e in enumerate(entities)]
        names = [e.name for e in entities]
        base = entity_attention(model, prompts, names, batch_size=batch_size)
        for cond in conditions:
            plans = [[latent_edit(cond, alpha, last_entity_token(e))] for e in entities]
            steered = entity_attention(model, prompts, names, plans, batch_size=batch_size)
            change = steered - base  # [prompt, layer, head]
            for li in range(base.shape[1]):
                for h in range(base.shape[2]):
                    rows.append(
                        {
                            "group": group,
                            "condition": cond.name,
                            "steered_block": cond.layer,
                            "layer": li,
                            "head": h,
                            "alpha": alpha,
                            "base": float(base[:, li, h].mean()),
                            "steered": float(steered[:, li, h].mean()),
                            "change": float(change[:, li, h].mean()),
                            "change_sd": float(change[:, li, h].std()),
                            "n": int(base.shape[0]),
                        }
                    )
    return pd.DataFrame(rows)
