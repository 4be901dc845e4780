"""Data screening by projection difference (Chen et al. 2025 §6; papers.md §1.9).

Uses the sycophantic persona vector extracted by `experiments/persona.py --traits sycophantic`
and the shipped demo pair `interp/data/persona/screening/sycophantic-{eliciting,normal}.jsonl`
(the same prompts answered sycophantically and normally, written by the project). For every
sample: the model's own greedy reply to the prompt (stored, resumable), then
ΔP = (response mean of the training reply − response mean of the own reply) · v̂ at the 60%
block. Prints the dataset-level ΔP of both files, the top-ranked samples, and the AUROC of
sample-level ΔP (eliciting vs normal) with a bootstrap 95% interval; draws the figure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import interp
from interp.figures.style import save_figure
from interp.io import data_path, inside, read_jsonl
from interp.persona.figures import screening
from interp.persona.screen import projection_difference, rank, separation
from interp.vectors import DirectionSet

DATASETS = ("sycophantic-eliciting", "sycophantic-normal")


def main(
    model: Annotated[str, typer.Option(help="alias, HF dir or Hub id")] = interp.DEFAULT_MODEL,
    results: Annotated[Path, typer.Option(help="where results are written")] = Path("results"),
    figures: Annotated[Path, typer.Option(help="where figures are written")] = Path("figures"),
    redraw: Annotated[bool, typer.Option(help="only redraw the figure from saved results")] = False,
) -> None:
    name = Path(model).name
    out = inside(results, "persona", name, "sycophantic", "screening")
    paths = [out / f"delta_p_{d}.jsonl" for d in DATASETS]
    if not redraw:
        lm = interp.load_model(model)
        vector = inside(results, "persona", name, "sycophantic", "vectors")
        vectors = DirectionSet.load(vector / "sycophantic_response_mean.safetensors")
        layer = round(0.6 * lm.n_layers)
        frames = []
        for dataset in DATASETS:
            samples = read_jsonl(data_path(f"persona/screening/{dataset}.jsonl"))
            frame = projection_difference(lm, samples, vectors, layer, out, name=dataset)
            frames.append(frame)
            print(f"{dataset}: dataset ΔP {frame['delta_p'].mean():.3f} ({len(frame)} samples)")
        est = separation(frames[0], frames[1])
        top = rank(frames[0])[["id", "delta_p"]].head(5)
        print(f"block {layer}; sample-level AUROC (eliciting vs normal): {est}")
        print(top.round(3).to_string(index=False))
        summary = {
            "layer": layer,
            "auroc": est.to_dict(),
            "dataset_delta_p": {
                d: float(f["delta_p"].mean()) for d, f in zip(DATASETS, frames, strict=True)
            },
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    suffix = "" if name == interp.DEFAULT_MODEL else f"_{name}"
    saved = json.loads((out / "summary.json").read_text())
    auroc = saved["auroc"]
    title = (
        f"ΔP screening with the sycophantic vector ({name}, block {saved['layer']}): "
        f"AUROC {auroc['value']:.2f} [{auroc['low']:.2f}, {auroc['high']:.2f}]"
    )
    files = save_figure(
        screening([str(p) for p in paths], title),
        figures,
        f"persona_screening{suffix}",
    )
    print("figure:", ", ".join(str(f) for f in files))


if __name__ == "__main__":
    typer.run(main)
