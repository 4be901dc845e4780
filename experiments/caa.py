"""CAA A/B steering curves (Rimsky/Panickssery et al., ACL 2024; their Fig. 6-style sweep).

Protocol:
1. For each behaviour (interp/data/caa: sycophancy, myopic-reward), build the CAA vector at every
   block from the first 30 A/B items: resid_post at the answer letter, matching − not matching.
2. On the 10 held-out items, prefill the assistant reply with "(" and read p(matching letter)
   normalised over A/B, while adding multiplier × vector at one block to every response token.
   Sweep blocks × multipliers; every (item, block, multiplier) is one row of a batched forward.
3. Save the vectors (safetensors) and every cell (resumable JSONL), then draw the figure from
   the saved cells alone.

On SmolLM2-135M the raw vectors are only 3–5% of the residual norm at the answer letter (vs the
paper's multipliers of ±1 on Llama 2), hence the wider multiplier range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import interp
from interp import caa
from interp.caa.figures import caa_ab_curves
from interp.figures.style import save_figure
from interp.io import inside
from interp.runs.store import load_frame

MULTIPLIERS = [-20.0, -10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 20.0]


def main(
    model: Annotated[str, typer.Option(help="alias, HF dir or Hub id")] = interp.DEFAULT_MODEL,
    layers: Annotated[str, typer.Option(help="blocks to sweep")] = "6,9,12,15,18,21",
    results: Annotated[Path, typer.Option(help="where results are written")] = Path("results"),
    figures: Annotated[Path, typer.Option(help="where figures are written")] = Path("figures"),
    redraw: Annotated[bool, typer.Option(help="only redraw the figure from saved results")] = False,
) -> None:
    out = inside(results, "caa", Path(model).name)
    store = out / "ab_sweep.jsonl"
    if not redraw:
        lm = interp.load_model(model)
        chosen = lm.layers(layers)
        for behaviour in caa.BEHAVIOURS:
            train, test = caa.split(caa.load_behaviour(behaviour))
            vectors = caa.vector(lm, train, behaviour=behaviour)
            vectors.save(out / f"{behaviour}.safetensors")
            caa.ab_sweep(lm, test, vectors, chosen, MULTIPLIERS, store, behaviour=behaviour)
        frame = load_frame(store)
        # group by every config field that tells records apart (never average across vectors)
        by = ["config.behaviour", "config.vector", "config.layer", "config.multiplier"]
        table = frame.groupby(by)["p_match"].mean()
        print(table.unstack("config.multiplier").round(3).to_string())
    files = save_figure(caa_ab_curves(store), figures, "caa_ab_curves")
    print("figure:", ", ".join(str(f) for f in files))


if __name__ == "__main__":
    typer.run(main)
