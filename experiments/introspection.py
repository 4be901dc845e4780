"""Concept injection and introspection end to end (Lindsey 2025; papers.md §2; issue 10).

Protocol for one model (default the embedded SmolLM2-135M-Instruct; also gemma-3-270m):
1. Concept vectors for the 50 published concepts against the 100 baseline words, at every
   block (and the 100 control words' vectors, for the intentional-control baseline).
2. Detection grid: `--concepts` concepts × strengths {1, 2, 4, 8, 16} × layer fractions
   {0.33, 0.5, 0.67, 0.83}, raw scale, plus as many control trials per cell (half of all
   trials, as the framing announces); temperature 1, 40 new tokens. `--other-scales N` adds
   the unit_norm and resid_norm scales on the first N concepts.
3. Grading with the rule grader; success, false positives, net score and influence with
   bootstrap 95% intervals, per cell, layer and concept.
4. Variants (`--variants`): thoughts vs text, prefill intention, intentional control, the
   affirmative-bias control (no-questions under injection, on `--variant-concepts` concepts)
   and the judge-free logit score over every block × strength (`--logit-concepts`,
   `--logit-layers`, `--logit-questions` size it: one forward per prompt and cell).
5. Figures from the saved results into `--figures` (introspection_<figure>_<model>.html/png);
   `--redraw` only redraws them and reprints the table from saved results.

Everything is written under results/introspection/<model>/ as run stores and tables: a rerun
skips finished work. Small models may show no introspection at all; the table prints what was
measured (net ≈ 0 with its interval is a result, not a failure).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

import interp
from interp.introspection.concepts import ConceptVectors, extract_concepts
from interp.introspection.figures import FILES, draw_all
from interp.introspection.grading import RuleGrader, grade_trials
from interp.introspection.metrics import save_metrics
from interp.introspection.trials import FRACTIONS, STRENGTHS, run_trials, trial_cells
from interp.introspection.words import word_list
from interp.io import inside

VARIANTS = ("thoughts_text", "prefill", "intent", "yes_no", "logit")
OTHER_SCALES = ("unit_norm", "resid_norm")
DEFAULT_STRENGTHS = ",".join(f"{s:g}" for s in STRENGTHS)
DEFAULT_FRACTIONS = ",".join(f"{f:g}" for f in FRACTIONS)


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def vectors(lm: interp.Model, path: Path, words: tuple[str, ...] | None) -> ConceptVectors:
    """The saved vectors when they were made on this model with these words, else new ones."""
    if path.is_file():
        saved = ConceptVectors.load(path)
        if saved.meta.fingerprint == lm.fingerprint() and (
            words is None or set(words) <= set(saved.words)
        ):
            return saved
    made = extract_concepts(lm, words)
    made.save(path)
    return made


def detection(
    lm: interp.Model,
    concepts: ConceptVectors,
    out: Path,
    n_concepts: int,
    fractions: list[float],
    strengths: list[float],
    other_scales: int,
    max_new_tokens: int,
    batch_size: int,
) -> pd.DataFrame:
    """Run (resumably) and grade the detection grid; writes graded.jsonl/csv and the metrics."""
    words = list(concepts.words[:n_concepts])
    cells = trial_cells(lm, concepts, words, fractions=fractions, strengths=strengths)
    if other_scales:
        cells += trial_cells(
            lm,
            concepts,
            words[:other_scales],
            fractions=fractions,
            strengths=strengths,
            scales=OTHER_SCALES,
        )
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "temperature": 1.0, "seed": 0}
    print(f"detection: {len(cells)} trials ({max_new_tokens} new tokens each)")
    records = run_trials(lm, cells, out / "trials.jsonl", batch_size=batch_size, **settings)
    manifest = {"model": lm.name, **settings, "keys": [r["key"] for r in records]}
    (out / "run.json").write_text(json.dumps(manifest, indent=1) + "\n")  # as `inject run`
    frame = grade_trials(records, RuleGrader())
    frame.to_json(out / FILES["graded"], orient="records", lines=True, force_ascii=False)
    frame.to_csv(out / "graded.csv", index=False)
    save_metrics(frame, out)
    return frame


def thoughts_text(lm: interp.Model, concepts: ConceptVectors, out: Path, **grid: Any) -> None:
    from interp.introspection import thoughts_text as tt

    cells = tt.thoughts_text_cells(lm, concepts, n_pairs=grid["n_pairs"], **_grid(grid))
    print(f"thoughts vs text: {len(cells)} trials")
    records = tt.run_thoughts_text(
        lm, cells, out / "thoughts_text.jsonl", batch_size=grid["batch_size"]
    )
    tt.summarize_thoughts_text(records).to_csv(out / "thoughts_text.csv", index=False)


def prefill(lm: interp.Model, concepts: ConceptVectors, out: Path, **grid: Any) -> None:
    from interp.introspection import prefill as pf

    cells = pf.prefill_cells(lm, concepts, n_pairs=grid["n_pairs"], **_grid(grid))
    print(f"prefill intention: {len(cells)} trials")
    records = pf.run_prefill(lm, cells, out / "prefill.jsonl", batch_size=grid["batch_size"])
    pf.summarize_prefill(records).to_csv(out / "prefill.csv", index=False)


def intent(lm: interp.Model, concepts: ConceptVectors, out: Path, **grid: Any) -> None:
    from interp.introspection import intent as it

    controls = vectors(lm, out / "control_words.safetensors", word_list("control_words"))
    records = it.run_intent(lm, concepts, controls, out / "intent.jsonl", n_pairs=grid["n_pairs"])
    print(f"intentional control: {len(records)} prompts")
    it.summarize_intent(records).to_csv(out / FILES["intent"], index=False)


def yes_no(lm: interp.Model, concepts: ConceptVectors, out: Path, **grid: Any) -> None:
    from interp.introspection import yes_no as yn

    words = list(concepts.words[: grid["variant_concepts"]])
    cells = yn.no_question_cells(lm, concepts, words, **_grid(grid))
    print(f"no-questions under injection: {len(cells)} trials")
    records = yn.run_no_questions(
        lm, cells, out / "no_questions.jsonl", batch_size=grid["batch_size"]
    )
    yn.summarize_no_questions(records).to_csv(out / "no_questions.csv", index=False)


def logit(lm: interp.Model, concepts: ConceptVectors, out: Path, **grid: Any) -> None:
    from interp.introspection import yes_no as yn

    words = list(concepts.words[: grid["logit_concepts"]])
    questions = list(word_list("no_questions")[: grid["logit_questions"]])
    every = grid["logit_layers"] == "all"  # one forward per trial affords every block
    fractions = yn.all_fractions(lm) if every else grid["fractions"]
    cells = yn.logit_cells(
        lm, concepts, words, questions, fractions=fractions, strengths=grid["strengths"]
    )
    print(
        f"logit score: {len(cells)} forwards ({len(words)} concepts × {len(fractions)} blocks × "
        f"{len(grid['strengths'])} strengths × {1 + len(questions)} prompts)"
    )
    records = yn.run_logit_score(lm, cells, out / "logit.jsonl", batch_size=grid["batch_size"])
    yn.summarize_logit_score(records).to_csv(out / FILES["logit"], index=False)


def _grid(grid: dict[str, Any]) -> dict[str, Any]:
    return {"fractions": grid["fractions"], "strengths": grid["strengths"]}


RUNNERS: dict[str, Callable[..., None]] = {
    "thoughts_text": thoughts_text,
    "prefill": prefill,
    "intent": intent,
    "yes_no": yes_no,
    "logit": logit,
}


def _best(table: pd.DataFrame, column: str, ascending: bool = False) -> pd.DataFrame:
    rows = table.dropna(subset=[column])
    return rows.sort_values(column, ascending=ascending).head(1)


def _show(title: str, table: pd.DataFrame, columns: list[str]) -> str:
    shown = table[[c for c in columns if c in table]]
    return f"\n{title}\n{shown.round(3).to_string(index=False)}"


def results_table(out: Path) -> str:
    """The short table of the saved results (detection summary and each variant's headline)."""
    parts = []
    summary = out / "summary.csv"
    if summary.is_file():
        table = pd.read_csv(summary)
        parts.append(_show("detection (rule grader; 95% bootstrap CIs)", table, list(table)))
    cell = ["scale", "fraction", "layer", "strength"]
    path = out / "thoughts_text.csv"
    if path.is_file():
        table = pd.read_csv(path)
        injected = table[table["trial"] == "injected"]
        rows = pd.concat([table[table["trial"] == "control"], _best(injected, "success")])
        columns = ["trial", *cell, "n", "thought", "transcription", "success"]
        parts.append(_show("thoughts vs text: control and best cell by success", rows, columns))
    path = out / "prefill.csv"
    if path.is_file():
        table = pd.read_csv(path)
        best = _best(table[table["condition"] == "prefilled"], "apology", ascending=True)
        same = table[table["condition"] == "random"]
        if not best.empty:
            at = best.iloc[0]
            same = same[(same["layer"] == at["layer"]) & (same["strength"] == at["strength"])]
        rows = pd.concat([table[table["condition"] == "none"], best, same])
        columns = ["condition", *cell, "n", "apology", "apology_low", "apology_high"]
        parts.append(_show("prefill: apology rate (lowest prefilled cell)", rows, columns))
    path = out / FILES["intent"]
    if path.is_file():
        table = pd.read_csv(path)
        late = table[table["layer"] >= table["layer"].median()]
        means = late[[c for c in ("think", "dont", "gap", "baseline") if c in late]].mean()
        parts.append(
            "\nintentional control, mean cosine over the later half of blocks: "
            + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
        )
    path = out / "no_questions.csv"
    if path.is_file():
        table = pd.read_csv(path)
        injected = table[table["trial"] == "injected"]
        rows = pd.concat([table[table["trial"] == "control"], _best(injected, "yes_shift")])
        columns = ["trial", *cell, "n", "yes", "yes_shift", "yes_shift_low", "yes_shift_high"]
        parts.append(_show("no-questions: yes rate, largest shift under injection", rows, columns))
    path = out / FILES["logit"]
    if path.is_file():
        table = pd.read_csv(path)
        parts.append(
            f"\nlogit score over {len(table)} cells: mean {table['score'].mean():+.3f}, "
            f"{(table['score'] > 0).mean():.0%} of cells above 0"
        )
        rows = pd.concat([_best(table, "score"), _best(table, "score", ascending=True)])
        columns = [*cell, "detection_shift", "no_shift", "score", "score_low", "score_high"]
        parts.append(_show("logit score: highest and lowest cell", rows, columns))
    return "\n".join(parts)


def main(
    model: Annotated[str, typer.Option(help="alias, HF dir or Hub id")] = interp.DEFAULT_MODEL,
    concepts: Annotated[int, typer.Option(min=1, help="concepts in the detection grid")] = 50,
    strengths: Annotated[str, typer.Option(help="injection strengths")] = DEFAULT_STRENGTHS,
    fractions: Annotated[
        str, typer.Option(help="injection layers (fractions of depth)")
    ] = DEFAULT_FRACTIONS,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="detection reply length")] = 40,
    other_scales: Annotated[
        int, typer.Option(min=0, help="also run unit_norm and resid_norm on this many concepts")
    ] = 0,
    variants: Annotated[
        str, typer.Option(help=f"variants to run ({','.join(VARIANTS)}), or none")
    ] = ",".join(VARIANTS),
    n_pairs: Annotated[
        int, typer.Option(min=1, help="(sentence, word) pairs of thoughts/prefill/intent")
    ] = 50,
    variant_concepts: Annotated[int, typer.Option(min=1, help="concepts of the no-questions")] = 10,
    logit_concepts: Annotated[int, typer.Option(min=1, help="concepts of the logit score")] = 10,
    logit_layers: Annotated[
        str, typer.Option(help="logit-score blocks: all (every block) or grid (--fractions)")
    ] = "all",
    logit_questions: Annotated[
        int, typer.Option(min=1, help="no-questions of the logit score (of 20)")
    ] = 20,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    results: Annotated[Path, typer.Option(help="where results are written")] = Path("results"),
    figures: Annotated[Path, typer.Option(help="where figures are written")] = Path("figures"),
    redraw: Annotated[
        bool, typer.Option(help="only redraw the figures from saved results")
    ] = False,
) -> None:
    name = Path(model).name
    out = inside(results, "introspection", name)
    chosen = [v.strip() for v in variants.split(",") if v.strip() and v.strip() != "none"]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise typer.BadParameter(f"unknown variants {unknown}; use {', '.join(VARIANTS)} or none")
    if logit_layers not in ("all", "grid"):
        raise typer.BadParameter(f"--logit-layers {logit_layers!r}: use all or grid")
    if not redraw:
        out.mkdir(parents=True, exist_ok=True)
        lm = interp.load_model(model)
        made = vectors(lm, out / "concepts.safetensors", word_list("concepts"))
        grid: dict[str, Any] = {
            "fractions": numbers(fractions),
            "strengths": numbers(strengths),
            "n_pairs": n_pairs,
            "variant_concepts": variant_concepts,
            "logit_concepts": logit_concepts,
            "logit_layers": logit_layers,
            "logit_questions": logit_questions,
            "batch_size": batch_size,
        }
        detection(
            lm,
            made,
            out,
            concepts,
            grid["fractions"],
            grid["strengths"],
            other_scales,
            max_new_tokens,
            batch_size,
        )
        for variant in chosen:
            RUNNERS[variant](lm, made, out, **grid)
    files = draw_all(out, figures, suffix=f"_{name}", model=name)
    table = results_table(out)
    (out / "summary.md").write_text(f"# Introspection results: {name}\n```{table}\n```\n")
    print(table)
    print("\nfigures:", ", ".join(str(f) for f in files))


if __name__ == "__main__":
    typer.run(main)
