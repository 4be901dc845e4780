"""A TopK SAE with random weights written in SAELens's layout, for tests that need one on disk."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write_sae(
    path: Path,
    *,
    d_in: int = 64,
    d_sae: int = 32,
    k: int = 4,
    hook: str = "blocks.2.hook_resid_post",
    model_name: str | None = None,
    fingerprint: str | None = None,
    seed: int = 0,
) -> Path:
    """A TopK SAE with random weights (decoder rows of uneven norm, nonzero biases) on disk."""
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) * 0.3)
        sae.W_dec.copy_(torch.randn(d_sae, d_in) * torch.rand(d_sae, 1) * 2)
        sae.b_enc.copy_(torch.randn(d_sae) * 0.1)
        sae.b_dec.copy_(torch.randn(d_in) * 0.5)
    sae.save_model(path)
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["metadata"].update(hook_name=hook, model_name=model_name, model_fingerprint=fingerprint)
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path
