"""Load an SAE (ours or a published one) and place it in a model: layer, site, checks, encode.

`load_sae(spec)` reads three kinds of spec and always returns a `LoadedSAE`, a SAELens `SAE`
(float32 compute) plus where it reads in our convention (`layer`, `site`, the alias `hook`):

- a local directory in SAELens's layout (`cfg.json` + `sae_weights.safetensors`), such as the
  ones `interp sae train` writes, with `metrics.json` and `density.safetensors` beside them;
- a shipped SAE, `"<model-alias>/block{l}-{site}"` (under `interp/data/saes`, see
  `shipped_saes()`);
- a published release, `"release:sae_id"`, loaded by `SAE.from_pretrained` through SAELens's
  release table and the Hugging Face hub, e.g.
  `"gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical"` (Gemma 2 2B, Gemma Scope) or
  `"gemma-scope-2-270m-pt-res:layer_12_width_16k_l0_medium"` (Gemma 3 270M, Gemma Scope 2:
  the model the embedded `gemma-3-270m` is a Q4_K_M quantization of, so there it reads slightly
  different activations). SAELens's Gemma Scope 2 loader reads tensor shapes with HTTP range
  requests, so those releases need the network even when the hub cache holds their files (the
  tests serve them from a hub on 127.0.0.1 and check the SAE against the embedded Gemma 3).

Why the checks sit here and not in SAELens: a damaged or foreign directory otherwise surfaces as
a KeyError or a size mismatch deep in SAELens, and weights must never be unpickled (DESIGN.md),
so a directory is validated first: its config must be JSON with `d_in`, `d_sae` and a known
`architecture`, its weights must be a readable safetensors file whose header matches the config
(read with `safe_open`, never `torch.load`), and PyTorch pickles (`*.pt`, `*.pth`, `*.bin`,
`*.pkl`) are refused by name. Published releases whose SAELens loader calls `torch.load` are
refused for the same reason.

An SAE is placed by its hook name, `blocks.{l}.hook_{site}` (SAELens's and TransformerLens's
names, the same aliases `interp.sites` resolves through the bridge), so a Gemma Scope SAE at
`blocks.12.hook_resid_post` is block 12, resid_post. Hooks outside the five sites (attention
`hook_z`, embeddings, transcoders) are refused with the sites listed.

`LoadedSAE.check(model)` decides whether the SAE fits a model: d_in against d_model, the block
in range, the site present on that architecture, and identity. A recorded weights fingerprint
(our SAEs record one) is the strong check: the same weights under any name pass, other weights
fail. Published SAEs record only a model name (SAELens names models as TransformerLens does,
"gemma-2-2b", while ours are Hub ids, aliases or paths), so without a fingerprint the names are
compared by their last path component, case-insensitively ("google/gemma-2-2b" matches
"gemma-2-2b"); a different name is refused, because base and chat variants share every shape
and a silent mismatch is the likeliest error. `allow_other_model=True` accepts another model on
purpose (e.g. base-model latents steering the chat model, as Ferrando et al. do).
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from torch import Tensor

from interp.capture import Activations
from interp.models import Model
from interp.saes.shipped import SHIPPED_ROOT
from interp.saes.train import CONFIG, DENSITY, METRICS, WEIGHTS
from interp.sites import SITES, Site, check_site, hook_alias
from interp.steering.interventions import Latent

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# SAELens loaders (pretrained_saes.yaml `conversion_func`) that read weights with torch.load
PICKLE_LOADERS = frozenset(
    {"connor_rob_hook_z", "goodfire", "deepseek_r1", "qwen_scope", "dictionary_learning_1"}
)
_HOOK = re.compile(rf"blocks\.(\d+)\.hook_({'|'.join(SITES)})")
_SHIPPED = re.compile(r"[\w.\-]+/block\d+-\w+")


@dataclass(eq=False)
class LoadedSAE:
    """A SAELens SAE (float32) and where it reads: block `layer`, `site`, alias `hook`."""

    sae: Any  # sae_lens.SAE
    layer: int
    site: Site
    hook: str
    source: str
    model_name: str | None = None
    model_fingerprint: str | None = None
    metrics: dict[str, Any] | None = None
    density: Tensor | None = None  # per-latent firing frequency, when recorded

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def architecture(self) -> str:
        return str(self.sae.cfg.architecture())

    @property
    def k(self) -> int | None:
        """The TopK SAE's k (None for other architectures)."""
        k = getattr(self.sae.cfg, "k", None)
        return None if k is None else int(k)

    def describe(self) -> dict[str, Any]:
        """What the SAE is and where it reads (JSON-able)."""
        return {
            "source": self.source,
            "architecture": self.architecture,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "hook": self.hook,
            "layer": self.layer,
            "site": self.site,
            "model": self.model_name,
            "model_fingerprint": self.model_fingerprint,
        }

    # -- fit -------------------------------------------------------------------------------
    def check(self, model: Model, allow_other_model: bool = False) -> LoadedSAE:
        """Raise a one-line ValueError unless this SAE fits `model` (module docstring); self."""
        made_for = repr(self.model_name) if self.model_name else "an unrecorded model"
        if self.d_in != model.d_model:
            raise ValueError(
                f"SAE {self.source} has d_in {self.d_in} but {model.name} has d_model "
                f"{model.d_model}; the SAE is for {made_for}: load that model"
            )
        if not 0 <= self.layer < model.n_layers:
            raise ValueError(
                f"SAE {self.source} reads block {self.layer} but {model.name} has "
                f"{model.n_layers} layers (0–{model.n_layers - 1}); the SAE is for {made_for}"
            )
        try:
            model.hook_name(self.site, self.layer)
        except ValueError as err:
            raise ValueError(
                f"SAE {self.source} reads {self.hook}, which is missing: {err}"
            ) from None
        if not allow_other_model:
            self._check_identity(model, made_for)
        return self

    def _check_identity(self, model: Model, made_for: str) -> None:
        hint = (
            "if they share a residual basis (e.g. base and chat variants), pass "
            "allow_other_model=True (CLI: --allow-other-model)"
        )
        if self.model_fingerprint:
            if self.model_fingerprint != model.fingerprint():
                raise ValueError(
                    f"SAE {self.source} is for {made_for} (weights fingerprint "
                    f"{self.model_fingerprint}) but the model is {model.name!r} (fingerprint "
                    f"{model.fingerprint()}): different weights; {hint}"
                )
        elif self.model_name and _short(self.model_name) != _short(model.name):
            raise ValueError(
                f"SAE {self.source} is for {made_for} but the model is {model.name!r} (the SAE "
                f"records no weights fingerprint, so names are compared); {hint}"
            )

    # -- compute ---------------------------------------------------------------------------
    def encode(self, acts: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations of `acts` (float32, on the SAE's device, then back)."""
        if acts.shape[-1] != self.d_in:
            raise ValueError(
                f"activations have last dimension {acts.shape[-1]}; SAE {self.source} "
                f"reads d_in {self.d_in}"
            )
        with torch.no_grad():
            feats = self.sae.encode(acts.to(self._device, torch.float32))
        return feats.to(acts.device)

    def decode(self, feats: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction from latent activations (float32)."""
        if feats.shape[-1] != self.d_sae:
            raise ValueError(
                f"latent activations have last dimension {feats.shape[-1]}; SAE {self.source} "
                f"has {self.d_sae} latents"
            )
        with torch.no_grad():
            out = self.sae.decode(feats.to(self._device, torch.float32))
        return out.to(feats.device)

    def encode_captured(self, activations: Activations, name: str) -> Float[Tensor, "n d_sae"]:
        """Encode reduction `name` of a capture, at this SAE's block and site."""
        if self.site not in activations.sites or self.layer not in activations.layers:
            raise ValueError(
                f"SAE {self.source} reads block {self.layer} {self.site}, but the capture holds "
                f"blocks {activations.layers} of {', '.join(activations.sites)}; capture "
                f"layers={self.layer}, sites={self.site!r}"
            )
        captured = activations.meta.get("fingerprint")
        if self.model_fingerprint and captured and captured != self.model_fingerprint:
            raise ValueError(
                f"the capture comes from {activations.meta.get('model')!r} (fingerprint "
                f"{captured}) but SAE {self.source} is for {self.model_name!r} (fingerprint "
                f"{self.model_fingerprint}); capture on the SAE's model"
            )
        acts = activations.at(name, self.layer, self.site)
        if acts.ndim != 2:
            raise ValueError(
                f"reduction {name!r} ({activations.reductions.get(name)}) holds "
                f"{tuple(acts.shape)} per block, not activations; capture with mean, sum or "
                "tokens"
            )
        return self.encode(acts)

    # -- latents ---------------------------------------------------------------------------
    def latent(self, index: int) -> Latent:
        """Latent `index` as a `Latent` (for `clamp`), in the units `encode` reports.

        A TopK SAE with `rescale_acts_by_decoder_norm` reports pre·‖W_dec[i]‖ and decodes
        f/‖W_dec[i]‖·W_dec[i]; the latent is rescaled to match, so clamping it to a value read
        off `encode` moves the reconstruction as the SAE would.
        """
        i = self._index(index)
        if self.sae.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ValueError(
                f"SAE {self.source} normalizes its input per token "
                f"({self.sae.cfg.normalize_activations}), so a latent is not a fixed direction; "
                "use an SAE without run-time normalization"
            )
        latent = Latent.from_sae(self.sae, i)
        if getattr(self.sae.cfg, "rescale_acts_by_decoder_norm", False):
            norm = float(latent.decoder.norm())
            latent = Latent(
                latent.encoder * norm, latent.decoder / norm, latent.bias * norm, latent.threshold
            )
        return latent

    def decoder_row(self, index: int) -> Float[Tensor, " d_in"]:
        """W_dec[index] as float32 on the CPU (its norm is 1 only for normalized SAEs)."""
        return self.sae.W_dec[self._index(index)].detach().float().cpu()

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not hasattr(type(index), "__index__"):
            raise TypeError(f"latent index must be a whole number, got {index!r}")
        i = operator.index(index)
        if not 0 <= i < self.d_sae:
            raise ValueError(
                f"latent {i} is out of range for an SAE with {self.d_sae} latents "
                f"(valid 0–{self.d_sae - 1})"
            )
        return i

    @property
    def _device(self) -> torch.device:
        return self.sae.W_dec.device


def _short(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


# -- specs -------------------------------------------------------------------------------
def shipped_saes(model_alias: str | None = None) -> list[str]:
    """Names ("<model-alias>/block{l}-{site}") of the SAEs shipped in the package."""
    if not SHIPPED_ROOT.is_dir():
        return []
    return sorted(
        f"{d.parent.name}/{d.name}"
        for d in SHIPPED_ROOT.glob("*/*")
        if (d / CONFIG).is_file() and (model_alias is None or d.parent.name == model_alias)
    )


def load_sae(spec: str | Path, *, device: str = "cpu") -> LoadedSAE:
    """Load an SAE from a directory, a shipped name or "release:sae_id" (module docstring)."""
    text = str(spec)
    if isinstance(spec, Path) or Path(text).exists():
        return _load_dir(Path(text), device)
    if ":" in text:
        release, _, sae_id = text.partition(":")
        return _load_release(release, sae_id, device)
    if _SHIPPED.fullmatch(text):
        where = SHIPPED_ROOT / text
        if not (where / CONFIG).is_file():
            shipped = ", ".join(shipped_saes()) or "none yet (experiments/train_saes.py makes them)"
            raise ValueError(f"no shipped SAE {text!r}; shipped SAEs: {shipped}")
        return _load_dir(where, device, source=text)
    return _load_dir(Path(text), device)


def _load_dir(path: Path, device: str, source: str | None = None) -> LoadedSAE:
    from sae_lens import SAE

    cfg = _validate_dir(path)
    try:
        sae = SAE.load_from_disk(path, device=device, dtype="float32")
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"SAELens could not load the SAE in {path} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); re-save it with SAELens"
        ) from None
    metrics = _read_json(path / METRICS) if (path / METRICS).is_file() else None
    density = _read_density(path / DENSITY) if (path / DENSITY).is_file() else None
    if density is not None and density.shape != (int(cfg["d_sae"]),):
        raise ValueError(
            f"{path / DENSITY} holds {tuple(density.shape)} densities for {cfg['d_sae']} "
            "latents; it belongs to another SAE: delete it or re-run the evaluation"
        )
    return _placed(sae, source or str(path), metrics, density)


def _validate_dir(path: Path) -> dict[str, Any]:
    """Check a SAELens directory before SAELens reads it; returns its config."""
    what = "give a directory holding cfg.json and sae_weights.safetensors (SAELens layout)"
    if not path.exists():
        shipped = ", ".join(shipped_saes()[:6]) or "none yet"
        raise ValueError(
            f"no SAE directory at {path}; {what}, a shipped SAE (e.g. {shipped}) or a "
            "published release as 'release:sae_id'"
        )
    if not path.is_dir():
        raise ValueError(f"SAE path {path} is a file; {what}")
    weights = path / WEIGHTS
    if not weights.is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(
                f"{path} holds {', '.join(pickles)} (PyTorch pickle) instead of {WEIGHTS}; "
                "interp never unpickles weights (loading a pickle can run code): convert them "
                "to safetensors with a script you trust, then load the directory"
            )
        raise ValueError(f"no {WEIGHTS} in {path}; {what}")
    cfg = _read_json(path / CONFIG)
    missing = [key for key in ("d_in", "d_sae", "architecture") if key not in cfg]
    if missing:
        raise ValueError(
            f"{path / CONFIG} lacks {', '.join(missing)}; it is not a SAELens SAE config: "
            "re-save the SAE with SAELens (save_inference_model)"
        )
    for key in ("d_in", "d_sae"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"{path / CONFIG}: {key} is {cfg[key]!r}; it must be a positive int")
    _check_architecture(cfg["architecture"], path / CONFIG)
    shapes = _weight_shapes(weights)
    want = {"W_enc": [cfg["d_in"], cfg["d_sae"]], "W_dec": [cfg["d_sae"], cfg["d_in"]]}
    for key, shape in want.items():
        if key not in shapes:
            raise ValueError(f"{weights} has no {key} (tensors: {', '.join(shapes)}); re-save it")
        if shapes[key] != shape:
            raise ValueError(
                f"{weights}: {key} has shape {shapes[key]} but {CONFIG} says d_in "
                f"{cfg['d_in']}, d_sae {cfg['d_sae']} (expected {shape}); the files do not belong "
                "together"
            )
    return cfg


def _check_architecture(architecture: Any, where: Path) -> None:
    import sae_lens  # noqa: F401  (registers the architectures)
    from sae_lens.registry import SAE_CLASS_REGISTRY

    if architecture not in SAE_CLASS_REGISTRY:
        raise ValueError(
            f"{where}: unknown SAE architecture {architecture!r}; SAELens knows "
            f"{', '.join(sorted(SAE_CLASS_REGISTRY))}"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no {path.name} in {path.parent}; it is not an SAE directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-create the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object; re-create it")
    return data


def _weight_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header (reads no weights, unpickles nothing)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it is truncated, damaged or in "
            "another format (interp never loads pickles): re-save the SAE with SAELens"
        ) from None


def _read_density(path: Path) -> Tensor:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor("density").float()
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable density file ({err}); delete it or re-run the evaluation"
        ) from None


def _load_release(release: str, sae_id: str, device: str) -> LoadedSAE:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    spec = f"{release}:{sae_id}"
    directory = get_pretrained_saes_directory()
    if release not in directory and "/" not in release:
        close = difflib.get_close_matches(release, directory, n=4, cutoff=0.6)
        hint = f"close: {', '.join(close)}" if close else f"e.g. {', '.join(list(directory)[:4])}"
        raise ValueError(
            f"unknown SAELens release {release!r} in {spec!r} (and no directory by that name); "
            f"{hint}"
        )
    if release in directory:
        lookup = directory[release]
        if sae_id not in lookup.saes_map:
            ids = list(lookup.saes_map)
            close = difflib.get_close_matches(sae_id, ids, n=4, cutoff=0.6) or ids[:4]
            raise ValueError(
                f"release {release!r} has no SAE {sae_id!r}; it has {len(ids)}, e.g. "
                f"{', '.join(close)}"
            )
        if lookup.conversion_func in PICKLE_LOADERS:
            raise ValueError(
                f"release {release!r} is read by SAELens's {lookup.conversion_func!r} loader, "
                "which unpickles PyTorch files (torch.load); interp never unpickles weights: "
                "convert the SAE to safetensors yourself and load the directory"
            )
    try:
        sae, _, log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(
            release, sae_id, device=device, dtype="float32"
        )
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"could not load {spec!r} from the Hugging Face hub ({type(err).__name__}: {first}); "
            "check the network, or fill the hub cache (HF_HOME) on a machine that has one"
        ) from None
    density = None if log_sparsity is None else (10 ** log_sparsity.float()).cpu()
    return _placed(sae, spec, None, density)


def _placed(
    sae: Any, source: str, metrics: dict[str, Any] | None, density: Tensor | None
) -> LoadedSAE:
    """Wrap a loaded SAELens SAE, reading its block and site from the hook name it records."""
    meta = sae.cfg.metadata
    if getattr(meta, "hook_name_out", None) or getattr(sae.cfg, "d_out", None) is not None:
        raise ValueError(
            f"{source} is a transcoder (reads {meta.hook_name}, writes {meta.hook_name_out}); "
            "interp loads SAEs, which reconstruct the site they read"
        )
    hook = getattr(meta, "hook_name", None)
    match = _HOOK.fullmatch(hook) if isinstance(hook, str) else None
    if match is None:
        raise ValueError(
            f"SAE {source} reads hook {hook!r}, which is not one of interp's sites: "
            f"blocks.{{l}}.hook_{{site}} with site one of {', '.join(SITES)}"
        )
    layer, site = int(match[1]), check_site(match[2])
    fingerprint = getattr(meta, "model_fingerprint", None)
    name = getattr(meta, "model_name", None)
    return LoadedSAE(
        sae=sae.eval(),
        layer=layer,
        site=site,
        hook=hook_alias(site, layer),
        source=source,
        model_name=None if name is None else str(name),
        model_fingerprint=None if fingerprint is None else str(fingerprint),
        metrics=metrics,
        density=density,
    )
