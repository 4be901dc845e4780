"""Residual-stream norms by layer: the quickstart job on the embedded default model.

Protocol: eight short chats (prompt + assistant response, `interp/data/demo_chats.jsonl`) go
through the model once. At every block we keep, per example, the mean L2 norm of resid_post
over (a) the first token, (b) the other prompt tokens and (c) the response tokens. The first
token of a sequence acts as an attention sink with a norm far above the rest, which is why
interp's norm-relative steering scales leave it out; the figure shows by how much.

Results: results/residual_norms/<model>.safetensors. Figure: figures/residual_norms.{html,png},
redrawn from the results file alone (`--redraw`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import interp
from interp.figures.plots import residual_norms
from interp.figures.style import save_figure
from interp.io import data_path, inside, read_jsonl

REDUCTIONS = {
    "first_norm": "first:norm",
    "prompt_norm": "prompt&!first:norm",
    "response_norm": "response:norm",
}


def main(
    model: Annotated[str, typer.Option(help="alias, HF dir or Hub id")] = interp.DEFAULT_MODEL,
    results: Annotated[Path, typer.Option(help="where results are written")] = Path("results"),
    figures: Annotated[Path, typer.Option(help="where figures are written")] = Path("figures"),
    redraw: Annotated[bool, typer.Option(help="only redraw the figure from saved results")] = False,
) -> None:
    out = inside(results, "residual_norms", f"{Path(model).name}.safetensors")
    if not redraw:
        lm = interp.load_model(model)
        chats = read_jsonl(data_path("demo_chats.jsonl"))
        acts = interp.capture(lm, chats, REDUCTIONS, layers="all", sites="resid_post")
        acts.save(out)
        first, prompt = acts["first_norm"].mean(0), acts["prompt_norm"].mean(0)
        mid = len(acts.layers) // 2
        print(f"{lm.name}: {acts.n_examples} chats, {len(acts.layers)} layers -> {out}")
        print(
            f"block {acts.layers[mid]}: first-token norm {first[mid]:.0f}, "
            f"other prompt tokens {prompt[mid]:.0f} ({first[mid] / prompt[mid]:.0f}x)"
        )
    files = save_figure(residual_norms(out), figures, "residual_norms", formats=("html", "png"))
    print("figure:", ", ".join(str(f) for f in files))


if __name__ == "__main__":
    typer.run(main)
