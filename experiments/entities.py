"""Do I know this entity? End to end on an embedded model (Ferrando et al. 2025; issue 11).

    .venv/bin/python experiments/entities.py                 # SmolLM2-135M-Instruct
    .venv/bin/python experiments/entities.py --redraw        # figures from saved results only

1. Labels: every real entity's attribute questions (greedy + 5 samples at T=1, answers
   matched against the facts); known if 2+ attributes right, unknown if none; invented names
   are unknown by construction. Cached in results/entities/<model>/labels.jsonl.
2. Scoring: one capture of every labelled entity at every block; separation scores of every
   shipped SAE's latents (min over the four types, generic-density filter), held-out AUROC
   overall and within tokenization strata, the difference-of-means direction at every block,
   and the tokenization-only baseline.
3. Steering: the chosen known and unknown latents at α × the residual norm on held-out known,
   unknown and invented entities, against 10 random zero-separation latents and against
   orthogonalising the unknown direction; refusal, hallucination and the "are you sure"
   Yes−No logit diff; attention from the final token to the entity per head.
4. Figures into figures/ (entities_<figure>_<model>.html/png).

Each stage resumes from what is saved. The small model may show nothing beyond tokenization:
the table prints what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from interp.entities import run
from interp.entities.data import load_entities
from interp.entities.figures import draw_all
from interp.models import load_model
from interp.saes.load import load_sae, shipped_saes


def main(
    model: str = "smollm2-135m-instruct",
    results: Annotated[Path | None, typer.Option(help="default results/entities/<model>")] = None,
    figures: Path = Path("figures"),
    samples: int = 5,
    per_group: int = 24,
    alphas: str = "0.5,1,2,4",
    redraw: Annotated[bool, typer.Option(help="only redraw figures from saved results")] = False,
) -> None:
    out = results or Path("results/entities") / model
    if not redraw:
        loaded = load_model(model)
        data = load_entities()
        run.label(loaded, data, out, samples=samples)
        saes = [load_sae(name) for name in shipped_saes(model)]
        run.score(loaded, data, saes, out)
        run.steer(
            loaded,
            data,
            saes,
            out,
            alphas=[float(a) for a in alphas.split(",")],
            per_group=per_group,
        )
    draw_all(out, figures, model)
    print_table(out)


def print_table(out: Path) -> None:
    labels = pd.read_csv(out / "labels.csv")
    print(labels.groupby(["type", "origin"])["label"].value_counts().unstack(fill_value=0))
    tokens = json.loads((out / "tokenization.json").read_text())
    print(
        f"tokenization-only baseline AUROC {tokens['auroc']:.3f}, with the entity type "
        f"{tokens['type_auroc']:.3f}"
    )
    layers = pd.read_csv(out / "layers.csv")
    best = layers.sort_values("auroc", ascending=False).groupby("position").head(1)
    print(
        best[
            [
                "position",
                "layer",
                "auroc",
                "auroc_low",
                "auroc_strata",
                "auroc_strata_low",
                "beats_tokens",
                "beats_type",
                "beats_strata",
            ]
        ]
    )
    latents = pd.read_csv(out / "latents.csv")
    top = latents[latents["rank"] == 0]
    print(
        top[
            [
                "layer",
                "position",
                "kind",
                "latent",
                "separation",
                "auroc",
                "auroc_strata",
                "beats_tokens",
                "beats_type",
                "beats_strata",
            ]
        ].to_string(index=False)
    )
    summary = out / "steering_summary.csv"
    if summary.exists():
        print(
            pd.read_csv(summary)[
                ["group", "condition", "alpha", "n", "refusal", "hallucination"]
            ].to_string(index=False)
        )


if __name__ == "__main__":
    typer.run(main)
