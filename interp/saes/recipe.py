"""The whole offline recipe: corpus → activations → SAELens training → metrics → files.

`train_saes(model, corpus, layers, out)` collects the corpus's activations at every layer in
one forward (cut at the deepest layer), trains one TopK SAE per layer with SAELens, evaluates it
on held-out documents and writes, per layer, `out/block{l}-{site}/` holding SAELens's
`cfg.json` and float16 `sae_weights.safetensors`, plus `metrics.json` (quality, timings,
training config, corpus provenance) and `density.safetensors` (per-latent firing frequency on
held-out text). A layer whose directory already holds `metrics.json` is skipped, so an
interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interp.io import output_dir, save_tensors
from interp.models import Model
from interp.saes.collect import collect
from interp.saes.corpus import Corpus
from interp.saes.evaluate import evaluate_sae
from interp.saes.train import DENSITY, METRICS, TrainConfig, config_dict, save_sae, train_sae
from interp.sites import Site


def sae_dirname(layer: int, site: Site) -> str:
    return f"block{layer}-{site}"


def train_saes(
    model: Model,
    corpus: Corpus,
    layers: Sequence[int],
    out: str | Path,
    *,
    site: Site = "resid_post",
    config: TrainConfig | None = None,
    max_tokens: int = 450_000,
    held_out: float = 0.05,
    eval_tokens: int = 40_000,
    loss_documents: int = 48,
    log: Callable[[str], None] = print,
) -> dict[int, dict[str, Any]]:
    """Train, evaluate and save one SAE per layer; returns each layer's metrics record."""
    config = config or TrainConfig()
    root = output_dir(out, "SAE output directory")
    layers = [model.layer(layer) for layer in layers]
    todo = [layer for layer in layers if not (root / sae_dirname(layer, site) / METRICS).exists()]
    results = {
        layer: json.loads((root / sae_dirname(layer, site) / METRICS).read_text())
        for layer in layers
        if layer not in todo
    }
    if not todo:
        return results
    train_docs, test_docs = corpus.split(held_out)
    log(f"collecting ≤{max_tokens:,} tokens at blocks {todo} ({site}) …")
    train = collect(model, train_docs.documents, todo, site=site, max_tokens=max_tokens)
    log(f"  {train.tokens_seen:,} tokens at {train.tokens_per_second:,.0f} tok/s")
    test = collect(model, test_docs.documents, todo, site=site, max_tokens=eval_tokens)
    for layer in todo:
        acts = train.acts[layer]
        log(f"block {layer}: training on {acts.shape[0]:,} activations …")
        sae, seconds = train_sae(acts, config)
        sae.eval()
        metrics, density = evaluate_sae(
            model,
            sae,
            test.acts[layer],
            test_docs.documents[:loss_documents],
            model.hook_name(site, layer),
            acts[:100_000].float().mean(0),
        )
        record = {
            "layer": layer,
            "site": site,
            "model": model.name,
            "metrics": metrics.to_dict(),
            "train": {
                **config_dict(config),
                "activations": int(acts.shape[0]),
                "sinks_dropped": train.sinks_dropped[layer],
                "seconds": round(seconds, 1),
                "collect_tokens_per_second": round(train.tokens_per_second, 1),
                "recorded": time.strftime("%Y-%m-%d"),
            },
            "corpus": {**corpus.provenance(), "held_out_fraction": held_out},
        }
        where = root / sae_dirname(layer, site)
        save_sae(sae, where, model=model, layer=layer, site=site, extra={"train": record["train"]})
        save_tensors(where / DENSITY, {"density": density}, {"tokens": metrics.tokens})
        (where / METRICS).write_text(json.dumps(record, indent=1) + "\n")
        log(
            f"  EV {metrics.explained_variance:.3f}  L0 {metrics.l0:.1f}  dead "
            f"{metrics.dead_fraction:.2%}  loss +{metrics.loss_increase:.3f} nats "
            f"({metrics.loss_recovered:.0%} recovered)  in {seconds:.0f} s"
        )
        results[layer] = record
    return results
