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

Each row of a batch carries its own list of interventions, so a sweep over coefficients, layers
and policies is one batched forward. `Steerer` compiles those lists into per-hook batched ops and
installs them either on the bridge's hook points (analysis forwards) or on the plain HF modules
inside `Model.unwrapped()` (generation); both apply the same function, which tests check.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp import ops
from interp.batching import TokenView
from interp.hooks import hooked
from interp.models import Model
from interp.positions import ALL, Positions
from interp.sites import SITE_ORDER, Site, check_site
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
        source = self.directions.meta.to_dict() if self.directions is not None else {}
        return {
            "kind": self.kind,
            "layers": list(self.layers),
            "site": self.site,
            "coef": self.coef,
            "positions": str(self.positions),
            "scale": self.scale,
            "vector": {k: source.get(k) for k in ("model", "method", "data_hash", "created")},
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
                    "interp.interventions.measure_resid_norm(model, texts, vectors)"
                )
            norm = torch.tensor([self.directions.stat("resid_norm", layer)])
        return ops.scale_directions(raw, self.scale, norm)[0]


def _layers(directions: DirectionSet, layers: int | Sequence[int] | None) -> tuple[int, ...]:
    if layers is None:
        return directions.layers
    chosen = (layers,) if isinstance(layers, int) else tuple(sorted(set(layers)))
    for layer in chosen:
        directions[layer]  # KeyError with the covered layers when missing
    return chosen


def add(
    directions: DirectionSet,
    layers: int | Sequence[int] | None = None,
    coef: float = 1.0,
    positions: Positions = ALL,
    scale: ops.ScaleMode = "raw",
    label: str = "",
) -> Intervention:
    """Add `coef` × the (scaled) direction at each of `layers` (default: all the set covers)."""
    return Intervention(
        "add",
        _layers(directions, layers),
        directions.meta.site,
        float(coef),
        positions,
        scale,
        directions,
        label=label,
    )


def ablate(
    directions: DirectionSet,
    layers: int | Sequence[int] | None = None,
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
    value: float,
    layers: int | Sequence[int] | None = None,
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Set the scalar projection onto the unit direction to `value` (trait induction)."""
    return Intervention(
        "set",
        _layers(directions, layers),
        directions.meta.site,
        float(value),
        positions,
        "unit",
        directions,
        label=label,
    )


def clamp(
    latent: Latent,
    layer: int,
    value: float,
    site: Site = "resid_post",
    positions: Positions = ALL,
    label: str = "",
) -> Intervention:
    """Clamp a dictionary latent's activation to `value` at `layer` (the SAE hook)."""
    return Intervention(
        "clamp", (layer,), check_site(site), float(value), positions, "raw", None, latent, label
    )


@dataclass
class _Op:
    """One intervention kind at one hook, batched over rows (rows not taking part: row=False)."""

    kind: Kind
    positions: Positions
    row: Bool[Tensor, " batch"]
    coef: Float[Tensor, " batch"]
    vec: Float[Tensor, "batch d_model"]
    enc: Float[Tensor, "batch d_model"] | None = None
    bias: Float[Tensor, " batch"] | None = None
    threshold: Float[Tensor, " batch"] | None = None

    def select(self, keep: Tensor) -> _Op:
        take = [None if t is None else t[keep] for t in (self.enc, self.bias, self.threshold)]
        return _Op(
            self.kind, self.positions, self.row[keep], self.coef[keep], self.vec[keep], *take
        )


def apply_op(
    op: _Op, x: Float[Tensor, "batch pos d_model"], where: Bool[Tensor, "batch pos"]
) -> Tensor:
    """Apply one batched op to `x` at the positions `where` (already restricted to its rows)."""
    w = where.to(torch.float32)[..., None]
    xf = x.float()
    if op.kind == "add":
        delta = w * (op.coef[:, None] * op.vec)[:, None, :]
    elif op.kind in ("ablate", "set"):
        proj = einops.einsum(xf, op.vec, "b p d, b d -> b p")
        target = op.coef[:, None] if op.kind == "set" else torch.zeros_like(proj)
        delta = w * ((target - proj)[..., None] * op.vec[:, None, :])
    else:
        assert op.enc is not None and op.bias is not None and op.threshold is not None
        pre = einops.einsum(xf, op.enc, "b p d, b d -> b p") + op.bias[:, None]
        act = torch.relu(pre) * (pre > op.threshold[:, None])
        delta = w * ((op.coef[:, None] - act)[..., None] * op.vec[:, None, :])
    return (xf + delta).to(x.dtype)


@dataclass
class Steerer:
    """Per-row interventions compiled into batched ops per (site, layer); installable on a model."""

    model: Model
    ops: dict[tuple[Site, int], list[_Op]]
    view: TokenView | None = None
    _masks: dict[str, Tensor] = field(default_factory=dict)
    _paused: bool = False
    _stash: dict[int, Tensor] = field(default_factory=dict)  # resid_pre per layer (resid_mid edits)

    @classmethod
    def compile(
        cls,
        model: Model,
        per_row: Sequence[Sequence[Intervention]],
        allow_other_model: bool = False,
    ) -> Steerer:
        """Check every intervention against `model`, then group them by hook, kind, positions and
        order of appearance within the row."""
        device, n = model.device, len(per_row)
        checked: set[int] = set()
        slots: dict[tuple[Site, int, Kind, str, int], dict[int, tuple[Intervention, Tensor]]] = {}
        for r, interventions in enumerate(per_row):
            seen: dict[tuple[Site, int, Kind, str], int] = {}
            for iv in interventions:
                if iv.directions is not None and id(iv.directions) not in checked:
                    iv.directions.check(model, allow_other_model=allow_other_model)
                    checked.add(id(iv.directions))
                if iv.latent is not None:
                    iv.latent.check(model)
                for layer in iv.layers:
                    model.layer(layer)
                    base = (iv.site, layer, iv.kind, str(iv.positions))
                    slot = seen.get(base, 0)
                    seen[base] = slot + 1
                    slots.setdefault((*base, slot), {})[r] = (iv, iv.vector(layer))
        compiled: dict[tuple[Site, int], list[_Op]] = {}
        for (site, layer, kind, _, _), members in slots.items():
            any_iv = next(iter(members.values()))[0]
            row = torch.zeros(n, dtype=torch.bool)
            coef = torch.zeros(n)
            vec = torch.zeros(n, model.d_model)
            enc, bias, thr = torch.zeros(n, model.d_model), torch.zeros(n), torch.zeros(n)
            for r, (iv, v) in members.items():
                row[r], coef[r], vec[r] = True, iv.coef, v
                if iv.latent is not None:
                    enc[r], bias[r], thr[r] = iv.latent.encoder, iv.latent.bias, iv.latent.threshold
            op = _Op(kind, any_iv.positions, row.to(device), coef.to(device), vec.to(device))
            if kind == "clamp":
                op.enc, op.bias, op.threshold = enc.to(device), bias.to(device), thr.to(device)
            compiled.setdefault((site, layer), []).append(op)
        return cls(model, compiled)

    def select(self, keep: Tensor) -> None:
        """Keep only the rows `keep` (generation drops finished rows)."""
        self.ops = {key: [op.select(keep) for op in ops_] for key, ops_ in self.ops.items()}

    def set_view(self, view: TokenView) -> None:
        self.view, self._masks = view, {}

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave activations untouched (for a forward no intervention applies to)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def touched(self, view: TokenView) -> list[int]:
        """For each op, the first position of `view` (logical index) it edits in any row."""
        out = []
        for ops_ in self.ops.values():
            for op in ops_:
                where = op.positions.mask(view) & op.row[:, None]
                hit = view.index[where]
                out.append(int(hit.min()) if hit.numel() else int(view.index.max()) + 1)
        return out

    def _run(self, site: Site, layer: int, x: Tensor) -> Tensor:
        view = self.view
        assert view is not None, "Steerer.set_view must be called before each forward"
        for op in self.ops.get((site, layer), []):
            key = str(op.positions)
            if key not in self._masks:
                self._masks[key] = op.positions.mask(view)
            where = self._masks[key] & op.row[:, None]
            if bool(where.any()):
                x = apply_op(op, x, where)
        return x

    def apply(self, site: Site, layer: int, x: Tensor) -> Tensor:
        """Edit activation `x` of `site` at `layer` (called by the installed hooks).

        resid_mid has no writable hook (HF keeps it in a local variable), so its edits run at
        attn_out: the residual entering the block is stashed at resid_pre, mid = resid_pre +
        attn_out is edited, and attn_out gains the difference, so the block's sum is the edited
        resid_mid (and exactly unchanged where nothing is edited).
        """
        if self._paused:
            return x
        x = self._run(site, layer, x)
        if ("resid_mid", layer) in self.ops:
            if site == "resid_pre":
                self._stash[layer] = x
            elif site == "attn_out":
                mid = self._stash.pop(layer) + x
                x = x + (self._run("resid_mid", layer, mid) - mid)
        return x

    def hook_sites(self) -> list[tuple[Site, int]]:
        """The (site, layer) hooks to install; resid_mid edits need resid_pre and attn_out."""
        out: set[tuple[Site, int]] = set()
        for site, layer in self.ops:
            out.update(
                [("resid_pre", layer), ("attn_out", layer)]
                if site == "resid_mid"
                else [(site, layer)]
            )
        return sorted(out, key=lambda k: (k[1], SITE_ORDER[k[0]]))

    # -- installers ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def on_bridge(self) -> Iterator[None]:
        """Apply through the bridge's hook points (for forwards through `model.bridge`)."""

        def make(site: Site, layer: int) -> Callable[..., Tensor]:
            return lambda x, hook: self.apply(site, layer, x)

        fwd = [
            (self.model.hook_name(site, layer), make(site, layer))
            for site, layer in self.hook_sites()
        ]
        with hooked(self.model, fwd):
            yield

    @contextlib.contextmanager
    def on_hf(self) -> Iterator[None]:
        """Apply through torch hooks on the original HF modules (inside `model.unwrapped()`)."""
        handles = []
        try:
            for site, layer in self.hook_sites():
                handles.append(_register_hf_hook(self.model, site, layer, self.apply))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _original(model: Model, path: str) -> torch.nn.Module:
    component = model.bridge.get_submodule(path)
    original = component._modules.get("_original_component")
    if original is None:
        raise ValueError(
            f"bridge component {path!r} wraps no HF module; cannot steer it on the fast path"
        )
    return original


def _register_hf_hook(
    model: Model, site: Site, layer: int, apply: Callable[[Site, int, Tensor], Tensor]
) -> torch.utils.hooks.RemovableHandle:
    block = f"blocks.{layer}"
    if site == "resid_pre":

        def pre(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (apply(site, layer, args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = apply(site, layer, kwargs["hidden_states"])
            return args, kwargs

        return _original(model, block).register_forward_pre_hook(pre, with_kwargs=True)
    if site == "resid_post":
        path = block
    elif site == "attn_out":
        path = f"{block}.ln1_post" if model.post_norms else f"{block}.attn"
    elif site == "mlp_out":
        path = f"{block}.ln2_post" if model.post_norms else f"{block}.mlp"
    else:
        raise ValueError(f"site {site!r} cannot be steered on the fast path")

    def post(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (apply(site, layer, output[0]), *output[1:])
        return apply(site, layer, output)

    return _original(model, path).register_forward_hook(post)


def per_row(interventions: object, n: int) -> list[list[Intervention]]:
    """Normalise the `interventions` argument: one list shared by all rows, or one list per row.

    Accepts None, an Intervention, a list of them (all rows), or a list of lists (one per row);
    anything else is an error that says which row is wrong.
    """
    if interventions is None:
        return [[] for _ in range(n)]
    if isinstance(interventions, Intervention):
        return [[interventions] for _ in range(n)]
    if not isinstance(interventions, (list, tuple)):
        raise ValueError(
            f"interventions must be an Intervention, a list of them, or one list per prompt; "
            f"got {type(interventions).__name__}"
        )
    items: list[Any] = list(interventions)
    if all(isinstance(i, Intervention) for i in items):
        return [list(items) for _ in range(n)]
    if len(items) != n:
        raise ValueError(
            f"per-row interventions need one list per prompt: {len(items)} lists, {n} prompts"
        )
    rows: list[list[Intervention]] = []
    for i, row in enumerate(items):
        if not isinstance(row, (list, tuple)) or not all(isinstance(x, Intervention) for x in row):
            raise ValueError(f"row {i} of the interventions is not a list of Intervention objects")
        rows.append(list(row))
    return rows


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
