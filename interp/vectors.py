"""Direction sets: one vector per layer, with the metadata needed to use it safely later.

A `DirectionSet` holds `vectors: [layer, d_model]` for the blocks in `layers`, the site they live
at, optional per-layer statistics (e.g. the mean residual norm used by norm-relative steering),
and metadata: model, layer convention, extraction method, a hash of the source data, creation
time. It saves to safetensors (metadata in the header) and to llama.cpp's control-vector GGUF.

`check(model)` is called before a set touches a model: a different d_model or layer count is an
error, a different model is an error unless explicitly allowed, and NaN/inf never passes.
"""

from __future__ import annotations

import datetime
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
from interp.io import load_tensors, save_tensors
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
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
        missing = {"model", "n_layers", "d_model", "site"} - set(raw)
        if missing:
            raise ValueError(
                f"direction-set metadata lacks {sorted(missing)}; the file is not a direction set"
            )
        return cls(
            model=str(raw["model"]),
            n_layers=int(raw["n_layers"]),
            d_model=int(raw["d_model"]),
            site=check_site(raw["site"]),
            method=str(raw.get("method", "unknown")),
            data_hash=str(raw.get("data_hash", "")),
            layer_convention=str(raw.get("layer_convention", LAYER_CONVENTION)),
            created=str(raw.get("created", "")),
            extra=dict(raw.get("extra", {})),
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
        """Wrap `vectors` (row i for `layers[i]`, default all blocks) computed on `model`."""
        given = (
            [model.layer(int(layer)) for layer in layers]
            if layers is not None
            else list(range(model.n_layers))
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
        )

        def rows_of(t: Tensor) -> Tensor:
            return t.detach().to("cpu", torch.float32)[rows]

        stats = {k: rows_of(v) for k, v in (stats or {}).items()}
        return cls(rows_of(vectors), tuple(chosen), meta, stats)

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
        if meta.model != model.name and not allow_other_model:
            raise VectorMismatch(
                f"vector was extracted from {meta.model!r} but is applied to {model.name!r}; "
                "if they share a residual basis (e.g. base and chat variants), pass "
                "allow_other_model=True (CLI: --allow-other-model)"
            )
        if meta.layer_convention != LAYER_CONVENTION:
            raise VectorMismatch(
                f"vector uses layer convention {meta.layer_convention!r}; convert it to "
                f"{LAYER_CONVENTION!r} first"
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
            return cls(
                tensors["vectors"].float(),
                tuple(int(x) for x in raw["layers"]),
                VectorMeta.from_dict(raw),
                stats,
            )
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def to_gguf(self, path: str | Path, model_hint: str = "") -> Path:
        """Export as a llama.cpp control vector (also read by repeng).

        llama.cpp adds `direction.{l}` to the output of block `l` (l >= 1), i.e. our resid_post at
        block l; it has no slot for block 0 and scales the vectors when it loads them.
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
        for layer, vector in zip(self.layers, self.vectors, strict=True):
            writer.add_tensor(f"direction.{layer}", vector.numpy().astype("float32"))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    @classmethod
    def from_gguf(cls, path: str | Path, model: Model) -> DirectionSet:
        """Import a llama.cpp / repeng control vector for `model` (block indices as in the file)."""
        import gguf

        reader = gguf.GGUFReader(str(path))
        found: dict[int, Tensor] = {}
        for tensor in reader.tensors:
            prefix, _, index = tensor.name.partition(".")
            if prefix != "direction" or not index.isdigit():
                continue
            found[int(index)] = torch.tensor(tensor.data.copy(), dtype=torch.float32).reshape(-1)
        if not found:
            raise ValueError(f"{path} has no direction.N tensors; it is not a control vector")
        layers = sorted(found)
        stored = reader.fields.get("interp.meta")
        extra: dict[str, Any] = {"imported_from": str(path)}
        method = "gguf_control_vector"
        if stored is not None:
            original = json.loads(bytes(stored.parts[stored.data[0]]).decode())
            extra["original_meta"] = original
            method = str(original.get("method", method))
        return cls.from_tensor(
            torch.stack([found[layer] for layer in layers]), model, layers, method=method, **extra
        )
