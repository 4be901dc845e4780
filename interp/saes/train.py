"""Train TopK SAEs on a model's own activations with SAELens's `SAETrainer` (no hand-written loop).

The recipe (DESIGN.md, "SAE training offline"): activations come from `collect` (position 0
and norm outliers left out), shuffled in memory; the activation scaling factor is preset from
the data (SAELens would otherwise draw 1,000 batches to estimate it) and `b_dec` starts at the
data mean. After `fit()` SAELens folds the scaling into the weights, so the saved SAE reads raw
activations. Weights are written in float16 (compute in float32: fp16 matmuls are slow on CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.models import Model
from interp.sites import Site, hook_alias

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
METRICS = "metrics.json"
DENSITY = "density.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """What an SAE is trained with (recorded in its metadata)."""

    d_sae: int = 3072
    k: int = 32
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 4e-4
    seed: int = 0
    dead_feature_window: int = 100
    feature_sampling_window: int = 100

    def __post_init__(self) -> None:
        for name in ("d_sae", "k", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} is larger than d_sae={self.d_sae}; choose k ≤ d_sae")


def _batches(
    x: Float[Tensor, "n d"], batch_size: int, epochs: int, seed: int
) -> Iterator[Float[Tensor, "batch d"]]:
    """`epochs` shuffled passes over `x` in float32 batches, then the first batch forever.

    SAELens stops on its sample count, which is a whole number of batches; the tail batch is
    never short, so the count is exact.
    """
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0] - batch_size + 1, batch_size):
            yield x[order[start : start + batch_size]].float()
    while True:  # never reached when total_training_samples matches the epochs
        yield x[:batch_size].float()


def train_sae(acts: Float[Tensor, "n d_model"], config: TrainConfig) -> tuple[Any, float]:
    """Fit one TopK SAE on `acts` with SAELens; returns (the inference SAE, seconds)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    n, d_in = acts.shape
    if n < config.batch_size:
        raise ValueError(
            f"only {n} activations for batch_size {config.batch_size}; collect more tokens"
        )
    torch.manual_seed(config.seed)
    steps = (n // config.batch_size) * config.epochs
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=config.d_sae,
            k=config.k,
            normalize_activations="expected_average_only_in",
        )
    )
    sample = acts[: min(n, 100_000)].float()
    scale = math.sqrt(d_in) / float(sample.norm(dim=-1).mean())
    with torch.no_grad():
        sae.b_dec.copy_(sample.mean(0) * scale)
    cfg = SAETrainerConfig(
        total_training_samples=steps * config.batch_size,
        train_batch_size_samples=config.batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_decay_steps=steps // 5,
        dead_feature_window=config.dead_feature_window,
        feature_sampling_window=config.feature_sampling_window,
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(
        cfg=cfg,
        sae=sae,
        data_provider=_batches(acts, config.batch_size, config.epochs, config.seed),
    )
    trainer.activation_scaler.scaling_factor = scale  # preset: no 1,000-batch estimate
    start = time.perf_counter()
    trainer.fit()  # SAELens shows its own progress bar
    return sae, time.perf_counter() - start


def save_sae(
    sae: Any,
    path: str | Path,
    *,
    model: Model,
    layer: int,
    site: Site,
    extra: dict[str, Any],
) -> Path:
    """Write the inference SAE to `path` (SAELens layout) with float16 weights and our metadata.

    The SAELens `cfg.json` carries the hook alias, the model and `extra` (training config,
    corpus provenance) in its `metadata`, so `SAE.load_from_disk` alone says what it reads.
    """
    path = Path(path)
    sae.cfg.metadata.hook_name = hook_alias(site, layer)
    sae.cfg.metadata.model_name = model.name
    sae.cfg.metadata.model_fingerprint = model.fingerprint()
    sae.cfg.metadata.interp = {"layer": layer, "site": site, **extra}
    sae.save_inference_model(path)
    weights = load_file(str(path / WEIGHTS))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, path / WEIGHTS)
    cfg = json.loads((path / CONFIG).read_text())
    (path / CONFIG).write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    return path


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
