"""Load a causal LM as a TransformerBridge, with its tokenizer, chat format and layer map.

Everything starts here. `load_model(spec)` accepts an embedded alias (offline, see
`interp.embedded`), a local Hugging Face directory, or a Hub id, and always goes through
`TransformerBridge.boot_transformers` with raw weights (no LayerNorm folding, no centering), so
vectors and SAEs live in the model's real residual basis.

The returned `Model` names hook points by the convention of `interp.sites`, formats chats,
and offers `unwrapped()`: the booted bridge wraps the HF modules in place, which costs ~15% in
token-by-token generation, so generation temporarily puts the original modules back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import os
import re
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsIndex

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from interp.embedded import DEFAULT_MODEL, EMBEDDED, materialize
from interp.sites import SITES, Site, check_site, hook_alias, parse_layer_ranges

Message = dict[str, str]
# "all", "a-b", "a,b,c", one block (any integer scalar) or a collection of blocks
LayerSpec = str | SupportsIndex | Iterable[SupportsIndex]
ROLE_NAMES = {"user": "User", "assistant": "Assistant"}


class ModelNotFound(ValueError):
    """A model spec that is neither an embedded alias, a local directory nor a reachable id."""


def _aliases_hint() -> str:
    return "embedded aliases (offline): " + ", ".join(EMBEDDED)


@dataclass(eq=False)
class Model:
    """A booted TransformerBridge plus what experiments need to talk to it."""

    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: PreTrainedTokenizerBase
    name: str  # alias, Hub id or path, as given
    source: str  # where the weights were read from
    provenance: dict[str, str] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False)
    _earlier: tuple[str, ...] | None = field(default=None, repr=False)
    _token_texts: list[str] | None = field(default=None, repr=False)
    _vocab_masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _hook_points: dict[str, Any] | None = field(default=None, repr=False)

    # -- shape and placement ------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def hf(self) -> Any:
        """The underlying Hugging Face model (its modules are wrapped by the bridge)."""
        return self.bridge.original_model

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def post_norms(self) -> bool:
        """Whether attention's write into the residual is a norm's output (Gemma 2/3, OLMo-2)."""
        from transformer_lens.model_bridge.generalized_components import NormalizationBridge

        path = self.hook_name("attn_out", 0).rpartition(".")[0]
        return isinstance(self.bridge.get_submodule(path), NormalizationBridge)

    def hook_points(self) -> dict[str, Any]:
        """Hook name -> HookPoint, read once (the bridge rebuilds `hook_dict` on every access)."""
        if self._hook_points is None:
            self._hook_points = dict(self.bridge.hook_dict)
        return self._hook_points

    # -- layers and sites ---------------------------------------------------------------
    def layer(self, layer: SupportsIndex) -> int:
        """Validate a block index (negative counts from the end) and return it as 0-based."""
        n = self.n_layers
        if isinstance(layer, bool) or not hasattr(type(layer), "__index__"):
            raise TypeError(
                f"layer must be a whole block index (int), got {layer!r} "
                f"({type(layer).__name__}); pass e.g. 0, 3 or -1 (from the end)"
            )
        block = operator.index(layer)
        if not -n <= block < n:
            raise ValueError(
                f"layer {block} is out of range for {self.name} ({n} layers: 0–{n - 1})"
            )
        return block % n

    def layers(self, spec: LayerSpec = "all") -> list[int]:
        """Resolve "all", "a-b" (inclusive), "a,b,c", an int or a list into sorted block indices.

        A single block may be any integer scalar (a numpy or 0-d tensor int too); floats and
        bools are refused, alone or in a list, as by `layer`.
        """
        if isinstance(spec, str):
            if spec.strip() == "all":
                return list(range(self.n_layers))
            out: list[int] = []
            for lo, hi in parse_layer_ranges(spec):
                first, last = self.layer(lo), self.layer(hi)
                if first > last:
                    raise ValueError(
                        f"layer range '{lo}-{hi}' runs backwards on {self.name} (block {first} to "
                        f"block {last}); write it low to high: '{last}-{first}'"
                    )
                out.extend(range(first, last + 1))
            return sorted(set(out))
        if not isinstance(spec, Iterable):  # one block (layer() refuses floats and bools)
            return [self.layer(spec)]
        try:
            items = list(spec)
        except TypeError:  # a 0-d array or tensor: one block too
            return [self.layer(spec)]  # type: ignore[arg-type]
        resolved = sorted({self.layer(x) for x in items})
        if not resolved:
            raise ValueError("no layers given; pass 'all', a range like '10-20' or a list")
        return resolved

    def hook_name(self, site: Site | str, layer: int) -> str:
        """Name of the hook point that holds `site` at block `layer` on this architecture.

        Resolved through the bridge's own alias `blocks.{l}.hook_{site}` (see `interp.sites`),
        so the site means the same tensor on every architecture; the name returned is the hook
        point's canonical one (e.g. `blocks.3.ln1_post.hook_out` for Gemma's attn_out). A site
        the architecture does not have is refused with the reason and the sites it has.
        """
        block = self.layer(layer)
        point = self.hook_points().get(hook_alias(check_site(site), block))
        if point is None:
            raise ValueError(self._missing_site(site, block))
        name = str(point.name)
        if self.hook_points().get(name) is not point:  # an alias with no canonical entry
            name = hook_alias(site, block)
        return name

    def available_sites(self, layer: int) -> list[Site]:
        """The sites block `layer` has (all five, except resid_mid on parallel-residual blocks)."""
        block = self.layer(layer)
        return [s for s in SITES if hook_alias(s, block) in self.hook_points()]

    def _missing_site(self, site: str, block: int) -> str:
        from transformer_lens.model_bridge.generalized_components import ParallelBlockBridge

        component = self.bridge.get_submodule(f"blocks.{block}")
        if site == "resid_mid" and isinstance(component, ParallelBlockBridge):
            why = (
                f"block {block} of {self.name} is a parallel-residual block "
                f"({type(component).__name__}): attention and the MLP both read resid_pre and "
                "add into resid_post together, so no residual exists between them"
            )
        else:
            why = (
                f"the bridge's adapter for {self.name} ({type(self.bridge.adapter).__name__}) "
                f"has no hook {hook_alias(site, block)!r}"
            )
        available = ", ".join(self.available_sites(block)) or "none"
        return f"site {site!r} does not exist here: {why}. Use one of: {available}"

    # -- text -----------------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where a reply ends besides EOS: none with a chat template; with the plain fallback a
        base model writes the next "User:" turn itself, so a new line starting "User:" ends the
        reply there. This applies to every prompt of a base model, plain-text continuations
        included; pass `stop=()` to `generate` or a sweep to turn it off."""
        return () if self.has_chat_template else (f"\n{ROLE_NAMES['user']}:",)

    def format_chat(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Render messages with the tokenizer's chat template, or a plain fallback for base models.

        The fallback is "User: …\\n\\nAssistant: …\\n\\n" with a system message as a leading
        paragraph, ending in "Assistant:" when a generation prompt is asked for.
        """
        _check_messages(messages)
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
            )
            return str(text)
        parts = []
        for message in messages:
            if message["role"] == "system":
                parts.append(f"{message['content']}\n\n")
            else:
                parts.append(f"{ROLE_NAMES[message['role']]}: {message['content']}\n\n")
        if add_generation_prompt:
            parts.append("Assistant:")
        return "".join(parts)

    def token_texts(self) -> list[str]:
        """Decoded text of every vocabulary id (cached); used by pattern-matching positions."""
        if self._token_texts is None:
            vocab = len(self.tokenizer)
            self._token_texts = self.tokenizer.batch_decode([[i] for i in range(vocab)])
        return self._token_texts

    def vocab_mask(self, pattern: str) -> torch.Tensor:
        """Boolean [vocab] table: which token texts match the regex `pattern` (cached)."""
        if pattern not in self._vocab_masks:
            regex = re.compile(pattern)
            hits = [bool(regex.search(text)) for text in self.token_texts()]
            self._vocab_masks[pattern] = torch.tensor(hits, dtype=torch.bool)
        return self._vocab_masks[pattern]

    # -- identity ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of what the model computes: its weights and architecture.

        It is the identity that vectors are checked against and results are keyed by, so it
        leaves out what describes a load rather than the model: the dtype, the transformers
        version, the attention kernel, `use_cache` and other run-time switches (see
        `VOLATILE_CONFIG`). The weights are sampled and rounded to bfloat16 before hashing, so
        the same weights loaded in float32 or bfloat16 share the fingerprint, while any other
        weights change it (a float16 load rounds differently and generally does not match).
        Results that depend on the dtype key it separately (`describe()["dtype"]`).
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            config = _architecture(self.hf.config.to_dict())
            digest.update(json.dumps(config, sort_keys=True, default=str).encode())
            with torch.no_grad():
                for name, param in self.hf.named_parameters():
                    flat = param.detach().reshape(-1)
                    step = max(1, flat.numel() // 4096)
                    sample = flat[::step].to("cpu", torch.bfloat16).view(torch.int16)
                    digest.update(name.encode())
                    digest.update(sample.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def earlier_fingerprints(self) -> tuple[str, ...]:
        """This model's fingerprint by the definition files were written with before the
        current one (config with dtype and transformers version, float32 weight samples), so
        a vector saved then still meets the model it was made on, loaded as it was then."""
        if self._earlier is None:
            digest = hashlib.sha256()
            config = self.hf.config.to_dict()
            config.pop("_name_or_path", None)
            config.pop("_attn_implementation", None)  # set only inside `unwrapped()`, if at all
            digest.update(json.dumps(config, sort_keys=True, default=str).encode())
            digest.update(str(self.dtype).encode())
            with torch.no_grad():
                for name, param in self.hf.named_parameters():
                    flat = param.detach().reshape(-1)
                    step = max(1, flat.numel() // 4096)
                    digest.update(name.encode())
                    digest.update(flat[::step].to("cpu", torch.float32).numpy().tobytes())
            self._earlier = (digest.hexdigest()[:16],)
        return self._earlier

    def describe(self) -> dict[str, Any]:
        """Metadata recorded with every saved artifact."""
        return {
            "model": self.name,
            "source": self.source,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": str(self.dtype).removeprefix("torch."),
            "fingerprint": self.fingerprint(),
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    # -- fast path --------------------------------------------------------------------------
    @contextlib.contextmanager
    def unwrapped(self) -> Iterator[Any]:
        """Yield the HF model with its original modules (and SDPA attention) put back.

        The bridge replaces HF submodules by wrappers that carry hook points; running through
        them costs ~15% per decoding step. Inside this context the HF model is exactly the
        plain HF model (same parameter tensors, nothing copied); bridge hooks do not fire.
        The bridge shares some containers with the HF model (`bridge.blocks` is the HF layer
        list), so resolve bridge components before entering, not inside.
        """
        swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []

        def unwrap(parent: torch.nn.Module) -> None:
            # Walk the HF tree only: replace each wrapper by its original, then descend into the
            # original (never into the wrapper's own hook points and sub-wrappers).
            for child_name, child in list(parent._modules.items()):
                if child is None:
                    continue
                original = child._modules.get("_original_component")
                if original is not None:
                    swaps.append((parent, child_name, child))
                    parent._modules[child_name] = original
                    child = original
                unwrap(child)

        hf = self.hf
        config = hf.config
        previous_attn = config._attn_implementation
        unwrap(hf)
        try:
            if getattr(hf, "_supports_sdpa", False):
                config._attn_implementation = "sdpa"
            yield hf
        finally:
            config._attn_implementation = previous_attn
            for parent, child_name, wrapper in reversed(swaps):
                parent._modules[child_name] = wrapper

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, layers={self.n_layers}, d_model={self.d_model}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def _check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise ValueError("a chat needs at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(
                f"message {i} must be a dict with 'role' and 'content', got {message!r}"
            )
        if message["role"] not in ("system", "user", "assistant"):
            raise ValueError(
                f"message {i} has role {message['role']!r}; use system, user or assistant"
            )


# Config fields that describe a load or a run, not the function the weights compute: the
# fingerprint leaves them out (and every field whose name starts with "_", e.g. _name_or_path
# or _attn_implementation).
VOLATILE_CONFIG = frozenset(
    {
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "attn_implementation",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_return_dict",
        "torchscript",
        "chunk_size_feed_forward",
        "initializer_range",
    }
)


def _architecture(config: Any) -> Any:
    """`config` (a `to_dict()`, nested configs included) without the `VOLATILE_CONFIG` fields."""
    if isinstance(config, dict):
        return {
            k: _architecture(v)
            for k, v in config.items()
            if not (isinstance(k, str) and (k.startswith("_") or k in VOLATILE_CONFIG))
        }
    if isinstance(config, list):
        return [_architecture(v) for v in config]
    return config


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(table)}")
    return table[dtype]


def _resolve(spec: str) -> tuple[str, dict[str, str]]:
    """Turn a spec into something `from_pretrained` accepts, plus provenance."""
    if spec in EMBEDDED:
        directory = materialize(EMBEDDED[spec])
        provenance = json.loads((directory / "interp-embedded.json").read_text())
        return str(directory), provenance
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{spec!r} exists but is not a Hugging Face model directory (no config.json). "
                f"Pass a directory written by save_pretrained, a Hub id, or one of the "
                f"{_aliases_hint()}"
            )
        _check_weights(spec, path)
        return str(path), {}
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotFound(f"no model directory at {spec!r}. {_aliases_hint()}")
    return spec, {}


def _check_weights(spec: str, path: Path) -> None:
    """Refuse a local directory without safetensors weights (pickled ones are never loaded)."""
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled:
        raise ModelNotFound(
            f"{spec!r} holds only pickled weights ({', '.join(pickled)}); interp loads only "
            f"safetensors weights and never unpickles. In an environment you trust, convert them "
            f"with AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir), which writes "
            f"model.safetensors"
        )
    raise ModelNotFound(
        f"{spec!r} has a config.json but no *.safetensors weights; pass a directory written by "
        f"save_pretrained, a Hub id, or one of the {_aliases_hint()}"
    )


def _check_device(device: str) -> str:
    """Validate `device` before anything is loaded, so a typo or a missing GPU fails at once."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA"
                if torch.version.cuda is None
                else "no GPU is visible"
            )
            raise ValueError(
                f"device {device!r} needs CUDA, but {why} (torch {torch.__version__}); "
                f"use device 'cpu', or leave it unset to use CUDA only when present"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"device {device!r} does not exist: {count} CUDA device(s), 'cuda:0' to "
                f"'cuda:{count - 1}'"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} (Apple MPS) is not available here; use 'cpu'")
    return device


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers a TCP connect (skipped when a proxy is configured)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_tokenizer(spec: str, location: str) -> PreTrainedTokenizerBase:
    """Tokenizer from a local directory, the local HF cache, or the Hub, failing fast offline."""
    local = Path(location).is_dir()
    errors: list[str] = []
    attempts = [True] if local else [True, False]  # local files first: no network round-trip
    for local_only in attempts:
        if not local_only and (os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()):
            errors.append("the Hugging Face Hub is not reachable from this machine")
            break
        try:
            tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
                location, local_files_only=local_only
            )
            return tokenizer
        except (OSError, ValueError) as err:
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")
    hint = "".join(
        f" An offline copy of this model is embedded: use {alias!r}."
        for alias, embedded in EMBEDDED.items()
        if embedded.hub_id.lower() == spec.lower()
    )
    raise ModelNotFound(
        f"could not load {spec!r}: it is not an embedded alias or a local model directory, and "
        f"as a Hub id it failed ({'; '.join(errors)}).{hint} {_aliases_hint()}"
    )


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    device_map: str | dict[str, Any] | None = None,
    n_devices: int | None = None,
) -> Model:
    """Load `spec` (embedded alias, local HF directory, or Hub id) as a bridged `Model`.

    `device` defaults to CUDA when present; `dtype` to bfloat16 on CUDA and float32 on CPU.
    `device_map` / `n_devices` place a large model over several GPUs through the bridge.
    """
    from transformer_lens.model_bridge import TransformerBridge

    device = default_device() if device is None else _check_device(device)
    torch_dtype = _dtype(dtype, device)
    location, provenance = _resolve(spec)
    tokenizer = _load_tokenizer(spec, location)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    kwargs: dict[str, Any] = {"tokenizer": tokenizer, "dtype": torch_dtype}
    if device_map is not None or n_devices is not None:
        kwargs.update(device_map=device_map, n_devices=n_devices)
    else:
        kwargs["device"] = device
    bridge = TransformerBridge.boot_transformers(location, **kwargs)
    bridge.eval()
    return Model(
        bridge=bridge, tokenizer=tokenizer, name=spec, source=location, provenance=provenance
    )


__all__ = ["SITES", "Model", "ModelNotFound", "load_model"]
