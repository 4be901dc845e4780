"""`interp inject vectors|run|grade|figures`: concept injection (Lindsey 2025) from the shell.

Everything lives in one output directory:

- `concepts.safetensors`: the concept vectors (`vectors`);
- `trials.jsonl`: the detection trials, a run store (`run`; a rerun generates only what is
  missing) and `run.json`, the keys and settings of the latest `run` (what `grade` grades);
- `grades.jsonl`: a judge grader's verdicts, a run store; `graded.jsonl` / `graded.csv`: one
  row per trial with the four criteria; `metrics_*.csv` and `summary.csv` (`grade`);
- `figures/`: the figures (`figures`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL

if TYPE_CHECKING:  # nothing heavy at import time: `interp --help` stays fast
    from interp.introspection.concepts import ConceptVectors
    from interp.introspection.grading import Grader

INJECT_HELP = (
    "Concept injection and introspection (Lindsey 2025): extract concept vectors, run the "
    "injected-thought detection grid with control trials, grade the replies (rules or an LLM "
    "judge) and draw the figures. Every step reads and writes one output directory (-o) and "
    "resumes there.\n\n"
    "--grader judge needs --judge api[:MODEL] (reads INTERP_JUDGE_BASE_URL / "
    "INTERP_JUDGE_API_KEY / INTERP_JUDGE_MODEL, as `interp judge score`) or local:ALIAS."
)
inject_app = typer.Typer(no_args_is_help=True, help=INJECT_HELP)
app.add_typer(inject_app, name="inject")

VECTORS = "concepts.safetensors"
TRIALS = "trials.jsonl"
RUN = "run.json"
GRADES = "grades.jsonl"
GRADED = "graded.jsonl"

Out = Annotated[Path, typer.Option("--out", "-o", help="output directory of the experiment")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="alias, HF dir or Hub id")]
WordsOpt = Annotated[
    str | None,
    typer.Option(
        help="comma-separated words, or the name of a shipped list (concepts, control_words, "
        "category_verbs, …)"
    ),
]


def _echo(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def parse_words(text: str | None, flag: str = "--words", unique: bool = True) -> list[str] | None:
    """A shipped list by name, else comma-separated words; None when not given. With `unique`
    (concept words), a word given twice (case-insensitively) is refused; baseline words may
    repeat (the published baseline list does)."""
    if text is None:
        return None
    from interp.introspection.words import checked_words, list_names, word_list

    if text.strip() in list_names():
        words = list(word_list(text.strip()))
    else:
        words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise ValueError(f"{flag} {text!r} names no word; give e.g. {flag} Dust,Snow")
    return list(checked_words(words, flag, unique=unique))


def parse_numbers(text: str, flag: str) -> list[float]:
    """Comma-separated numbers (an empty list is returned as is; the caller says why not)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{flag} {text!r} is not a comma-separated list of numbers, e.g. 1,2,4,8"
        ) from None


def parse_fractions(text: str) -> list[float]:
    """Layer fractions, each in [0, 1] (checked here, before any model is loaded)."""
    fractions = parse_numbers(text, "--fractions")
    if not fractions:
        raise ValueError("the layer grid is empty; give e.g. --fractions 0.33,0.5,0.67,0.83")
    for fraction in fractions:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"layer fraction {fraction:g} is outside [0, 1]; give a share of the depth, "
                "e.g. 0.67 for two-thirds of the way through"
            )
    return fractions


def parse_strengths(text: str) -> list[float]:
    strengths = parse_numbers(text, "--strengths")
    if not strengths:
        raise ValueError("the strength grid is empty; give e.g. --strengths 1,2,4,8,16")
    return strengths


def parse_scales(text: str) -> list[str]:
    from interp.introspection.concepts import INJECTION_SCALES

    scales = [s.strip() for s in text.split(",") if s.strip()]
    if not scales:
        raise ValueError(f"--scales is empty; give one or more of {', '.join(INJECTION_SCALES)}")
    for scale in scales:
        if scale not in INJECTION_SCALES:
            raise ValueError(
                f"unknown injection scale {scale!r}; use one of {', '.join(INJECTION_SCALES)}"
            )
    return scales


def load_vectors(out: Path, vectors: Path | None) -> ConceptVectors:
    """--vectors, else OUT/concepts.safetensors, else an error that says how to make it."""
    from interp.introspection.concepts import ConceptVectors

    path = vectors or out / VECTORS
    if not path.is_file():
        raise FileNotFoundError(
            f"no concept vectors at {path}: run `interp inject vectors -o {out}` first, or pass "
            "--vectors FILE"
        )
    return ConceptVectors.load(path)


@inject_app.command("vectors")
def vectors_cmd(
    out: Out,
    model: ModelOpt = DEFAULT_MODEL,
    words: WordsOpt = None,
    baseline: Annotated[
        str | None, typer.Option(help="baseline words or list name (default: the 100 published)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Extract concept vectors into OUT/concepts.safetensors.

    Default: the 50 published concepts against the 100 published baseline words, at every
    block. Words already in that file for the same model and baseline are kept: --words adds
    to them.
    """
    with user_errors():
        from interp.introspection.concepts import ConceptVectors, extract_concepts
        from interp.io import inside, output_dir
        from interp.models import load_model
        from interp.vectors import data_hash

        output_dir(out, "--out")
        asked = parse_words(words)
        base = parse_words(baseline, "--baseline", unique=False)
        lm = load_model(model)
        path = inside(out, VECTORS)
        kept: list[str] = []
        if path.is_file():
            old = ConceptVectors.load(path)
            same_base = base is None or data_hash(base) == old.meta.data_hash
            if old.meta.fingerprint == lm.fingerprint() and same_base:
                kept = list(old.words)
        chosen = list(asked) if asked is not None else ([] if kept else None)
        if chosen is not None:
            lowered = {w.lower() for w in chosen}
            chosen = [w for w in kept if w.lower() not in lowered] + chosen
        made = extract_concepts(lm, chosen, base, batch_size=batch_size)
        made.save(path)
    extra = f" ({len(kept)} kept from the earlier file)" if kept else ""
    _echo(
        f"{len(made.words)} concept vectors{extra} × {len(made.layers)} blocks of "
        f"{made.meta.model}, baseline of {made.meta.extra.get('n_baseline')} words\n"
        f"vectors: {path}"
    )


@inject_app.command("run")
def run_cmd(
    out: Out,
    model: ModelOpt = DEFAULT_MODEL,
    vectors: Annotated[
        Path | None, typer.Option(help="concept vectors (default: OUT/concepts.safetensors)")
    ] = None,
    words: WordsOpt = None,
    fractions: Annotated[
        str, typer.Option(help="injection layers as fractions of the depth")
    ] = "0.33,0.5,0.67,0.83",
    strengths: Annotated[str, typer.Option(help="injection strengths")] = "1,2,4,8,16",
    scales: Annotated[str, typer.Option(help="raw, unit_norm and/or resid_norm")] = "raw",
    controls: Annotated[
        int | None,
        typer.Option(min=0, help="control trials per cell (default: one per word)"),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 100,
    temperature: Annotated[float, typer.Option(min=0.0)] = 1.0,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Run the detection trials (resumable) into OUT/trials.jsonl.

    The grid is scales × layer fractions × strengths × words, plus control trials (no
    injection; by default as many per cell as words, so half the trials are controls).

    Trials are stored in OUT/trials.jsonl as they finish, keyed by everything that produced
    them; running again generates only the missing ones.
    """
    with user_errors():
        from interp.introspection.trials import greedy_controls, run_trials, trial_cells
        from interp.io import inside, output_dir
        from interp.models import load_model
        from interp.runs.store import read_records

        output_dir(out, "--out")
        grid_fractions = parse_fractions(fractions)  # every check before the model loads
        grid_strengths = parse_strengths(strengths)
        grid_scales = parse_scales(scales)
        chosen = parse_words(words)
        concepts = load_vectors(out, vectors)
        for word in chosen or []:
            concepts.index(word)
        n_controls = len(chosen or concepts.words) if controls is None else controls
        if temperature == 0 and n_controls > 1:
            raise ValueError(greedy_controls(n_controls, "--controls"))
        lm = load_model(model)
        cells = trial_cells(
            lm,
            concepts,
            chosen,
            fractions=grid_fractions,
            strengths=grid_strengths,
            scales=grid_scales,
            controls_per_cell=controls,
        )
        store = inside(out, TRIALS)
        before = len(read_records(store))
        settings: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        records = run_trials(lm, cells, store, batch_size=batch_size, **settings)
        made = len(read_records(store)) - before
        manifest = {
            "model": model,
            "words": list(chosen or concepts.words),
            "fractions": grid_fractions,
            "strengths": grid_strengths,
            "scales": grid_scales,
            "controls_per_cell": controls,
            **settings,
            "keys": [r["key"] for r in records],
        }
        inside(out, RUN).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    injected = sum(r["config"]["trial"] == "injected" for r in records)
    _echo(
        f"{len(records)} trials ({injected} injected, {len(records) - injected} control); "
        f"{made} generated now, {len(records) - made} already stored\ntrials: {store}"
    )


def judge_configured(spec: str) -> None:
    """Raise unless the judge spec can grade: api needs a server, classifier cannot."""
    from interp.eval.judges.api import ENV
    from interp.eval.judges.registry import parse_spec

    kind, _ = parse_spec(spec)
    if kind == "classifier":
        raise ValueError(
            f"--judge {spec}: a classifier judge scores one trait and cannot answer the four "
            "YES/NO rubrics; use api[:MODEL] or local:ALIAS"
        )
    if kind == "api":
        names = (ENV.base_url, ENV.fallback_base_url, ENV.api_key, ENV.fallback_api_key)
        if not any(os.environ.get(name, "").strip() for name in names):
            raise ValueError(
                f"--judge {spec} is not configured: set {ENV.base_url} to the judge server "
                f"(e.g. http://127.0.0.1:8000/v1), or {ENV.api_key} for OpenAI's, and "
                f"{ENV.model} or --judge api:MODEL"
            )


def make_grader(
    grader: str, judge: str | None, device: str | None = None, batch_size: int = 16
) -> Grader:
    """The grader --grader / --judge name (checked before anything is loaded)."""
    if grader not in ("rule", "judge"):
        raise ValueError(f"unknown grader {grader!r}; use --grader rule or --grader judge")
    if grader == "rule":
        if judge is not None:
            raise ValueError("--judge is read only with --grader judge; drop it or add that")
        from interp.introspection.grading import RuleGrader

        return RuleGrader()
    if judge is None:
        raise ValueError(
            "--grader judge is not configured: give --judge api[:MODEL] (a judge server) or "
            "--judge local:ALIAS (a local model)"
        )
    judge_configured(judge)
    from interp.eval.judges.registry import make_judge
    from interp.introspection.grading import JudgeGrader

    return JudgeGrader(
        make_judge(judge, device=device, batch_size=batch_size), batch_size=batch_size
    )


def stored_trials(out: Path) -> list[dict[str, Any]]:
    """The trials of the latest `run` into OUT (all detection trials when run.json is absent)."""
    from interp.runs.store import read_records

    store = out / TRIALS
    records = [r for r in read_records(store) if r["config"].get("experiment") == "detection"]
    if not records:
        raise FileNotFoundError(
            f"no detection trials in {store}: run `interp inject run -o {out}` first"
        )
    manifest = out / RUN
    if manifest.is_file():
        keys = json.loads(manifest.read_text(encoding="utf-8"))["keys"]
        by_key = {r["key"]: r for r in records}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise ValueError(
                f"{manifest} lists {len(missing)} trials that {store} does not hold; rerun "
                f"`interp inject run -o {out}` with the same settings"
            )
        records = [by_key[k] for k in keys]
    return records


@inject_app.command("grade")
def grade_cmd(
    out: Out,
    grader: Annotated[str, typer.Option(help="rule (offline rules) or judge (needs --judge)")] = (
        "rule"
    ),
    judge: Annotated[
        str | None, typer.Option("--judge", "-j", help="api[:MODEL] | local:ALIAS_OR_PATH")
    ] = None,
    device: Annotated[str | None, typer.Option(help="device of a local judge")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
) -> None:
    """Grade the latest run's trials and write the metrics.

    Criteria: coherent, affirmative, identified, thinking. Writes OUT/graded.jsonl and
    graded.csv, metrics_cells/layers/concepts.csv and summary.csv, and prints the summary.

    A judge's verdicts are stored in OUT/grades.jsonl (a rerun asks only for missing ones).
    """
    from interp.cli.judge import _api_errors

    with user_errors(), _api_errors():
        from interp.introspection.grading import grade_trials
        from interp.introspection.metrics import save_metrics
        from interp.io import inside, output_dir

        output_dir(out, "--out")
        chosen = make_grader(grader, judge, device, batch_size)  # before reading trials
        records = stored_trials(out)
        frame = grade_trials(records, chosen, store=inside(out, GRADES))
        frame.to_json(inside(out, GRADED), orient="records", lines=True, force_ascii=False)
        frame.to_csv(inside(out, "graded.csv"), index=False)
        files = save_metrics(frame, out, seed=seed)
    import pandas as pd

    table = pd.read_csv(files["summary"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        _echo(table.drop(columns=["success_k", "false_positive_k"]).to_string(index=False))
    _echo(f"graded: {out / GRADED}\nmetrics: {', '.join(str(p) for p in files.values())}")


@inject_app.command("figures")
def figures_cmd(
    out: Out,
    figures: Annotated[
        Path | None, typer.Option(help="where figures go (default: OUT/figures)")
    ] = None,
    formats: Annotated[str, typer.Option(help="html, png, svg, pdf (comma-separated)")] = (
        "html,png"
    ),
    suffix: Annotated[str, typer.Option(help="added to every figure's name")] = "",
) -> None:
    """Draw the figures from the saved results in OUT.

    From the graded trials, and the intentional-control and logit-score tables when present:
    introspection_<figure><suffix>.html (+ static formats).
    """
    with user_errors():
        from interp.introspection.figures import draw_all
        from interp.io import output_dir

        target = output_dir(figures or out / "figures", "--figures")
        chosen = [f.strip() for f in formats.split(",") if f.strip()]
        files = draw_all(out, target, suffix, chosen)
    _echo("figures: " + ", ".join(str(p) for p in files))
