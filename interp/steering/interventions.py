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
block indices and may be negative (from the end), as everywhere: a direction set's are resolved
against the depth of the model it was made on (its metadata) and must be layers it covers;
`clamp`'s is resolved against the model when the edits are compiled, the same for analysis
forwards and for generation.

Coefficients and values must be finite numbers (not bools or strings), and small enough that
the edit cannot overflow: |coef| × ‖scaled direction‖ must stay under `magnitude_limit` (the
norm past which squaring the activation in a following normalisation, computed in float32,
overflows). The factories check it in float32, the precision the engine computes edits in;
`Steerer.compile` checks it again in the model's dtype. A result past it is not a steered
model but arithmetic debris (uniform logits, empty texts), so it is refused up front.

Each row of a batch carries its own list of interventions, so a sweep over coefficients, layers
and policies is one batched forward. `Steerer` compiles those lists into per-hook batched ops and
installs them either on the bridge's hook points (analysis forwards) or on the plain HF modules
inside `Model.unwrapped()` (generation); both apply the same function, which tests check.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, SupportsFloat

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
        for name, value in (("bias", self.bias), ("threshold", self.threshold)):
            if isinstance(value, bool) or not isinstance(value, SupportsFloat):
                raise TypeError(f"latent {name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(
                    f"latent {name} is {value!r}; it must be a finite number (check the SAE's "
                    f"{'b_enc / b_dec' if name == 'bias' else 'threshold'} for NaN or inf)"
                )

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
        # the vector by the content this edit reads (its rows, the resid_norm stat when it scales
        # by it), never by name, creation time, other rows or unused stats
        vector = (
            self.directions.digest_at(
                self.layers, ("resid_norm",) if self.scale == "resid_norm" else ()
            )
            if self.directions is not None
            else None
        )
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

    def magnitude(self) -> tuple[float, float]:
        """(|coef| × ‖vector‖, ‖vector‖): the largest norm this edit writes from its own terms,
        over its layers, and the vector norm behind it (ablate writes at most the activation's
        own projection, so it counts 0 here)."""
        if self.kind == "ablate":
            return 0.0, 0.0
        norm = max(float(self.vector(layer).float().norm()) for layer in self.layers)
        return abs(self.coef) * norm, norm

    def check_magnitude(self, dtype: torch.dtype, d_model: int) -> None:
        """Raise unless |coef| × ‖vector‖ is under `magnitude_limit(dtype, d_model)`."""
        (size, norm), limit = self.magnitude(), magnitude_limit(dtype, d_model)
        if size > limit:
            label = f" {self.label!r}" if self.label else ""
            what = "coef" if self.kind == "add" else "value"
            raise ValueError(
                f"the {self.kind} intervention{label} at {self.site} layers {list(self.layers)} "
                f"writes |{what}| x ||vector|| = {size:.3g}, over the {limit:.3g} that "
                f"{str(dtype).removeprefix('torch.')} activations of width {d_model} can take "
                "(squaring it in the next norm would overflow, leaving uniform logits and empty "
                f"texts); give a smaller {what}: |{what}| <= {limit / norm:.3g} for this vector "
                f"(norm {norm:.3g} with scale {self.scale!r})"
            )


def magnitude_limit(dtype: torch.dtype, d_model: int) -> float:
    """Largest norm an edit may write into `dtype` activations of width `d_model`.

    sqrt(max / d_model) with `max` float32's largest value (normalisations square the
    activation, in float32 at least; and the engine computes edits in float32), and never
    more than the largest value `dtype` itself holds (float16: 65504).
    """
    compute = torch.finfo(torch.float32).max
    return min(math.sqrt(compute / d_model), float(torch.finfo(dtype).max))


def resolve_layers(directions: DirectionSet, layers: int | Sequence[int] | None) -> tuple[int, ...]:
    """The blocks an edit of `directions` applies to: negative ones count from the end of the
    model the set was made on (its metadata), and each must be one the set covers."""
    if layers is None:
        return directions.layers

    def whole(x: object) -> bool:
        return not isinstance(x, bool) and hasattr(type(x), "__index__")

    if whole(layers):
        given: list[int] = [operator.index(layers)]  # type: ignore[arg-type]
    elif isinstance(layers, Sequence) and all(whole(x) for x in layers):
        given = [operator.index(x) for x in layers]
    else:
        raise TypeError(
            f"layers must be an int, a list of ints or None (all the set covers), got {layers!r}; "
            "the order is (directions, layers, coef/value)"
        )
    n = directions.meta.n_layers
    for layer in given:
        if not -n <= layer < n:
            raise ValueError(
                f"layer {layer} is out of range for the {n}-layer model this set was made on "
                f"({directions.meta.model}); it covers layers {list(directions.layers)}"
            )
    chosen = tuple(sorted({layer % n for layer in given}))
    for layer in chosen:
        directions[layer]  # KeyError with the covered layers when missing
    return chosen


def finite_number(name: str, value: object) -> float:
    """`value` as a float, refused unless a finite number (NaN/inf turn activations into NaN);
    -0.0 becomes 0.0 (one value, one result key)."""
    if isinstance(value, bool) or not isinstance(value, SupportsFloat):
        raise TypeError(
            f"{name} must be a number, got {value!r} ({type(value).__name__}); the order is "
            f"(what, layers, {name}), e.g. add(directions, 12, 4.0)"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}; give a finite value")
    return number + 0.0


def _checked(intervention: Intervention) -> Intervention:
    """`intervention`, once its write is small enough for float32 (see `magnitude_limit`)."""
    directions = intervention.directions
    if intervention.scale == "resid_norm" and directions and "resid_norm" not in directions.stats:
        return intervention  # vector() says what is missing when it is compiled
    d_model = (
        intervention.directions.meta.d_model
        if intervention.directions is not None
        else int(intervention.vector(intervention.layers[0]).shape[0])
    )
    intervention.check_magnitude(torch.float32, d_model)
    return intervention


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
    made = Intervention(
        "add",
        resolve_layers(directions, layers),
        directions.meta.site,
        finite_number("coef", coef),
        positions,
        scale,
        directions,
        label=label,
    )
    return _checked(made)


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
        resolve_layers(directions, layers),
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
    made = Intervention(
        "set",
        resolve_layers(directions, layers),
        directions.meta.site,
        finite_number("value", value),
        positions,
        "unit",
        directions,
        label=label,
    )
    return _checked(made)


def clamp(
    latent: Latent,
    layer: int,
    value: float,
    *,
    site: Site = "resid_post",
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Clamp a dictionary latent's activation to `value` at `layer` (the SAE hook).

    `layer` may be negative (from the end): it is resolved against the model the edit is
    compiled for, as the latent records no depth.
    """
    if isinstance(layer, bool) or not hasattr(type(layer), "__index__"):
        raise TypeError(f"layer must be an int (negative counts from the end), got {layer!r}")
    made = Intervention(
        "clamp",
        (operator.index(layer),),
        check_site(site),
        finite_number("value", value),
        positions,
        "raw",
        None,
        latent,
        label,
    )
    return _checked(made)


def resid_norm_texts(model: Model, texts: Sequence[Any]) -> list[Any]:
    """The texts that `measure_resid_norm` measures: those of two tokens or more (the first
    token is left out, so a one-token text has nothing to measure); raises if there are none."""
    from interp.batching import encode_all

    encoded = encode_all(model, texts)
    usable = [text for text, row in zip(texts, encoded, strict=True) if len(row) >= 2]
    if not usable:
        raise ValueError(
            "scale 'resid_norm' (CLI: --scale resid_norm) is the mean residual norm over the "
            f"tokens after the first of each reference text, and all {len(encoded)} texts given "
            f"have one token (e.g. {texts[0]!r}); give longer texts (a sentence), or use scale "
            "'raw' or 'unit' (--scale raw|unit)"
        )
    return usable


def measure_resid_norm(
    model: Model, texts: Sequence[Any], directions: DirectionSet, batch_size: int = 16
) -> DirectionSet:
    """Attach the mean residual norm per layer (first token excluded) on reference `texts`.

    A text of one token has no token after the first and adds nothing (`resid_norm_texts`); if
    every text is one token long, there is nothing to measure and the error says so.
    """
    from interp.capture import capture

    usable = resid_norm_texts(model, texts)
    acts = capture(
        model,
        usable,
        {"norm": "all&!first:norm"},
        layers=list(directions.layers),
        sites=directions.meta.site,
        batch_size=batch_size,
        progress=False,
    )
    return directions.with_stats(resid_norm=acts["norm"].mean(dim=0))
