"""Direction sets: one vector per layer, with the metadata needed to use it safely later.

A `DirectionSet` holds `vectors: [layer, d_model]` for the blocks in `layers`, the site they live
at, optional per-layer statistics (e.g. the mean residual norm used by norm-relative steering),
and metadata: model name and fingerprint, layer convention, extraction method, a hash of the
source data, creation time. It saves to safetensors (metadata in the header) and to llama.cpp's
control-vector GGUF (interp's metadata travels along, so an import keeps the source model).

`digest()` hashes the set's whole content (values, stats, site, layers), never its name or
creation time. Result keys use `digest_at(layers)`: the rows an intervention applies (and the
`resid_norm` stat there when it scales by it), so two different vectors never share results,
the same vector saved twice does, and neither a sub-set nor an added stat re-keys them.

`check(model)` is called before a set touches a model: a different d_model or layer count is an
error; a different model (by weight fingerprint, not by name: two checkpoints loaded from one
path differ) is an error unless explicitly allowed; NaN/inf never passes. The fingerprint is the
weights and architecture (`Model.fingerprint`): a vector made on a float32 load fits a bfloat16
load of the same checkpoint; files written under the earlier fingerprint still fit the model
they were made on (`Model.earlier_fingerprints`).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp import ops
from interp.io import existing_file, load_tensors, save_tensors
from interp.models import Model
from interp.sites import LAYER_CONVENTION, Site, check_site

FORMAT = "interp.direction_set/1"


class VectorMismatch(ValueError):
    """A direction set does not fit the model it is applied to."""


def data_hash(items: Iterable[Any]) -> str:
    """Short stable hash of JSON-serialisable source data (recorded in metadata)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class VectorMeta:
    """Where a direction set came from; round-trips through `to_dict` / `from_dict`."""

    model: str  # model name as loaded (alias, Hub id or path)
    n_layers: int  # of that model
    d_model: int
    site: Site = "resid_post"
    method: str = "unknown"  # e.g. "mean_diff(response:mean)"
    data_hash: str = ""
    layer_convention: str = LAYER_CONVENTION
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
    )
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""  # `Model.fingerprint()` of that model; "" in files from before it

    def to_dict(self) -> dict[str, Any]:
        """JSON-able metadata (the safetensors header and the GGUF `interp.meta` field)."""
        return {
            "format": FORMAT,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "site": self.site,
            "method": self.method,
            "data_hash": self.data_hash,
            "layer_convention": self.layer_convention,
            "created": self.created,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> VectorMeta:
        """Inverse of `to_dict`; a missing or ill-typed field is a ValueError naming it."""
        missing = {"model", "n_layers", "d_model", "site"} - set(raw)
        if missing:
            raise ValueError(
                f"direction-set metadata lacks {sorted(missing)}; the file is not a direction set"
            )
        for name in ("n_layers", "d_model"):
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"metadata field {name!r} is {value!r}, not a positive integer")
        if not isinstance(raw.get("extra", {}), dict):
            raise ValueError(f"metadata field 'extra' is {raw['extra']!r}, not an object")
        return cls(
            model=str(raw["model"]),
            n_layers=raw["n_layers"],
            d_model=raw["d_model"],
            site=check_site(raw["site"]),
            method=str(raw.get("method", "unknown")),
            data_hash=str(raw.get("data_hash", "")),
            layer_convention=str(raw.get("layer_convention", LAYER_CONVENTION)),
            created=str(raw.get("created", "")),
            extra=dict(raw.get("extra", {})),
            fingerprint=str(raw.get("fingerprint", "")),
        )


def _finite(vectors: Tensor, what: str) -> None:
    bad = ~torch.isfinite(vectors)
    if bool(bad.any()):
        rows = sorted({int(i) for i in bad.nonzero()[:, 0].tolist()})
        raise ValueError(f"{what} contains NaN or inf values (rows {rows}); refusing to use it")


@dataclass(frozen=True)
class DirectionSet:
    """Vectors for some blocks of one model at one site."""

    vectors: Float[Tensor, "layer d_model"]
    layers: tuple[int, ...]
    meta: VectorMeta
    stats: Mapping[str, Float[Tensor, " layer"]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.layers):
            raise ValueError(
                f"vectors must be [len(layers), d_model] = [{len(self.layers)}, d]; "
                f"got {tuple(self.vectors.shape)}"
            )
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"layers must be sorted and distinct, got {list(self.layers)}")
        if self.vectors.shape[1] != self.meta.d_model:
            raise ValueError(
                f"vectors have d_model {self.vectors.shape[1]}, metadata says {self.meta.d_model}"
            )
        _finite(self.vectors, "direction set")
        for name, stat in self.stats.items():
            if stat.shape != (len(self.layers),):
                raise ValueError(
                    f"stat {name!r} has shape {tuple(stat.shape)}, expected ({len(self.layers)},)"
                )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_tensor(
        cls,
        vectors: Float[Tensor, "layer d_model"],
        model: Model,
        layers: Sequence[int] | None = None,
        *,
        site: str = "resid_post",
        method: str = "unknown",
        data: Iterable[Any] = (),
        stats: Mapping[str, Tensor] | None = None,
        **extra: Any,
    ) -> DirectionSet:
        """Wrap `vectors` (row i for `layers[i]`, default all blocks) computed on `model`.

        `vectors` needs exactly one row per layer, and each stat one value per layer; layers
        are block indices as `Model.layer` reads them (negative from the end, floats refused).
        """
        given = (
            [model.layer(layer) for layer in layers]
            if layers is not None
            else list(range(model.n_layers))
        )
        what = f"layers {list(layers)}" if layers is not None else f"all {model.n_layers} blocks"
        if vectors.ndim != 2 or vectors.shape[0] != len(given):
            raise ValueError(
                f"vectors has shape {tuple(vectors.shape)} but {what} need "
                f"[{len(given)}, d_model]: one row per layer, in the order of `layers`; pass "
                "the matching rows (e.g. vectors[layers]) or the layers they belong to"
            )
        for name, stat in (stats or {}).items():
            if tuple(stat.shape) != (len(given),):
                raise ValueError(
                    f"stat {name!r} has shape {tuple(stat.shape)} but {what} need "
                    f"({len(given)},): one value per layer, in the order of `layers`"
                )
        if len(set(given)) != len(given):
            raise ValueError(f"layers {list(layers or [])} repeat a block; give each block one row")
        order = sorted(range(len(given)), key=given.__getitem__)  # rows follow their layers
        chosen = [given[i] for i in order]
        rows = torch.tensor(order, dtype=torch.long)
        meta = VectorMeta(
            model=model.name,
            n_layers=model.n_layers,
            d_model=model.d_model,
            site=check_site(site),
            method=method,
            data_hash=data_hash(data),
            extra=dict(extra),
            fingerprint=model.fingerprint(),
        )

        def rows_of(t: Tensor) -> Tensor:
            return t.detach().to("cpu", torch.float32)[rows]

        stats = {k: rows_of(v) for k, v in (stats or {}).items()}
        return cls(rows_of(vectors), tuple(chosen), meta, stats)

    # -- identity ---------------------------------------------------------------------------------
    def digest(self) -> str:
        """Hash of the whole content (values, stats, site, layers), e.g. for metadata.

        Result keys use `digest_at`: an intervention's identity is the rows it applies."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        head = {
            "site": self.meta.site,
            "layers": list(self.layers),
            "layer_convention": self.meta.layer_convention,
            "shape": list(self.vectors.shape),
            "stats": sorted(self.stats),
        }
        digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
        for tensor in (self.vectors, *(self.stats[k] for k in sorted(self.stats))):
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    def digest_at(self, layers: Sequence[int], stats: Sequence[str] = ()) -> str:
        """Hash of the vectors at `layers` only (and of the named `stats` there), with the site.

        An intervention's identity in result keys (`Intervention.describe`): it depends on
        what the edit reads, not on rows it never uses or on stats it does not need, so a
        sub-set `ds.at(layers)` and a set with a stat added key the same at those layers.
        """
        rows = torch.tensor([self.layers.index(self._has(layer)) for layer in layers])
        head = {
            "site": self.meta.site,
            "layers": list(layers),
            "layer_convention": self.meta.layer_convention,
            "d_model": int(self.vectors.shape[1]),
            "stats": list(stats),
        }
        digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
        for name in stats:
            if name not in self.stats:
                raise KeyError(f"direction set has no stat {name!r}; it has {sorted(self.stats)}")
        for tensor in (self.vectors[rows], *(self.stats[name][rows] for name in stats)):
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    # -- access -----------------------------------------------------------------------------------
    def __getitem__(self, layer: int) -> Float[Tensor, " d_model"]:
        return self.vectors[self.layers.index(self._has(layer))]

    def stat(self, name: str, layer: int) -> float:
        if name not in self.stats:
            raise KeyError(f"direction set has no stat {name!r}; it has {sorted(self.stats)}")
        return float(self.stats[name][self.layers.index(layer)])

    def at(self, layers: Sequence[int]) -> DirectionSet:
        """The sub-set for `layers`."""
        rows = [self.layers.index(self._has(layer)) for layer in sorted(set(layers))]
        index = torch.tensor(rows, dtype=torch.long)
        return replace(
            self,
            vectors=self.vectors[index],
            layers=tuple(sorted(set(layers))),
            stats={k: v[index] for k, v in self.stats.items()},
        )

    def _has(self, layer: int) -> int:
        if layer not in self.layers:
            raise KeyError(
                f"no vector for layer {layer}; this set covers layers {list(self.layers)}"
            )
        return layer

    def norms(self) -> Float[Tensor, " layer"]:
        return self.vectors.norm(dim=-1)

    # -- arithmetic ----------------------------------------------------------------------------
    def _aligned(self, other: DirectionSet) -> None:
        if (
            other.layers != self.layers
            or other.meta.site != self.meta.site
            or other.meta.d_model != self.meta.d_model
        ):
            raise ValueError(
                f"direction sets do not align: layers {list(self.layers)} at {self.meta.site} vs "
                f"{list(other.layers)} at {other.meta.site}; select common layers with .at(...)"
            )

    def _derived(self, vectors: Tensor, how: str) -> DirectionSet:
        meta = replace(self.meta, method=f"{how}({self.meta.method})")
        return replace(self, vectors=vectors, meta=meta, stats=dict(self.stats))

    def __add__(self, other: DirectionSet) -> DirectionSet:
        self._aligned(other)
        return self._derived(self.vectors + other.vectors, f"add[{other.meta.method}]")

    def __sub__(self, other: DirectionSet) -> DirectionSet:
        self._aligned(other)
        return self._derived(self.vectors - other.vectors, f"sub[{other.meta.method}]")

    def __mul__(self, scale: float) -> DirectionSet:
        return self._derived(self.vectors * float(scale), f"scale[{scale:g}]")

    __rmul__ = __mul__

    def __neg__(self) -> DirectionSet:
        return self * -1.0

    def normalize(self) -> DirectionSet:
        """Unit vector at every layer."""
        return self._derived(ops.unit(self.vectors), "unit")

    def orthogonalize(self, other: DirectionSet) -> DirectionSet:
        """Remove from each layer's vector its component along `other`'s vector at that layer."""
        self._aligned(other)
        return self._derived(
            ops.orthogonalize(self.vectors, other.vectors), f"orth[{other.meta.method}]"
        )

    def cosine(self, other: DirectionSet) -> Float[Tensor, " layer"]:
        """Cosine similarity with `other`, layer by layer."""
        self._aligned(other)
        return torch.nn.functional.cosine_similarity(self.vectors, other.vectors, dim=-1)

    def with_stats(self, **stats: Tensor) -> DirectionSet:
        return replace(
            self,
            stats={
                **self.stats,
                **{k: v.detach().to("cpu", torch.float32) for k, v in stats.items()},
            },
        )

    # -- safety ------------------------------------------------------------------------------------
    def check(self, model: Model, allow_other_model: bool = False) -> DirectionSet:
        """Raise unless this set fits `model` (see module docstring); returns self."""
        meta = self.meta
        if meta.d_model != model.d_model:
            raise VectorMismatch(
                f"vector has d_model {meta.d_model} (from {meta.model}) but {model.name} has "
                f"d_model {model.d_model}; it was extracted from a different model"
            )
        if meta.n_layers != model.n_layers:
            raise VectorMismatch(
                f"vector was extracted from a {meta.n_layers}-layer model ({meta.model}); "
                f"{model.name} has {model.n_layers} layers"
            )
        if not allow_other_model:
            hint = (
                "if they share a residual basis (e.g. base and chat variants), pass "
                "allow_other_model=True (CLI: --allow-other-model)"
            )
            if (
                meta.fingerprint
                and meta.fingerprint != model.fingerprint()
                and meta.fingerprint not in model.earlier_fingerprints()  # files from before
            ):
                raise VectorMismatch(
                    f"vector was extracted from {meta.model!r} (weights fingerprint "
                    f"{meta.fingerprint}) but is applied to {model.name!r} (fingerprint "
                    f"{model.fingerprint()}): different weights; {hint}"
                    + (
                        " (a float16 load rounds the weights differently from float32 and "
                        "bfloat16 ones, so the same checkpoint fingerprints apart in float16)"
                        if model.dtype == torch.float16
                        else ""
                    )
                )
            if not meta.fingerprint and meta.model != model.name:
                raise VectorMismatch(
                    f"vector was extracted from {meta.model!r} but is applied to "
                    f"{model.name!r} (the file records no weights fingerprint); {hint}"
                )
        if meta.layer_convention != LAYER_CONVENTION:
            raise VectorMismatch(
                f"vector uses layer convention {meta.layer_convention!r}; convert it to "
                f"{LAYER_CONVENTION!r} first"
            )
        negative = [layer for layer in self.layers if layer < 0]
        if negative:
            raise VectorMismatch(
                f"the set covers block(s) {', '.join(map(str, negative))}: block indices count "
                f"from 0 ({model.name} has blocks 0-{model.n_layers - 1}); renumber them"
            )
        outside = [layer for layer in self.layers if layer >= model.n_layers]
        if outside:
            raise VectorMismatch(
                f"the set covers block(s) {', '.join(map(str, outside))} but {model.name} has "
                f"{model.n_layers} blocks (0-{model.n_layers - 1}); it was made for a deeper "
                "model: use it with that model, or keep only blocks in range"
            )
        _finite(self.vectors, "direction set")
        return self

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write safetensors (`vectors`, `stats/<name>`) with metadata in the header."""
        tensors = {"vectors": self.vectors, **{f"stats/{k}": v for k, v in self.stats.items()}}
        return save_tensors(path, tensors, {**self.meta.to_dict(), "layers": list(self.layers)})

    @classmethod
    def load(cls, path: str | Path) -> DirectionSet:
        """Read a file written by `save` (a .gguf control vector goes through `from_gguf`)."""
        if str(path).endswith(".gguf"):
            raise ValueError(f"{path} is a GGUF file; use DirectionSet.from_gguf(path, model)")
        tensors, raw = load_tensors(path)
        if raw.get("format") != FORMAT or "vectors" not in tensors:
            raise ValueError(
                f"{path} is not an interp direction set (format {raw.get('format')!r})"
            )
        stats = {k.removeprefix("stats/"): v for k, v in tensors.items() if k.startswith("stats/")}
        try:
            layers = raw.get("layers")
            if not isinstance(layers, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in layers
            ):
                raise ValueError(f"metadata field 'layers' is {layers!r}, not a list of blocks")
            return cls(
                tensors["vectors"].float(),
                tuple(layers),
                VectorMeta.from_dict(raw),
                {k: v.float() for k, v in stats.items()},
            )
        except ValueError as err:
            raise ValueError(
                f"{path}: malformed direction set: {err}; the file was edited or damaged: "
                "re-extract or re-save it"
            ) from None

    def to_gguf(self, path: str | Path, model_hint: str = "") -> Path:
        """Export as a llama.cpp control vector (also read by repeng).

        llama.cpp adds `direction.{l}` to the output of block `l` (l >= 1), i.e. our resid_post at
        block l; it has no slot for block 0 and scales the vectors when it loads them. interp's
        metadata (source model, fingerprint) and stats ride along as `interp.*` fields.
        """
        import gguf

        if self.meta.site != "resid_post":
            raise ValueError(
                f"llama.cpp control vectors live at resid_post; this set is at {self.meta.site}"
            )
        if 0 in self.layers:
            raise ValueError(
                "llama.cpp control vectors cannot steer block 0; export the other layers "
                "(Python: .at(layers); CLI: interp vectors convert --layers 1-N)"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = gguf.GGUFWriter(str(path), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint or self.meta.model)
        writer.add_uint32("controlvector.layer_count", len(self.layers))
        writer.add_string("interp.meta", json.dumps(self.meta.to_dict()))
        if self.stats:
            stats = {k: v.tolist() for k, v in self.stats.items()}
            writer.add_string("interp.stats", json.dumps(stats))
        for layer, vector in zip(self.layers, self.vectors, strict=True):
            writer.add_tensor(f"direction.{layer}", vector.numpy().astype("float32"))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    @classmethod
    def from_gguf(
        cls, path: str | Path, model: Model, allow_other_model: bool = False
    ) -> DirectionSet:
        """Import a llama.cpp / repeng control vector for `model` (block indices as in the file).

        A file written by `to_gguf` keeps its recorded source model and fingerprint, and is
        checked against `model` like any set. A foreign file (repeng, llama.cpp tools) records
        only a model hint (repeng writes the model type, e.g. "llama"); it must name `model` or
        its model type, and the set is then recorded as made for `model`.
        """
        import gguf

        try:
            reader = gguf.GGUFReader(str(existing_file(path)))
        except (ValueError, OSError, IndexError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path} is not a readable GGUF file ({err}); give a llama.cpp control vector"
            ) from None
        found: dict[int, Tensor] = {}
        allowed = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
        for tensor in reader.tensors:
            prefix, _, index = tensor.name.partition(".")
            if prefix != "direction" or not index.isdigit():
                continue
            if tensor.tensor_type not in allowed:
                raise ValueError(
                    f"{path}: {tensor.name} is stored as {tensor.tensor_type.name}; control "
                    "vectors must be F32 or F16"
                )
            found[int(index)] = torch.tensor(tensor.data.copy(), dtype=torch.float32).reshape(-1)
        if not found:
            raise ValueError(f"{path} has no direction.N tensors; it is not a control vector")
        layers = sorted(found)
        lengths = {f"direction.{layer}": int(found[layer].numel()) for layer in layers}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"{path}: direction tensors have different lengths {lengths}; every layer's "
                "vector must have the model's d_model entries (the file is damaged)"
            )
        vectors = torch.stack([found[layer] for layer in layers])
        try:
            meta = cls._gguf_meta(reader, path, model, allow_other_model)
            stored = _gguf_string(reader, "interp.stats")
            raw_stats = json.loads(stored) if stored else {}
            stats = {k: torch.tensor(v, dtype=torch.float32) for k, v in raw_stats.items()}
            return cls(vectors, tuple(layers), meta, stats).check(model, allow_other_model)
        except VectorMismatch as err:
            raise VectorMismatch(f"{path}: {err}") from None
        except (ValueError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{path}: malformed control vector: {err}; re-export it from its source"
            ) from None

    @staticmethod
    def _gguf_meta(reader: Any, path: str | Path, model: Model, allow_other: bool) -> VectorMeta:
        """The set's metadata: interp's own when present, else checked against the model hint."""
        stored = _gguf_string(reader, "interp.meta")
        if stored:
            raw = json.loads(stored)
            if not isinstance(raw, dict):
                raise ValueError(f"interp.meta is a JSON {type(raw).__name__}, not an object")
            meta = VectorMeta.from_dict(raw)
            return replace(meta, extra={**meta.extra, "imported_from": str(path)})
        hint = _gguf_string(reader, "controlvector.model_hint")
        model_type = str(getattr(model.hf.config, "model_type", ""))
        if hint and hint not in (model.name, model_type) and not allow_other:
            raise VectorMismatch(
                f"the control vector's model hint is {hint!r} but the model is {model.name!r} "
                f"(type {model_type!r}); if the vector fits this model, pass "
                "allow_other_model=True (CLI: --allow-other-model)"
            )
        return VectorMeta(
            model=model.name,
            n_layers=model.n_layers,
            d_model=model.d_model,
            method="gguf_control_vector",
            extra={"imported_from": str(path), "model_hint": hint},
            fingerprint=model.fingerprint(),
        )


def _gguf_string(reader: Any, name: str) -> str:
    """A string field of a GGUF file, or "" when absent."""
    stored = reader.fields.get(name)
    if stored is None:
        return ""
    try:
        return bytes(stored.parts[stored.data[0]]).decode("utf-8")
    except (IndexError, UnicodeDecodeError) as err:
        raise ValueError(f"field {name} is not a UTF-8 string ({err})") from None
