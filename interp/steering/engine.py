"""The per-row steering engine: compile each row's interventions into batched ops per hook.

`Steerer.compile` turns one list of interventions per row into, for every (site, layer), a list
of `_Op`s: op j holds the j-th edit at that hook of every row that has one. Each row's edits so
run in the row's own order whatever the other rows hold, and a sweep with one edit per row and
hook is one batched op per hook. One op may mix kinds and positions across rows, because all
four kinds are one formula at the row's selected positions:

    x ← x + (t − g·f(x))·u

add: t = c, g = 0, u = v; ablate: t = 0, g = 1, f = x·v̂, u = v̂; set: as ablate with t the target
projection; clamp: t the target activation, f the latent's (Jump)ReLU, u its decoder row.

`Steerer.apply` runs the ops on an activation. Only the selected positions are read and written
(computed in float32, written back in the activation's dtype); every other position comes back
bit for bit, and no full-size float32 copy is made. The ops' tensors and position masks follow
the device of the activation they meet (cached per device), so models split over devices work.
An edit that could overflow is refused when compiled (`Intervention.check_magnitude` in the
model's dtype); one that still turns a finite activation into inf/NaN (e.g. a latent whose
encoder reads a huge value) raises, naming the intervention and the prompt's index.

Exactness: a batched row equals the row run alone bit for bit at the engine level; through a
model, on CPU float32, logits agree to float rounding of the model's own batched matmuls
(~1e-6), so greedy tokens are identical. On a GPU (bf16, TF32) expect agreement within a
tolerance, not bit identity (no GPU test runs in this suite yet).
Installing the steerer on a model (bridge hook points or plain HF modules) is
`interp.steering.installers`' job.
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
from interp.steering.interventions import Intervention

Member = tuple[Intervention, int]  # an intervention and the layer (as it names it) it edits


@dataclass
class _Op:
    """The j-th edit at one hook of every row that has one (row False: the row has none)."""

    site: Site
    layer: int
    row: Bool[Tensor, " batch"]
    selectors: tuple[tuple[Positions, Bool[Tensor, " batch"]], ...]  # each selector, its rows
    reads: Bool[Tensor, " batch"]  # g = 1: the edit reads x (ablate, set, clamp)
    gated: Bool[Tensor, " batch"]  # f is a latent's (Jump)ReLU, not a projection (clamp)
    coef: Float[Tensor, " batch"]  # t
    vec: Float[Tensor, "batch d_model"]  # u
    enc: Float[Tensor, "batch d_model"] | None  # f's encoder; None when no row reads x
    bias: Float[Tensor, " batch"]
    threshold: Float[Tensor, " batch"]
    sources: tuple[Intervention | None, ...]  # per row, for error messages
    _on: dict[torch.device, _Op] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, site: Site, layer: int, members: Sequence[Member | None], d_model: int) -> _Op:
        """Stack one edit per row (None: the row has no edit here) into batched tensors."""
        n = len(members)
        row, reads, gated = (torch.zeros(n, dtype=torch.bool) for _ in range(3))
        coef, bias, threshold = torch.zeros(n), torch.zeros(n), torch.zeros(n)
        vec, enc = torch.zeros(n, d_model), torch.zeros(n, d_model)
        groups: dict[str, tuple[Positions, list[int]]] = {}
        for r, member in enumerate(members):
            if member is None:
                continue
            iv, named_layer = member
            row[r], coef[r], vec[r] = True, iv.coef, iv.vector(named_layer).float()
            if iv.kind in ("ablate", "set"):
                reads[r], enc[r] = True, vec[r]
            elif iv.kind == "clamp":
                assert iv.latent is not None
                reads[r], gated[r], enc[r] = True, True, iv.latent.encoder.float()
                bias[r], threshold[r] = iv.latent.bias, iv.latent.threshold
            groups.setdefault(str(iv.positions), (iv.positions, []))[1].append(r)
        selectors = []
        for positions, rows in groups.values():
            mask = torch.zeros(n, dtype=torch.bool)
            mask[rows] = True
            selectors.append((positions, mask))
        sources = tuple(None if m is None else m[0] for m in members)
        return cls(
            site,
            layer,
            row,
            tuple(selectors),
            reads,
            gated,
            coef,
            vec,
            enc if bool(reads.any()) else None,
            bias,
            threshold,
            sources,
        )

    def select(self, keep: Tensor) -> _Op:
        """The op for the rows `keep` (in that order)."""
        keep = keep.to(self.row.device)
        return _Op(
            self.site,
            self.layer,
            self.row[keep],
            tuple((p, rows[keep]) for p, rows in self.selectors),
            self.reads[keep],
            self.gated[keep],
            self.coef[keep],
            self.vec[keep],
            None if self.enc is None else self.enc[keep],
            self.bias[keep],
            self.threshold[keep],
            tuple(self.sources[i] for i in keep.tolist()),
        )

    def to(self, device: torch.device) -> _Op:
        """This op with its tensors on `device` (made once per device, then reused)."""
        if self.row.device == device:
            return self
        if device not in self._on:
            self._on[device] = _Op(
                self.site,
                self.layer,
                self.row.to(device),
                tuple((p, rows.to(device)) for p, rows in self.selectors),
                self.reads.to(device),
                self.gated.to(device),
                self.coef.to(device),
                self.vec.to(device),
                None if self.enc is None else self.enc.to(device),
                self.bias.to(device),
                self.threshold.to(device),
                self.sources,
            )
        return self._on[device]


def apply_op(
    op: _Op,
    x: Float[Tensor, "batch pos d_model"],
    where: Bool[Tensor, "batch pos"],
    example_ids: Sequence[int] | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """Apply one batched op to `x` at the positions `where` (already restricted to its rows).

    `example_ids` (the dataset index of each row) lets an overflow name the prompt."""
    rows, pos = where.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return x
    op = op.to(x.device)
    picked = x[rows, pos].float()  # only the selected positions, in float32
    target = op.coef[rows]
    if op.enc is not None:
        pre = einops.einsum(picked, op.enc[rows], "k d, k d -> k") + op.bias[rows]
        act = torch.where(op.gated[rows], torch.relu(pre) * (pre > op.threshold[rows]), pre)
        target = torch.where(op.reads[rows], target - act, target)
    edited = (picked + target[:, None] * op.vec[rows]).to(x.dtype)
    broken = ~torch.isfinite(edited).all(dim=-1)
    if bool(broken.any()):
        culprit = broken & torch.isfinite(picked).all(dim=-1)
        _refuse_overflow(op, x, rows, culprit, example_ids)
    return x.index_put((rows, pos), edited)


def _refuse_overflow(
    op: _Op,
    x: Tensor,
    rows: Tensor,
    culprit: Bool[Tensor, " selected"],
    example_ids: Sequence[int] | None,
) -> None:
    """Raise for the first row whose edit made a finite activation inf/NaN (if any did)."""
    if not bool(culprit.any()):
        return  # the activation was already non-finite: not this edit's doing
    r = int(rows[culprit.nonzero()[0, 0]])
    iv = op.sources[r]
    assert iv is not None
    label = f" {iv.label!r}" if iv.label else ""
    # the prompt's index in the caller's data, not its place in a length-sorted batch
    who = f"prompt {example_ids[r]}" if example_ids is not None else f"batch row {r}"
    raise FloatingPointError(
        f"the {iv.kind} intervention{label} at {op.site} layer {op.layer} with coefficient "
        f"{iv.coef:g} made the activation of {who} inf/NaN in {x.dtype}; use a smaller "
        "coefficient (or a wider dtype)"
    )


@dataclass
class Steerer:
    """Per-row interventions compiled into batched ops per (site, layer); installable on a model."""

    model: Model
    ops: dict[tuple[Site, int], list[_Op]]
    view: TokenView | None = None
    _masks: dict[tuple[str, torch.device], Tensor] = field(default_factory=dict)
    _paused: bool = False
    _stash: dict[int, Tensor] = field(default_factory=dict)  # resid_pre per layer (resid_mid edits)

    @classmethod
    def compile(
        cls,
        model: Model,
        per_row: Sequence[Sequence[Intervention]],
        allow_other_model: bool = False,
    ) -> Steerer:
        """Check every intervention against `model`, then stack, per hook, each row's j-th edit
        there into op j (negative layers count from the end, as everywhere)."""
        n = len(per_row)
        checked: set[int] = set()
        at_hook: dict[tuple[Site, int], list[list[Member]]] = {}
        for r, interventions in enumerate(per_row):
            for iv in interventions:
                if iv.directions is not None and id(iv.directions) not in checked:
                    iv.directions.check(model, allow_other_model=allow_other_model)
                    checked.add(id(iv.directions))
                if id(iv) not in checked:
                    if iv.latent is not None:
                        iv.latent.check(model)
                    iv.check_magnitude(model.dtype, model.d_model)  # float16 holds less
                    checked.add(id(iv))
                for layer in iv.layers:
                    hook = (iv.site, model.layer(layer))
                    at_hook.setdefault(hook, [[] for _ in range(n)])[r].append((iv, layer))
        compiled = {
            (site, layer): [
                _Op.build(
                    site,
                    layer,
                    [edits[j] if j < len(edits) else None for edits in rows],
                    model.d_model,
                )
                for j in range(max(len(edits) for edits in rows))
            ]
            for (site, layer), rows in at_hook.items()
        }
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
                where = self._where(op.to(view.index.device), view, cache=False)
                hit = view.index[where]
                out.append(int(hit.min()) if hit.numel() else int(view.index.max()) + 1)
        return out

    def _where(self, op: _Op, view: TokenView, cache: bool = True) -> Bool[Tensor, "batch pos"]:
        """The positions `op` edits: each row's own selector, on the device of `op`."""
        device = op.row.device
        where = torch.zeros(view.index.shape, dtype=torch.bool, device=device)
        for positions, rows in op.selectors:
            key = (str(positions), device)
            mask = self._masks.get(key) if cache else None
            if mask is None:
                mask = positions.mask(view).to(device)
                if cache:
                    self._masks[key] = mask
            where |= mask & rows[:, None]
        return where

    def _run(self, site: Site, layer: int, x: Tensor) -> Tensor:
        view = self.view
        assert view is not None, "Steerer.set_view must be called before each forward"
        for op in self.ops.get((site, layer), []):
            local = op.to(x.device)
            x = apply_op(local, x, self._where(local, view), view.example_ids)
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
    """Normalise the `interventions` argument into one list of interventions per row (n rows).

    - None: no edits. One `Intervention`: that edit on every row.
    - A list of lists, one per prompt: row i gets list i (a sweep).
    - A flat list of interventions: all of them on every row, unless it holds exactly one per
      prompt (n > 1). That case reads both ways, so it is refused: write `[[a], [b]]` for one
      per row, or `[[a, b]] * n` for all of them on every row.

    Anything else is an error that says which row is wrong.
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
        if len(items) == n > 1:
            raise ValueError(
                f"{n} interventions for {n} prompts is ambiguous: write [[a], [b], ...] (a list "
                f"per prompt) for one per row, or [[a, b, ...]] * {n} for all of them on every row"
            )
        return [list(items) for _ in range(n)]
    if len(items) != n:
        raise ValueError(
            f"per-row interventions need one list per prompt: {len(items)} lists, {n} prompts"
        )
    rows: list[list[Intervention]] = []
    for i, row in enumerate(items):
        if not isinstance(row, (list, tuple)) or not all(isinstance(x, Intervention) for x in row):
            raise ValueError(
                f"row {i} of the interventions is not a list of Intervention objects: "
                f"{str(row)[:80]}; give a list of lists, one per prompt"
            )
        rows.append(list(row))
    return rows
