"""Batched capture: run examples through the bridge and keep per-example reductions.

`capture(model, data, reduce=…, layers=…, sites=…)` tokenizes (see `interp.batching`), groups
examples of similar length into batches, and registers one hook per (site, layer) on the hook
point the site resolves to (the bridge's per-architecture alias, see `interp.sites`). Each hook
reduces the batch's activations on the spot, so memory is bounded by the batch and never holds
`[batch, pos, d_model]` for more than one layer.
The forward pass is cut right after the last hook needed (also skipping the final norm and
unembedding when the deepest site is the last block).

A reduction is a position selector plus an aggregation:

- `mean`: mean over the selected tokens → `[example, layer, d_model]`
- `sum`: sum over them → `[example, layer, d_model]`
- `norm`: mean L2 norm of the selected tokens → `[example, layer]`
- `tokens`: every selected token → `[token, layer, d_model]`, with example and position indices

With `cache_dir`, results are written as safetensors shards keyed by model fingerprint and dtype,
layers, sites and reductions, one entry per example (by a hash of its tokens, and, for
`Explicit` positions, which select by the example's index, of the positions selected there).
A second analysis of the same data reads them instead of running the model, and an interrupted
capture resumes: finished shards are kept and only the missing examples run. A damaged shard
(e.g. cut short) is removed with a warning that names it, and its examples run again.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import einops
import torch
from safetensors import SafetensorError
from torch import Tensor

from interp.batching import Encoded, PaddingSide, encode_all, length_sorted_batches, make_batch
from interp.hooks import hooked
from interp.io import load_tensors, read_meta, save_tensors
from interp.models import LayerSpec, Model
from interp.positions import LAST, LAST_PROMPT, PROMPT, RESPONSE, Explicit, Positions
from interp.positions import parse as parse_positions
from interp.progress import bar as progress_bar
from interp.sites import LAYER_CONVENTION, SITE_ORDER, Site, check_site

Aggregate = Literal["mean", "sum", "norm", "tokens"]
AGGREGATES: tuple[Aggregate, ...] = get_args(Aggregate)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Reduction:
    """Which tokens to read (`positions`) and how to aggregate them per example (`how`)."""

    positions: Positions
    how: Aggregate = "mean"

    def __post_init__(self) -> None:
        if self.how not in AGGREGATES:
            raise ValueError(
                f"unknown aggregation {self.how!r}; use one of {', '.join(AGGREGATES)}"
            )

    def __str__(self) -> str:
        return f"{self.positions}:{self.how}"

    @classmethod
    def parse(cls, spec: str | Reduction) -> Reduction:
        """Read "positions[:how]", e.g. "response", "prompt:mean", "all&!first:norm"."""
        if isinstance(spec, Reduction):
            return spec
        head, _, tail = spec.rpartition(":")
        if head and tail in AGGREGATES:
            return cls(parse_positions(head), cast(Aggregate, tail))
        if head and tail.isidentifier():
            raise ValueError(
                f"unknown aggregation {tail!r} in {spec!r}; use one of {', '.join(AGGREGATES)}"
            )
        return cls(parse_positions(spec))


# The persona-vectors trio (Chen et al. 2025): response_avg, prompt_avg, prompt_last.
RESPONSE_MEAN = Reduction(RESPONSE)
PROMPT_MEAN = Reduction(PROMPT)
PROMPT_LAST = Reduction(LAST_PROMPT)
LAST_TOKEN = Reduction(LAST)

ReduceSpec = str | Reduction | Mapping[str, str | Reduction]


def _reductions(reduce: ReduceSpec) -> dict[str, Reduction]:
    if isinstance(reduce, (str, Reduction)):
        reduction = Reduction.parse(reduce)
        return {str(reduce) if isinstance(reduce, str) else str(reduction): reduction}
    if not reduce:
        raise ValueError("no reductions given; e.g. reduce={'mean': 'response:mean'}")
    return {name: Reduction.parse(spec) for name, spec in reduce.items()}


def _sites(sites: Site | str | Sequence[str]) -> list[Site]:
    names = [sites] if isinstance(sites, str) else list(sites)
    if not names:
        raise ValueError("no sites given; e.g. sites='resid_post'")
    return [check_site(s) for s in dict.fromkeys(names)]


@dataclass
class Activations:
    """The result of a capture: per-example reductions for every (reduction, site) at `layers`."""

    layers: list[int]
    sites: list[Site]
    reductions: dict[str, str]  # name -> spec
    data: dict[tuple[str, str], Tensor]  # (name, site) -> [example|token, layer, (d_model)]
    token_index: dict[str, tuple[Tensor, Tensor]] = field(
        default_factory=dict
    )  # name -> (example, position)
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, site: str | None = None) -> Tensor:
        """Tensor of reduction `name` at `site` (optional when only one site was captured)."""
        if name not in self.reductions:
            raise KeyError(f"no reduction {name!r}; this capture has {sorted(self.reductions)}")
        if site is None:
            if len(self.sites) > 1:
                raise KeyError(f"captured sites {self.sites}: pass site=")
            site = self.sites[0]
        if (name, site) not in self.data:
            raise KeyError(f"site {site!r} was not captured; sites: {self.sites}")
        return self.data[(name, site)]

    def __getitem__(self, name: str) -> Tensor:
        return self.get(name)

    def at(self, name: str, layer: int, site: str | None = None) -> Tensor:
        """Slice of `get(name, site)` at block `layer`."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not captured; layers: {self.layers}")
        return self.get(name, site)[:, self.layers.index(layer)]

    @property
    def n_examples(self) -> int:
        return int(self.meta.get("n_examples", 0))

    def save(self, path: str | Path) -> Path:
        """Write to one safetensors file (metadata in the header)."""
        tensors = {f"{site}/{name}": t for (name, site), t in self.data.items()}
        for name, (example, position) in self.token_index.items():
            tensors[f"index/{name}/example"] = example
            tensors[f"index/{name}/position"] = position
        meta = {
            **self.meta,
            "layers": self.layers,
            "sites": self.sites,
            "reductions": self.reductions,
        }
        return save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> Activations:
        tensors, meta = load_tensors(path)
        if "reductions" not in meta or "layers" not in meta:
            raise ValueError(f"{path} is not a capture file (no reductions/layers in its metadata)")
        data = {
            (name, site): tensors[f"{site}/{name}"]
            for name in meta["reductions"]
            for site in meta["sites"]
        }
        index = {
            name: (tensors[f"index/{name}/example"], tensors[f"index/{name}/position"])
            for name in meta["reductions"]
            if f"index/{name}/example" in tensors
        }
        return cls(meta["layers"], meta["sites"], meta["reductions"], data, index, meta)


class _StopForward(Exception):
    """Raised by the last hook a capture needs, to end the forward pass early."""


@dataclass
class _Plan:
    """What one capture reads: hooks in firing order, and reductions grouped by aggregation."""

    model: Model
    layers: list[int]
    sites: list[Site]
    reductions: dict[str, Reduction]

    def hooks(self) -> list[tuple[Site, int, str]]:
        order = sorted(
            ((site, li) for site in self.sites for li in range(len(self.layers))),
            key=lambda item: (self.layers[item[1]], SITE_ORDER[item[0]]),
        )
        return [(site, li, self.model.hook_name(site, self.layers[li])) for site, li in order]

    def names(self, *hows: Aggregate) -> list[str]:
        return [name for name, r in self.reductions.items() if r.how in hows]

    def shape(self, name: str) -> tuple[int, ...]:
        if self.reductions[name].how == "norm":
            return (len(self.layers),)
        return (len(self.layers), self.model.d_model)

    def key(self, out_dtype: torch.dtype) -> str:
        spec = {
            "format": CACHE_FORMAT,
            "model": self.model.fingerprint(),  # weights and architecture
            "model_dtype": str(self.model.dtype),  # the dtype they ran in
            "layers": self.layers,
            "sites": self.sites,
            # the hook points the sites resolve to: a cache never outlives a change of meaning
            "hooks": [name for _, _, name in self.hooks()],
            "reductions": {k: str(v) for k, v in self.reductions.items()},
            "dtype": str(out_dtype),
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class _BatchResult:
    dense: dict[tuple[str, str], Tensor]  # [batch, ...]
    tokens: dict[tuple[str, str], list[Tensor]]  # per row: [t, layer, d]
    positions: dict[str, list[Tensor]]  # per row: [t]


class _PerDevice:
    """Tensors moved to the device of the activation they meet, copied once per device.

    A model split over devices (`device_map`) hands each hook its own block's device; the
    reduction weights and masks meet the activation there, and the reduced values are copied
    back into the result buffers on the model's device.
    """

    def __init__(self) -> None:
        self._copies: dict[tuple[str, torch.device], Tensor] = {}

    def __call__(self, key: str, t: Tensor, device: torch.device) -> Tensor:
        if t.device == device:
            return t
        if (key, device) not in self._copies:
            self._copies[(key, device)] = t.to(device)
        return self._copies[(key, device)]


def _run_batch(
    plan: _Plan,
    rows: list[Encoded],
    ids: list[int],
    padding_side: PaddingSide,
    out_dtype: torch.dtype,
) -> _BatchResult:
    model = plan.model
    batch = make_batch(rows, model.tokenizer.pad_token_id, padding_side, model.device, ids)
    view = batch.view(model)
    masks = {name: r.positions.mask(view) for name, r in plan.reductions.items()}
    counts = {name: m.sum(dim=-1) for name, m in masks.items()}
    for name in plan.names("mean", "norm"):
        empty = (counts[name] == 0).nonzero().flatten().tolist()
        if empty:
            row = empty[0]
            raise ValueError(
                f"reduction {name!r} ({plan.reductions[name]}) selects no tokens in example "
                f"{ids[row]} (text {rows[row].text[:60]!r}…); give it the tokens it needs "
                "(e.g. a response) or choose other positions"
            )

    def weights(names: list[str]) -> Tensor | None:
        if not names:
            return None
        w = [
            masks[n].float() / (counts[n][:, None] if plan.reductions[n].how != "sum" else 1)
            for n in names
        ]
        return torch.stack(w)

    vector_names, norm_names, token_names = (
        plan.names("mean", "sum"),
        plan.names("norm"),
        plan.names("tokens"),
    )
    w_vec, w_norm = weights(vector_names), weights(norm_names)
    n_rows, n_layers = len(rows), len(plan.layers)
    dense = {
        (name, site): torch.empty((n_rows, *plan.shape(name)), device=model.device)
        for name in vector_names + norm_names
        for site in plan.sites
    }
    tokens = {
        (name, site): torch.empty(
            (int(counts[name].sum()), n_layers, model.d_model), device=model.device
        )
        for name in token_names
        for site in plan.sites
    }
    hooks = plan.hooks()

    at = _PerDevice()

    def make_hook(site: Site, li: int, last: bool) -> Any:
        def hook(x: Tensor, hook: Any) -> None:
            xf = x.float()
            if w_vec is not None:
                w = at("w_vec", w_vec, x.device)
                reduced = einops.einsum(w, xf, "r batch pos, batch pos d -> r batch d")
                for k, name in enumerate(vector_names):
                    dense[(name, site)][:, li] = reduced[k]
            if w_norm is not None:
                w = at("w_norm", w_norm, x.device)
                norms = einops.einsum(w, xf.norm(dim=-1), "r batch pos, batch pos -> r batch")
                for k, name in enumerate(norm_names):
                    dense[(name, site)][:, li] = norms[k]
            for name in token_names:
                tokens[(name, site)][:, li] = xf[at(f"mask/{name}", masks[name], x.device)]
            if last:
                raise _StopForward

        return hook

    fwd_hooks = [
        (name, make_hook(site, li, i == len(hooks) - 1)) for i, (site, li, name) in enumerate(hooks)
    ]
    with torch.no_grad(), hooked(model, fwd_hooks):
        try:
            model.bridge(
                batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            )
        except _StopForward:
            pass
        else:
            raise RuntimeError("capture hooks did not fire; the bridge skipped a hook point")
    sizes = {name: [int(c) for c in counts[name].tolist()] for name in token_names}
    return _BatchResult(
        dense={k: v.to("cpu", out_dtype) for k, v in dense.items()},
        tokens={k: list(v.to("cpu", out_dtype).split(sizes[k[0]])) for k, v in tokens.items()},
        positions={
            name: list(view.index[masks[name]].cpu().split(sizes[name])) for name in token_names
        },
    )


class _Outputs:
    """Preallocated per-example outputs that batches and cache shards write into."""

    def __init__(self, plan: _Plan, n: int, dtype: torch.dtype) -> None:
        self.plan, self.n = plan, n
        self.dense: dict[tuple[str, str], Tensor] = {
            (name, site): torch.empty((n, *plan.shape(name)), dtype=dtype)
            for name in plan.names("mean", "sum", "norm")
            for site in plan.sites
        }
        self.tokens: dict[tuple[str, str], list[Tensor | None]] = {
            (name, site): [None] * n for name in plan.names("tokens") for site in plan.sites
        }
        self.positions: dict[str, list[Tensor | None]] = {
            name: [None] * n for name in plan.names("tokens")
        }

    def put(self, ids: Sequence[int], result: _BatchResult) -> None:
        index = torch.tensor(list(ids))
        for key, value in result.dense.items():
            self.dense[key][index] = value
        for key, per_row in result.tokens.items():
            for example, value in zip(ids, per_row, strict=True):
                self.tokens[key][example] = value
        for name, per_row_pos in result.positions.items():
            for example, pos in zip(ids, per_row_pos, strict=True):
                self.positions[name][example] = pos

    def rows(self, ids: Sequence[int]) -> dict[str, Tensor]:
        """The outputs of examples `ids`, flattened for a cache shard."""
        index = torch.tensor(list(ids))
        out = {f"{site}/{name}": t[index] for (name, site), t in self.dense.items()}
        for (name, site), per_row in self.tokens.items():
            out[f"{site}/{name}"] = torch.cat([_present(per_row[i]) for i in ids])
        for name, per_row_pos in self.positions.items():
            out[f"index/{name}/position"] = torch.cat([_present(per_row_pos[i]) for i in ids])
            out[f"index/{name}/count"] = torch.tensor([len(_present(per_row_pos[i])) for i in ids])
        return out

    def fill(self, ids: Sequence[int], rows: Sequence[int], shard: Mapping[str, Tensor]) -> None:
        """Copy rows `rows` of a cache shard into examples `ids`."""
        for (name, site), t in self.dense.items():
            t[torch.tensor(list(ids))] = shard[f"{site}/{name}"][torch.tensor(list(rows))].to(
                t.dtype
            )
        for name in self.positions:
            counts = shard[f"index/{name}/count"].tolist()
            starts = [sum(counts[:r]) for r in range(len(counts))]
            for example, row in zip(ids, rows, strict=True):
                span = slice(starts[row], starts[row] + counts[row])
                self.positions[name][example] = shard[f"index/{name}/position"][span]
                for site in self.plan.sites:
                    self.tokens[(name, site)][example] = shard[f"{site}/{name}"][span]

    def finish(self, meta: dict[str, Any]) -> Activations:
        data: dict[tuple[str, str], Tensor] = dict(self.dense)
        index: dict[str, tuple[Tensor, Tensor]] = {}
        for name, per_row_pos in self.positions.items():
            present = [_present(p) for p in per_row_pos]
            example = torch.cat(
                [torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(present)]
            )
            index[name] = (example, torch.cat(present).long())
            for site in self.plan.sites:
                data[(name, site)] = torch.cat([_present(t) for t in self.tokens[(name, site)]])
        reductions = {k: str(v) for k, v in self.plan.reductions.items()}
        return Activations(self.plan.layers, self.plan.sites, reductions, data, index, meta)


def _present(t: Tensor | None) -> Tensor:
    assert t is not None, "an example was neither computed nor read from the cache"
    return t


class _ShardStore:
    """Capture results on disk: safetensors shards, one row (or token span) per example."""

    def __init__(self, root: str | Path, key: str) -> None:
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def fill(self, outputs: _Outputs, keys: Sequence[str]) -> set[int]:
        """Fill `outputs` with every cached example (by its `row_keys` key); return the indices
        filled."""
        wanted: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            wanted.setdefault(key, []).append(i)
        done: set[int] = set()
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            try:
                digests = read_meta(shard)["digests"]
                hits = [
                    (i, r)
                    for r, d in enumerate(digests)
                    if d in wanted
                    for i in wanted[d]
                    if i not in done
                ]
                if not hits:
                    continue
                tensors, _ = load_tensors(shard)
                # inside the try: a shard with readable digests but missing or misshapen
                # tensors is damaged too (rows it half-filled are computed again below)
                outputs.fill([i for i, _ in hits], [r for _, r in hits], tensors)
            except (ValueError, KeyError, IndexError, RuntimeError, SafetensorError) as err:
                if isinstance(err, torch.OutOfMemoryError):
                    raise  # not a damaged shard: never delete a cache file for this
                # a damaged shard (cut short, overwritten) only costs recomputing its examples
                warnings.warn(
                    f"capture cache shard {shard} is unreadable ({err}); removed it, and its "
                    "examples are computed again",
                    stacklevel=3,
                )
                shard.unlink(missing_ok=True)
                continue
            done.update(i for i, _ in hits)
        return done

    def write(self, outputs: _Outputs, ids: Sequence[int], keys: Sequence[str]) -> None:
        meta = {"digests": [keys[i] for i in ids]}
        save_tensors(self.dir / f"shard-{uuid.uuid4().hex}.safetensors", outputs.rows(ids), meta)


def _per_example(positions: Positions) -> bool:
    """Whether `positions` selects by the example's index in the data (`Explicit`, alone or
    inside a combination), not only by its tokens."""
    if isinstance(positions, Explicit):
        return True
    if dataclasses.is_dataclass(positions):
        return any(
            isinstance(value, Positions) and _per_example(value)
            for value in (getattr(positions, f.name) for f in dataclasses.fields(positions))
        )
    return False


def row_keys(plan: _Plan, rows: Sequence[Encoded]) -> list[str]:
    """The cache key of each example: the digest of its tokens, and for reductions whose
    positions depend on the example's index (`Explicit`), of the positions they select there.

    Two examples with the same tokens but different explicit masks so never share a row.
    """
    indexed = [r.positions for r in plan.reductions.values() if _per_example(r.positions)]
    if not indexed:
        return [row.digest() for row in rows]
    model, keys = plan.model, []
    for i, row in enumerate(rows):
        view = make_batch([row], model.tokenizer.pad_token_id, "right", "cpu", [i]).view(model)
        digest = hashlib.sha1(row.digest().encode())
        for positions in indexed:
            digest.update(positions.mask(view).cpu().numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


def capture(
    model: Model,
    data: Iterable[Any],
    reduce: ReduceSpec = "last",
    *,
    layers: LayerSpec = "all",
    sites: Site | str | Sequence[str] = "resid_post",
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    out_dtype: torch.dtype = torch.float32,
    shard_size: int = 256,
) -> Activations:
    """Run `data` through `model` in batches and return per-example reductions.

    Args:
        data: strings, chats ({"messages": …}), {"prompt", "response"} dicts, or `Example`s.
        reduce: a reduction spec ("response:mean", "last", …), a `Reduction`, or a mapping
            name -> spec for several at once (one forward pass serves them all).
        layers: "all", "10-20", an int or a list of block indices.
        sites: one or more of resid_pre, resid_mid, resid_post, attn_out, mlp_out.
        cache_dir: if set, results are cached there and an interrupted run resumes.
        progress: show a progress bar (default: when writing to a terminal).
    """
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}; e.g. 16")
    plan = _Plan(model, model.layers(layers), _sites(sites), _reductions(reduce))
    plan.hooks()  # validates every hook name before any work
    rows = encode_all(model, data)
    outputs = _Outputs(plan, len(rows), out_dtype)
    store = _ShardStore(cache_dir, plan.key(out_dtype)) if cache_dir is not None else None
    keys = row_keys(plan, rows) if store else []
    done = store.fill(outputs, keys) if store else set()
    todo = [i for i in range(len(rows)) if i not in done]
    with progress_bar(len(rows), "capture", "ex", progress, initial=len(done)) as bar:
        for start in range(0, len(todo), shard_size):
            chunk = todo[start : start + shard_size]
            for group in length_sorted_batches([len(rows[i]) for i in chunk], batch_size):
                ids = [chunk[j] for j in group]
                outputs.put(
                    ids, _run_batch(plan, [rows[i] for i in ids], ids, padding_side, out_dtype)
                )
                bar.update(len(ids))
            if store is not None:
                store.write(outputs, chunk, keys)
    meta = {
        **model.describe(),
        "n_examples": len(rows),
        "layer_convention": LAYER_CONVENTION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from_cache": len(done),
    }
    return outputs.finish(meta)
