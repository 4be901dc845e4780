"""The per-row steering engine: compile each row's interventions into batched ops per hook.

`Steerer.compile` turns one list of interventions per row into, for every (site, layer), a list
of `_Op`s batched over rows; `Steerer.apply` runs them on an activation. Installing the steerer
on a model (bridge hook points or plain HF modules) is `interp.steering.installers`' job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.batching import TokenView
from interp.models import Model
from interp.positions import Positions
from interp.sites import SITE_ORDER, Site
from interp.steering.interventions import Intervention, Kind


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
