"""Activation arithmetic: the direction builders and readouts every experiment shares.

All functions take stacks over layers (`"n layer d_model"`) and work on any device and dtype
(reductions accumulate in float32). They are batched over layers: one call gives the answer for
every layer, so an experiment never loops over layers in Python.

Conventions: a *direction set* is `"layer d_model"` (one vector per layer); many direction
sets stack as `"k layer d_model"`. Projections are scalar projections onto the unit direction,
`a·v/‖v‖`, as in persona vectors' monitoring (Chen et al. 2025, §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import einops
import torch
from jaxtyping import Bool, Float, Shaped
from torch import Tensor

ScaleMode = Literal["raw", "unit", "resid_norm"]


def _f32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float32 or x.dtype == torch.float64 else x.float()


def masked_mean(
    x: Float[Tensor, "batch pos d_model"], mask: Bool[Tensor, "batch pos"]
) -> Float[Tensor, "batch d_model"]:
    """Mean of `x` over the positions where `mask` is true; NaN where a row selects nothing."""
    weights = mask.to(torch.float32)
    counts = weights.sum(dim=-1, keepdim=True)
    total = einops.einsum(_f32(x), weights, "batch pos d, batch pos -> batch d")
    return total / counts


def mean_diff(
    pos: Float[Tensor, "n_pos layer d_model"], neg: Float[Tensor, "n_neg layer d_model"]
) -> Float[Tensor, "layer d_model"]:
    """Difference of means, `mean(pos) − mean(neg)`, per layer (unpaired)."""
    _check_nonempty(pos, "pos")
    _check_nonempty(neg, "neg")
    return _f32(pos).mean(dim=0) - _f32(neg).mean(dim=0)


def paired_mean_diff(
    pos: Float[Tensor, "n_pos layer d_model"], neg: Float[Tensor, "n_neg layer d_model"]
) -> Float[Tensor, "layer d_model"]:
    """Mean of per-pair differences, `mean_i(pos_i − neg_i)`; rows must pair up (checked)."""
    if pos.shape != neg.shape:
        raise ValueError(
            f"paired_mean_diff needs aligned pairs: pos has shape {tuple(pos.shape)}, neg has "
            f"{tuple(neg.shape)}; use mean_diff for unpaired sets"
        )
    _check_nonempty(pos, "pos")
    return (_f32(pos) - _f32(neg)).mean(dim=0)


def _check_nonempty(x: Tensor, name: str) -> None:
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no examples; a mean over zero rows is undefined")


def unit(
    directions: Float[Tensor, "*batch d_model"], eps: float = 1e-12
) -> Float[Tensor, "*batch d_model"]:
    """Scale each vector to norm 1 (zero vectors are an error: they have no direction)."""
    norms = directions.norm(dim=-1, keepdim=True)
    if bool((norms <= eps).any()):
        raise ValueError("cannot normalise a zero vector: it has no direction")
    return directions / norms


def project(
    acts: Float[Tensor, "n layer d_model"], directions: Float[Tensor, "k layer d_model"]
) -> Float[Tensor, "n k layer"]:
    """Scalar projection `a·v/‖v‖` of every activation onto every direction, at every layer."""
    return einops.einsum(_f32(acts), unit(_f32(directions)), "n layer d, k layer d -> n k layer")


def cosine(
    acts: Float[Tensor, "n layer d_model"], directions: Float[Tensor, "k layer d_model"]
) -> Float[Tensor, "n k layer"]:
    """Cosine similarity of every activation with every direction, at every layer."""
    return einops.einsum(
        unit(_f32(acts)), unit(_f32(directions)), "n layer d, k layer d -> n k layer"
    )


def project_out(
    x: Float[Tensor, "*batch d_model"], direction: Float[Tensor, " d_model"]
) -> Float[Tensor, "*batch d_model"]:
    """Remove the component of `x` along `direction` (directional ablation)."""
    u = unit(direction.to(x.dtype))
    return x - (x @ u)[..., None] * u


def orthogonalize(
    a: Float[Tensor, "layer d_model"], b: Float[Tensor, "layer d_model"]
) -> Float[Tensor, "layer d_model"]:
    """`a` minus its projection onto `b`, independently at each layer."""
    u = unit(_f32(b))
    coeff = einops.einsum(_f32(a), u, "layer d, layer d -> layer")
    return _f32(a) - coeff[:, None] * u


def scale_directions(
    directions: Float[Tensor, "layer d_model"],
    mode: ScaleMode | str,
    resid_norm: Float[Tensor, " layer"] | None = None,
) -> Float[Tensor, "layer d_model"]:
    """Put directions in a scale: `raw` as extracted, `unit` norm 1, `resid_norm` = unit × ‖resid‖.

    With `resid_norm`, a coefficient α then means "α times the mean residual norm at that layer"
    (measured on a reference set, first token excluded; see `interp.capture`).
    """
    if mode == "raw":
        return directions
    if mode == "unit":
        return unit(directions)
    if mode == "resid_norm":
        if resid_norm is None:
            raise ValueError(
                "scale mode 'resid_norm' needs the mean residual norm per layer; measure it "
                "with interp.capture(..., reduce={'norm': 'all&!first:norm'}) on reference texts"
            )
        if resid_norm.shape != directions.shape[:1]:
            raise ValueError(
                f"resid_norm has shape {tuple(resid_norm.shape)}, expected ({directions.shape[0]},)"
            )
        return unit(directions) * resid_norm[:, None].to(directions.dtype)
    raise ValueError(f"unknown scale mode {mode!r}; use raw, unit or resid_norm")


@dataclass
class PCA:
    """Principal axes per layer, from `pca()`."""

    components: Float[Tensor, "layer k d_model"]  # unit rows, largest variance first
    explained_variance: Float[Tensor, "layer k"]
    explained_ratio: Float[Tensor, "layer k"]
    mean: Float[Tensor, "layer d_model"]

    def transform(
        self, acts: Float[Tensor, "n layer d_model"], standardize: bool = False
    ) -> Float[Tensor, "n layer k"]:
        """Scores on each axis; `standardize` divides by each axis's std (neurofeedback)."""
        centered = _f32(acts) - self.mean
        scores = einops.einsum(centered, self.components, "n layer d, layer k d -> n layer k")
        if standardize:
            scores = scores / self.explained_variance.sqrt()
        return scores


def pca(acts: Float[Tensor, "n layer d_model"], k: int) -> PCA:
    """Top-`k` principal axes of mean-centred activations, independently at every layer.

    Signs are fixed so that each component's largest-magnitude entry is positive.
    """
    n = acts.shape[0]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 examples, got {n}")
    if not 1 <= k <= min(n, acts.shape[-1]):
        raise ValueError(f"k={k} must be between 1 and min(n, d_model) = {min(n, acts.shape[-1])}")
    x = _f32(acts)
    mean = x.mean(dim=0)
    centered = einops.rearrange(x - mean, "n layer d -> layer n d")
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    components = vh[:, :k]  # [layer, k, d]
    peak = components.abs().argmax(dim=-1, keepdim=True)
    signs = torch.sign(components.gather(-1, peak))
    components = components * signs
    variance = s**2 / (n - 1)
    return PCA(
        components=components,
        explained_variance=variance[:, :k],
        explained_ratio=(variance / variance.sum(dim=-1, keepdim=True))[:, :k],
        mean=mean,
    )


@dataclass
class Probe:
    """A logistic-regression probe per layer, in the raw activation basis."""

    direction: Float[Tensor, "layer d_model"]  # weight vector; its sign points to label 1
    bias: Float[Tensor, " layer"]
    train_accuracy: Float[Tensor, " layer"]

    def logits(self, acts: Float[Tensor, "n layer d_model"]) -> Float[Tensor, "n layer"]:
        return (
            einops.einsum(_f32(acts), self.direction, "n layer d, layer d -> n layer") + self.bias
        )


def probe(
    acts: Float[Tensor, "n layer d_model"],
    labels: Shaped[Tensor, " n"],  # 0/1 in any dtype, or booleans (checked)
    c: float = 1.0,
    max_iter: int = 500,
) -> Probe:
    """L2-regularised logistic regression at every layer at once (sklearn's C convention).

    Features are standardised per layer before fitting (as is usual for probes), and the
    weights are mapped back, so `direction` lives in the raw activation basis.
    """
    y = labels.to(torch.float32).to(acts.device)
    if y.ndim != 1 or y.shape[0] != acts.shape[0]:
        raise ValueError(f"labels must have shape ({acts.shape[0]},), got {tuple(labels.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0/1 or booleans")
    if y.min() == y.max():
        raise ValueError("a probe needs both classes; all labels are equal")
    x = _f32(acts)
    mu, sd = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
    z = (x - mu) / sd
    n, n_layers, d = z.shape
    w = torch.zeros(n_layers, d, device=x.device, requires_grad=True)
    b = torch.zeros(n_layers, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    target = y[:, None].expand(n, n_layers)

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = einops.einsum(z, w, "n layer d, layer d -> n layer") + b
        # sklearn: C·Σ log-loss + ½‖w‖², summed over layers (independent problems)
        loss = (
            c
            * torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            + 0.5 * (w**2).sum()
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    w_z, b_z = w.detach(), b.detach()
    direction = w_z / sd
    bias = b_z - einops.einsum(w_z, mu / sd, "layer d, layer d -> layer")
    result = Probe(direction=direction, bias=bias, train_accuracy=torch.zeros(n_layers))
    predicted = result.logits(x) > 0
    result.train_accuracy = (predicted == target.bool()).float().mean(dim=0)
    return result
