"""Interventions: edits of the residual stream at a site, some layers and chosen positions.

| kind      | at each selected position                                   | made by            |
|-----------|-------------------------------------------------------------|--------------------|
| add       | x ← x + c·v                                                 | `add(...)`         |
| ablate    | x ← x − (x·v̂)v̂                                              | `ablate(...)`      |
| set       | x ← x + (t − x·v̂)v̂   (projection set to t; Allbert et al.)  | `set_projection()` |
| clamp     | x ← x + (t − f(x))·d  (dictionary latent f clamped to t)    | `clamp(...)`       |

`v` is the direction set's vector at that layer, first put in a scale (`ops.scale_directions`):
`raw` (as extracted: persona vectors, CAA), `unit` (α × v̂), or `resid_norm` (α × the mean
residual norm at that layer, from the set's `resid_norm` stat; see `measure_resid_norm`).

Every factory takes (what, where, how much) in that order: `add(directions, layers, coef)`,
`ablate(directions, layers)`, `set_projection(directions, layers, value)`, `clamp(latent,
layer, value)`; the rest (`positions`, `scale`, `site`, `label`) is keyword-only. Layers are TL
block indices: a direction set's are those it covers; `clamp`'s layer may be negative (from the
end), resolved against the model when the edits are compiled, the same for analysis forwards and
for generation. Coefficients and values must be finite.

Each row of a batch carries its own list of interventions, so a sweep over coefficients, layers
and policies is one batched forward. `Steerer` compiles those lists into per-hook batched ops and
installs them either on the bridge's hook points (analysis forwards) or on the plain HF modules
inside `Model.unwrapped()` (generation); both apply the same function, which tests check.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp import ops
from interp.models import Model
from interp.positions import ALL, Positions
from interp.sites import Site, check_site
from interp.vectors import DirectionSet, VectorMismatch

Kind = Literal["add", "ablate", "set", "clamp"]


@dataclass(frozen=True)
class Latent:
    """A dictionary (SAE) latent: f(x) = act(enc·x + bias), written along `decoder`."""

    encoder: Float[Tensor, " d_model"]
    decoder: Float[Tensor, " d_model"]
    bias: float  # folds in b_enc[j] and, when the SAE subtracts it, −b_dec·enc
    threshold: float = 0.0  # JumpReLU threshold (0 for ReLU)

    def digest(self) -> str:
        """Short hash of the latent's parameters (its identity in result keys)."""
        payload = torch.cat([self.encoder, self.decoder, torch.tensor([self.bias, self.threshold])])
        return hashlib.sha1(payload.float().numpy().tobytes()).hexdigest()[:16]

    def check(self, model: Model) -> None:
        """Raise unless the latent lives in `model`'s residual space and is finite."""
        for name, t in (("encoder", self.encoder), ("decoder", self.decoder)):
            if t.shape != (model.d_model,):
                raise VectorMismatch(
                    f"latent {name} has shape {tuple(t.shape)}; "
                    f"{model.name} has d_model {model.d_model}"
                )
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"latent {name} contains NaN or inf values; refusing to use it")

    def activation(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch"]:
        pre = x @ self.encoder.to(x.dtype) + self.bias
        return torch.relu(pre) * (pre > self.threshold)

    @classmethod
    def from_sae(cls, sae: Any, index: int) -> Latent:
        """Latent `index` of a SAELens SAE (standard or JumpReLU; TopK is treated as ReLU)."""
        w_enc = sae.W_enc[:, index].detach().float().cpu()
        bias = float(sae.b_enc[index].detach())
        if getattr(sae.cfg, "apply_b_dec_to_input", False):
            bias -= float(sae.b_dec.detach().float().cpu() @ w_enc)
        threshold = float(sae.threshold[index].detach()) if hasattr(sae, "threshold") else 0.0
        return cls(w_enc, sae.W_dec[index].detach().float().cpu(), bias, threshold)


@dataclass(frozen=True)
class Intervention:
    """One edit: `kind` with `directions` at `layers` of `site`, on the tokens of `positions`."""

    kind: Kind
    layers: tuple[int, ...]
    site: Site
    coef: float  # add: multiplier α; set: target projection; clamp: target activation
    positions: Positions = ALL
    scale: ops.ScaleMode = "raw"
    directions: DirectionSet | None = None
    latent: Latent | None = None  # clamp only
    label: str = ""  # free text carried into results

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of this intervention (used in result keys and metadata)."""
        # the vector by content (values, stats, site, layers), never by name or creation time
        vector = self.directions.digest() if self.directions is not None else None
        return {
            "kind": self.kind,
            "layers": list(self.layers),
            "site": self.site,
            "coef": self.coef,
            "positions": str(self.positions),
            "scale": self.scale,
            "vector": vector,
            **({"latent": self.latent.digest()} if self.latent is not None else {}),
            **({"label": self.label} if self.label else {}),
        }

    def vector(self, layer: int) -> Float[Tensor, " d_model"]:
        """The direction applied at `layer`: scaled per `scale` (unit for ablate/set)."""
        if self.kind == "clamp":
            assert self.latent is not None
            return self.latent.decoder
        assert self.directions is not None
        raw = self.directions[layer][None]
        if self.kind in ("ablate", "set"):
            return ops.unit(raw)[0]
        norm = None
        if self.scale == "resid_norm":
            if "resid_norm" not in self.directions.stats:
                raise ValueError(
                    "scale 'resid_norm' needs the set's mean residual norm per layer; add it with "
                    "interp.steering.interventions.measure_resid_norm(model, texts, vectors)"
                )
            norm = torch.tensor([self.directions.stat("resid_norm", layer)])
        return ops.scale_directions(raw, self.scale, norm)[0]


def _layers(directions: DirectionSet, layers: int | Sequence[int] | None) -> tuple[int, ...]:
    if layers is None:
        return directions.layers
    if isinstance(layers, int) and not isinstance(layers, bool):
        chosen: tuple[int, ...] = (layers,)
    elif isinstance(layers, Sequence) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in layers
    ):
        chosen = tuple(sorted(set(layers)))
    else:
        raise TypeError(
            f"layers must be an int, a list of ints or None (all the set covers), got {layers!r}; "
            "the order is (directions, layers, coef/value)"
        )
    for layer in chosen:
        directions[layer]  # KeyError with the covered layers when missing
    return chosen


def _finite(name: str, value: float) -> float:
    """`value` as a float, refused unless finite (NaN/inf would turn activations into NaN)."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}; give a finite value")
    return float(value)


def add(
    directions: DirectionSet,
    layers: int | Sequence[int] | None = None,
    coef: float = 1.0,
    *,
    positions: Positions = ALL,
    scale: ops.ScaleMode = "raw",
    label: str = "",
) -> Intervention:
    """Add `coef` × the (scaled) direction at each of `layers` (default: all the set covers)."""
    return Intervention(
        "add",
        _layers(directions, layers),
        directions.meta.site,
        _finite("coef", coef),
        positions,
        scale,
        directions,
        label=label,
    )


def ablate(
    directions: DirectionSet,
    layers: int | Sequence[int] | None = None,
    *,
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Project the direction out of the residual (directional ablation)."""
    return Intervention(
        "ablate",
        _layers(directions, layers),
        directions.meta.site,
        0.0,
        positions,
        "unit",
        directions,
        label=label,
    )


def set_projection(
    directions: DirectionSet,
    layers: int | Sequence[int] | None,
    value: float,
    *,
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Set the scalar projection onto the unit direction to `value` at `layers` (None: all)."""
    return Intervention(
        "set",
        _layers(directions, layers),
        directions.meta.site,
        _finite("value", value),
        positions,
        "unit",
        directions,
        label=label,
    )


def clamp(
    latent: Latent,
    layer: int,
    value: float,
    *,
    site: Site = "resid_post",
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Clamp a dictionary latent's activation to `value` at `layer` (the SAE hook)."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int (negative counts from the end), got {layer!r}")
    return Intervention(
        "clamp",
        (layer,),
        check_site(site),
        _finite("value", value),
        positions,
        "raw",
        None,
        latent,
        label,
    )


def measure_resid_norm(
    model: Model, texts: Sequence[Any], directions: DirectionSet, batch_size: int = 16
) -> DirectionSet:
    """Attach the mean residual norm per layer (first token excluded) on reference `texts`."""
    from interp.capture import capture

    acts = capture(
        model,
        texts,
        {"norm": "all&!first:norm"},
        layers=list(directions.layers),
        sites=directions.meta.site,
        batch_size=batch_size,
        progress=False,
    )
    return directions.with_stats(resid_norm=acts["norm"].mean(dim=0))
