"""Retrain the SAEs shipped for the embedded default model (issue 11; DESIGN.md "SAE training").

    apt-get install python3.11-doc      # the corpus: the Python 3.11 docs' reST sources
    .venv/bin/python experiments/train_saes.py

Writes `interp/data/saes/smollm2-135m-instruct/block{6,15,24}-resid_post/` (SAELens layout,
float16 weights, `metrics.json`, `density.safetensors`). A layer that already has
`metrics.json` is skipped: delete its directory to retrain it. The same recipe is
`interp sae train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interp.models import load_model
from interp.saes.corpus import DEBIAN_PYTHON_DOCS, read_corpus
from interp.saes.recipe import train_saes
from interp.saes.shipped import SHIPPED_ROOT
from interp.saes.train import TrainConfig


def main(
    model: str = "smollm2-135m-instruct",
    layers: Annotated[str, typer.Option(help="comma-separated blocks")] = "6,15,24",
    corpus: Path = DEBIAN_PYTHON_DOCS,
    out: Annotated[Path | None, typer.Option(help="default: the shipped SAE directory")] = None,
    d_sae: int = 3072,
    k: int = 32,
    epochs: int = 3,
    batch_size: int = 1024,
    max_tokens: int = 400_000,
) -> None:
    loaded = load_model(model)
    train_saes(
        loaded,
        read_corpus(corpus),
        [int(x) for x in layers.split(",")],
        out or SHIPPED_ROOT / model,
        config=TrainConfig(d_sae=d_sae, k=k, epochs=epochs, batch_size=batch_size),
        max_tokens=max_tokens,
    )


if __name__ == "__main__":
    typer.run(main)
