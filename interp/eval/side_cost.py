"""What steering costs on text it should not touch: KL and perplexity change on neutral text.

A steering setting can win on its target (a trait score) while wrecking general behaviour; a
coherence score on the steered generations catches only part of that. `side_cost` runs neutral
texts (teacher-forced, no generation) through the model twice, unsteered and under the
interventions, and reports per text and overall:

    kl          = mean over predicted positions of KL(p_unsteered ‖ p_steered), in nats
    ppl_plain   = exp(mean NLL of the text's own next tokens), unsteered
    ppl_steered = the same under the interventions
    ppl_ratio   = ppl_steered / ppl_plain

Positions: every position that predicts a next token of the text (the last real token predicts
nothing and is left out). The interventions' positions apply as written; `ALL` steers every
token, which is how a persona vector is added during a steered conversation's prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interp.batching import encode_all, length_sorted_batches, make_batch
from interp.models import Model
from interp.steering.engine import per_row
from interp.steering.generation import steered_logits


@dataclass(frozen=True)
class SideCost:
    """KL (nats per predicted token) and perplexities, unsteered vs steered."""

    kl: float
    ppl_plain: float
    ppl_steered: float
    n_tokens: int

    @property
    def ppl_ratio(self) -> float:
        return self.ppl_steered / self.ppl_plain

    def __str__(self) -> str:
        return (
            f"KL {self.kl:.4f} nats/token, perplexity {self.ppl_plain:.2f} -> "
            f"{self.ppl_steered:.2f} (x{self.ppl_ratio:.3f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kl": self.kl,
            "ppl_plain": self.ppl_plain,
            "ppl_steered": self.ppl_steered,
            "ppl_ratio": self.ppl_ratio,
            "n_tokens": self.n_tokens,
        }


def side_cost(
    model: Model,
    texts: Sequence[Any],
    interventions: Any,
    *,
    batch_size: int = 8,
    allow_other_model: bool = False,
) -> SideCost:
    """Token-weighted KL and perplexities over `texts` (see the module docstring)."""
    rows = encode_all(model, texts)
    if not rows:
        raise ValueError("side_cost needs at least one neutral text")
    plans = per_row(interventions, len(rows))
    kl_sum = nll_plain = nll_steered = 0.0
    count = 0
    for group in length_sorted_batches([len(r) for r in rows], batch_size):
        batch = make_batch(
            [rows[i] for i in group], model.tokenizer.pad_token_id, "right", model.device, group
        )
        plain = steered_logits(model, batch, [[] for _ in group]).float().log_softmax(-1)
        steered = (
            steered_logits(model, batch, [plans[i] for i in group], allow_other_model)
            .float()
            .log_softmax(-1)
        )
        real = batch.attention_mask.bool()
        predicts = real[:, 1:]  # position t predicts token t + 1 of the same row
        targets = batch.input_ids[:, 1:]
        p, q = plain[:, :-1], steered[:, :-1]
        kl = (p.exp() * (p - q)).sum(-1)  # [batch, pos - 1]
        kl_sum += float(kl[predicts].double().sum())
        nll_plain -= float(p.gather(-1, targets[..., None])[..., 0][predicts].double().sum())
        nll_steered -= float(q.gather(-1, targets[..., None])[..., 0][predicts].double().sum())
        count += int(predicts.sum())
    if count == 0:
        raise ValueError("the neutral texts have no token to predict; give longer texts")
    return SideCost(
        kl_sum / count, math.exp(nll_plain / count), math.exp(nll_steered / count), count
    )
