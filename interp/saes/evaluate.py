"""SAE quality on held-out text: explained variance, L0, dead latents, density, spliced LM loss.

- explained variance: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over held-out tokens;
- L0: mean number of active latents per token; dead fraction: latents never active;
- density: per-latent firing frequency (kept beside the SAE: the entity study drops latents
  active on more than 2% of generic-corpus tokens, Ferrando et al. 2025);
- spliced loss: next-token cross-entropy with the site replaced by the SAE's reconstruction
  (every position but the first), against the clean model and against mean ablation (the site
  replaced by its mean activation). Loss recovered = (L_mean − L_sae) / (L_mean − L_clean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from interp.batching import encode_all, make_batch
from interp.hooks import hooked
from interp.models import Model


@dataclass(frozen=True)
class SAEMetrics:
    explained_variance: float
    l0: float
    dead_fraction: float
    tokens: int
    loss_clean: float
    loss_spliced: float
    loss_mean_ablated: float
    loss_tokens: int

    @property
    def loss_increase(self) -> float:
        return self.loss_spliced - self.loss_clean

    @property
    def loss_recovered(self) -> float:
        gap = self.loss_mean_ablated - self.loss_clean
        return float("nan") if gap <= 0 else (self.loss_mean_ablated - self.loss_spliced) / gap

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "loss_increase": self.loss_increase,
            "loss_recovered": self.loss_recovered,
        }


@torch.no_grad()
def reconstruction_stats(
    sae: Any, x: Float[Tensor, "n d"], batch_size: int = 4096
) -> tuple[float, float, Float[Tensor, " d_sae"]]:
    """(explained variance, L0, per-latent firing frequency) of `sae` on activations `x`."""
    mean = x.float().mean(0)
    err = total = l0 = 0.0
    fires = torch.zeros(sae.cfg.d_sae)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].float()
        feats = sae.encode(xb)
        active = feats > 0
        err += float((sae.decode(feats) - xb).pow(2).sum())
        total += float((xb - mean).pow(2).sum())
        l0 += float(active.sum())
        fires += active.sum(0).float()
    n = x.shape[0]
    return 1 - err / total, l0 / n, fires / n


@torch.no_grad()
def spliced_losses(
    model: Model,
    sae: Any,
    texts: Sequence[str],
    hook: str,
    mean: Float[Tensor, " d"],
    batch_size: int = 8,
) -> tuple[float, float, float, int]:
    """Mean next-token loss (clean, SAE spliced in, mean-ablated) over `texts`, and the count."""
    rows = encode_all(model, list(texts))
    sums = [0.0, 0.0, 0.0]
    count = 0
    for start in range(0, len(rows), batch_size):
        batch = make_batch(
            rows[start : start + batch_size], model.tokenizer.pad_token_id, "right", model.device
        )
        ids, mask = batch.input_ids, batch.attention_mask
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        for i, mode in enumerate(("clean", "sae", "mean")):

            def splice(x: Tensor, hook: Any, mode: str = mode) -> Tensor:
                out = x.clone()
                if mode == "sae":
                    flat = x[:, 1:].reshape(-1, x.shape[-1]).float()
                    out[:, 1:] = sae.decode(sae.encode(flat)).reshape(x[:, 1:].shape).to(x.dtype)
                else:
                    out[:, 1:] = mean.to(x.dtype)
                return out

            fwd = [] if mode == "clean" else [(hook, splice)]
            with hooked(model, fwd):
                logits = model.bridge(
                    ids, attention_mask=mask, position_ids=batch.position_ids, use_cache=False
                )
            loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            sums[i] += float(loss)
        count += int((targets != -100).sum())
    return sums[0] / count, sums[1] / count, sums[2] / count, count


def evaluate_sae(
    model: Model,
    sae: Any,
    held_out: Float[Tensor, "n d"],
    texts: Sequence[str],
    hook: str,
    train_mean: Float[Tensor, " d"],
) -> tuple[SAEMetrics, Float[Tensor, " d_sae"]]:
    """All metrics of `sae` on held-out activations and texts, and its per-latent density."""
    ev, l0, density = reconstruction_stats(sae, held_out)
    clean, spliced, ablated, n = spliced_losses(model, sae, texts, hook, train_mean)
    metrics = SAEMetrics(
        explained_variance=ev,
        l0=l0,
        dead_fraction=float((density == 0).float().mean()),
        tokens=int(held_out.shape[0]),
        loss_clean=clean,
        loss_spliced=spliced,
        loss_mean_ablated=ablated,
        loss_tokens=n,
    )
    return metrics, density
