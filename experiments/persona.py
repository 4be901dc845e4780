"""Persona vectors end to end (Chen et al. 2025): extract, steer, monitor, draw.

Protocol per trait (papers.md §1.4-1.6, scaled to a CPU and 135M-270M models):
1. Rollouts: the trait's 20 extraction questions × 5 instruction pairs × `--samples`, under
   the positive and the negative system prompt, sampled at temperature 1 (batched, resumable).
2. Judging: trait by `--judge` (default: the offline classifier trained on these rollouts,
   scored out of fold), coherence by the offline coherence score; paired filter at 50/50/50.
3. Vectors: response mean (used below), prompt mean and last prompt token, at every block; the
   response-mean set gets the `resid_norm` stat measured on the sweep's questions.
4. Steering sweep on 10 extraction questions: `--layers` (auto: 30/45/60/75% of the depth) ×
   `--coefs` (norm-relative, coefficient 0 included), judged for the trait and coherence; the
   choice is the largest trait gain with mean coherence >= 75. The side cost on neutral text
   (KL, perplexity ratio) is reported for the choice, or for the largest gain when no setting
   passes the gate (marked as such in selection.json).
5. `--monitor`: last-prompt-token projections under 8 graded system prompts and 0-20-shot
   prompts at the 60% block, against the trait score of the reply (Pearson r, bootstrap CI).
6. Figures are drawn from the saved scores; `--redraw` only redraws them.

Everything is written under results/persona/<model>/<trait>/ and appends as it goes: rerunning
skips finished work. The small models may show weak effects; what is printed is what was
measured. `--extract-only` stops after step 3 (used to build the shipped vectors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

import interp
from interp.eval.coherence import CoherenceJudge
from interp.figures.style import save_figure
from interp.io import inside
from interp.persona import extract as px
from interp.persona import select as ps
from interp.persona.figures import monitor as monitor_figure
from interp.persona.figures import steering
from interp.persona.monitor import correlations, run_monitor
from interp.persona.shipped import shipped_path
from interp.persona.spec import load_spec


def auto_layers(n_layers: int) -> list[int]:
    """Four blocks at 30%, 45%, 60% and 75% of the depth (9, 14, 18, 22 on SmolLM2)."""
    return sorted({round(f * n_layers) for f in (0.3, 0.45, 0.6, 0.75)})


def figure_name(kind: str, trait: str, model: str) -> str:
    """`persona_<kind>_<trait>` on the default model, with the model's name otherwise."""
    name = Path(model).name
    return f"persona_{kind}_{trait}" + ("" if name == interp.DEFAULT_MODEL else f"_{name}")


def run_trait(
    lm: interp.Model,
    trait: str,
    out: Path,
    judge: str,
    samples: int,
    layers: list[int],
    coefs: list[float],
    questions: int,
) -> tuple[interp.DirectionSet, Any, Any]:
    """Extraction, the steering sweep and the choice; returns (vectors, trait judge, choice)."""
    spec = load_spec(trait)
    trait_judge = None
    if judge != "classifier":
        from interp.eval.judges.registry import make_judge

        trait_judge = make_judge(judge)
    extraction = px.extract(lm, spec, out, judge=trait_judge, samples=samples)
    print(f"{spec.name}: {extraction.counts.describe()}")
    for rate in extraction.follow:
        print(f"  instruction {rate.instruction}: followed {rate.followed}/{rate.total}")
    if extraction.classifier:
        print(f"  classifier held-out: {extraction.classifier}")
    if trait_judge is None:
        from interp.eval.judges.classifier import ClassifierJudge

        trait_judge = ClassifierJudge.load(out / "classifier")
    questions_used = list(spec.extraction_questions[:questions])
    vectors = ps.with_resid_norm(lm, extraction.vectors["response_mean"], questions_used)
    vectors.save(out / "vectors" / f"{spec.name}_response_mean.safetensors")
    frame = ps.steering_sweep(
        lm,
        spec,
        vectors,
        out,
        trait_judge,
        CoherenceJudge(lm),
        layers=layers,
        coefs=coefs,
        questions=questions,
    )
    table = ps.summarize(frame)
    print(table.round(3).to_string(index=False))
    choice = ps.choose(table)
    print("chosen:", ps.describe(choice))
    base = table[table["coef"] == 0.0]
    if choice is None:
        print(
            "unsteered mean coherence per block: "
            + ", ".join(f"{int(r.layer)}: {r.coherence:.1f}" for r in base.itertuples())
            + " (the gate is absolute, as in the paper; a small model sampled at "
            "temperature 1 may not reach it even unsteered)"
        )
    summary: dict[str, Any] = {
        "choice": choice.to_dict() if choice else None,
        "table": table.to_dict(orient="records"),
        "extraction": {
            "filter": extraction.counts.describe(),
            "kept_pairs": extraction.counts.coherent,
            "classifier": extraction.classifier,
        },
    }
    # the side cost of the chosen setting, else of the largest gain at any coherence
    shown = choice or ps.choose(table, gate=0.0)
    if shown is not None:
        cost = ps.side_cost_of(lm, vectors, shown)
        summary["side_cost"] = {
            "setting": shown.to_dict(),
            "gated": choice is not None,
            **cost.to_dict(),
        }
        print(f"side cost of block {shown.layer} × {shown.coef:g} on neutral texts: {cost}")
    (out / "selection.json").write_text(json.dumps(summary, indent=2, default=float))
    return vectors, trait_judge, choice


def main(
    traits: Annotated[str, typer.Option(help="built-in traits or spec files, comma-separated")] = (
        "evil"
    ),
    model: Annotated[str, typer.Option(help="alias, HF dir or Hub id")] = interp.DEFAULT_MODEL,
    judge: Annotated[
        str, typer.Option(help="classifier (offline, default), api:MODEL or local:ALIAS")
    ] = "classifier",
    samples: Annotated[int, typer.Option(help="rollouts per question and instruction")] = 1,
    layers: Annotated[str, typer.Option(help="blocks to sweep, or auto")] = "auto",
    coefs: Annotated[str, typer.Option(help="coefficients (resid_norm scale)")] = (
        "-0.4,-0.2,0.1,0.2,0.3,0.4"
    ),
    questions: Annotated[int, typer.Option(help="extraction questions in the sweep")] = 10,
    monitor: Annotated[bool, typer.Option(help="also run the monitoring experiment")] = False,
    extract_only: Annotated[bool, typer.Option(help="only extract the vectors")] = False,
    ship: Annotated[
        bool, typer.Option(help="also copy each response-mean vector into interp/data (shipped)")
    ] = False,
    results: Annotated[Path, typer.Option(help="where results are written")] = Path("results"),
    figures: Annotated[Path, typer.Option(help="where figures are written")] = Path("figures"),
    redraw: Annotated[
        bool, typer.Option(help="only redraw the figures from saved results")
    ] = False,
) -> None:
    names = [t.strip() for t in traits.split(",") if t.strip()]
    lm = None if redraw else interp.load_model(model)
    for trait in names:
        spec = load_spec(trait)
        out = inside(results, "persona", Path(model).name, spec.name)
        if lm is not None:
            if extract_only:
                extraction = px.extract(lm, spec, out, samples=samples)
                print(f"{spec.name}: {extraction.counts.describe()}")
                normed = ps.with_resid_norm(
                    lm, extraction.vectors["response_mean"], list(spec.extraction_questions[:10])
                )
                normed.save(out / "vectors" / f"{spec.name}_response_mean.safetensors")
                if ship:
                    print("shipped:", normed.save(shipped_path(spec.name, model)))
                continue
            blocks = auto_layers(lm.n_layers) if layers == "auto" else lm.layers(layers)
            vectors, trait_judge, _ = run_trait(
                lm,
                spec.name,
                out,
                judge,
                samples,
                blocks,
                [float(c) for c in coefs.split(",")],
                questions,
            )
            if ship:
                print("shipped:", vectors.save(shipped_path(spec.name, model)))
            if monitor:
                layer = blocks[len(blocks) // 2]  # the 60% block: one layer for every trait
                frame = run_monitor(lm, spec, vectors, layer, out, trait_judge, questions=10)
                table = correlations(frame)
                table.to_csv(out / "monitor_correlations.csv", index=False)
                print(table.round(3).to_string(index=False))
        if extract_only:
            continue
        files = save_figure(
            steering(
                out / "steering_scores.jsonl",
                title=f"Steering with the {spec.name} persona vector ({Path(model).name})",
            ),
            figures,
            figure_name("steering", spec.name, model),
        )
        if (out / "monitor_scores.jsonl").exists():
            files += save_figure(
                monitor_figure(out / "monitor_scores.jsonl"),
                figures,
                figure_name("monitor", spec.name, model),
            )
        print("figures:", ", ".join(str(f) for f in files))


if __name__ == "__main__":
    typer.run(main)
