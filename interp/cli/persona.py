"""`interp persona extract|steer|monitor|screen`: the Persona Vectors pipeline from the shell.

Every command writes into one output directory per (model, trait) and resumes: rollouts,
generations and judge scores are run stores, so a rerun skips finished work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from interp.cli.common import app, console, user_errors

if TYPE_CHECKING:  # the CLI imports nothing heavy at module level (`interp --help` stays fast)
    from interp.ops import ScaleMode

PERSONA_HELP = (
    "Persona vectors (Chen et al. 2025): extract a trait's vectors from judged contrastive "
    "rollouts, choose a layer and coefficient by steering, monitor prompt-induced shifts and "
    "screen training data by projection difference.\n\n"
    "TRAIT is a built-in trait (evil, sycophantic, hallucinating, optimistic, humorous, "
    "impolite, apathetic) or a spec file (format: README, 'Trait specs'). --judge classifier "
    "(default) trains an offline classifier on the rollouts; api:MODEL reads "
    "INTERP_JUDGE_BASE_URL / INTERP_JUDGE_API_KEY / INTERP_JUDGE_MODEL."
)
persona_app = typer.Typer(no_args_is_help=True, help=PERSONA_HELP)
app.add_typer(persona_app, name="persona")

Trait = Annotated[str, typer.Argument(help="built-in trait name or spec file")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="alias, HF dir or Hub id")]
Out = Annotated[Path, typer.Option("--out", "-o", help="output directory for this trait")]
JudgeOpt = Annotated[
    str, typer.Option(help="trait judge: classifier (offline), api:MODEL or local:ALIAS")
]


def _echo(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def _trait_judge(spec: str, out: Path) -> Any:
    """The trait judge a --judge spec names; "classifier" loads the one `extract` trained."""
    if spec == "classifier":
        from interp.eval.judges.classifier import ClassifierJudge

        path = out / "classifier"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: run `interp persona extract` into {out} first (it "
                "trains the classifier judge), or pass --judge api:MODEL / local:ALIAS"
            )
        return ClassifierJudge.load(path)
    from interp.eval.judges.registry import make_judge

    return make_judge(spec)


def _vector(out: Path, trait: str, vector: Path | None, model: str) -> Any:
    """--vector, else the one `extract` wrote into `out`, else the vector shipped for `model`."""
    from interp.vectors import DirectionSet

    path = vector or out / "vectors" / f"{trait}_response_mean.safetensors"
    if path.exists():
        return DirectionSet.load(path)
    if vector is None:
        from interp.persona.shipped import load_shipped, shipped_path

        if shipped_path(trait, model).exists():
            _echo(
                f"note: {path} does not exist; using the vector shipped with interp "
                f"({shipped_path(trait, model).name} for {Path(model).name})"
            )
            return load_shipped(trait, model)
    raise FileNotFoundError(
        f"no vector at {path}: run `interp persona extract {trait} -o {out}` first, or pass "
        "--vector FILE"
    )


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{flag} {text!r} is not a comma-separated list of whole numbers, e.g. 0,5,10"
        ) from None
    if not values or min(values) < 0:
        raise ValueError(f"{flag} {text!r} needs whole numbers >= 0, e.g. 0,5,10")
    return values


@persona_app.command("extract")
def extract_cmd(
    trait: Trait,
    out: Out,
    model: ModelOpt = "smollm2-135m-instruct",
    judge: JudgeOpt = "classifier",
    samples: Annotated[int, typer.Option(help="rollouts per question and instruction")] = 1,
    questions: Annotated[int, typer.Option(help="extraction questions used (0: all)")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="reply length cap")] = 96,
    threshold: Annotated[float, typer.Option(help="trait filter threshold")] = 50.0,
    coherence_min: Annotated[float, typer.Option(help="coherence filter")] = 50.0,
    min_pairs: Annotated[int, typer.Option(help="fewest kept pairs to extract from")] = 5,
) -> None:
    """Rollouts, judging, paired filter, and per-layer vectors (three reductions)."""
    with user_errors():
        from interp.models import load_model
        from interp.persona.extract import extract
        from interp.persona.spec import load_spec

        spec = load_spec(trait)
        lm = load_model(model)
        trait_judge = None
        if judge != "classifier":
            from interp.eval.judges.registry import make_judge

            trait_judge = make_judge(judge)
        result = extract(
            lm,
            spec,
            out,
            judge=trait_judge,
            samples=samples,
            questions=questions or None,
            max_new_tokens=max_new_tokens,
            threshold=threshold,
            coherence_min=coherence_min,
            min_pairs=min_pairs,
        )
    _echo(f"{spec.name}: {result.counts.describe()}")
    for rate in result.follow:
        _echo(
            f"  instruction {rate.instruction}: positive side judged >= {threshold:g} on "
            f"{rate.followed}/{rate.total}"
        )
    if result.classifier:
        _echo(f"  classifier judge, held out: {json.dumps(result.classifier)}")
    _echo(f"vectors: {out / 'vectors'}")


@persona_app.command("steer")
def steer_cmd(
    trait: Trait,
    out: Out,
    model: ModelOpt = "smollm2-135m-instruct",
    judge: JudgeOpt = "classifier",
    vector: Annotated[Path | None, typer.Option(help="vector file (default: extracted)")] = None,
    layers: Annotated[str, typer.Option(help="blocks to sweep, e.g. 8,12,16")] = "8,12,16,20",
    coef: Annotated[
        list[float] | None, typer.Option(help="coefficient (repeat); negative suppresses")
    ] = None,
    scale: Annotated[str, typer.Option(help="resid_norm (default), unit or raw")] = "resid_norm",
    questions: Annotated[int, typer.Option(help="extraction questions used (0: all)")] = 10,
    samples: Annotated[int, typer.Option(help="generations per question and setting")] = 1,
    gate: Annotated[float, typer.Option(help="mean coherence the choice must keep")] = 75.0,
    suppress: Annotated[bool, typer.Option(help="choose the largest drop instead")] = False,
) -> None:
    """Layer × coefficient sweep, the choice under a coherence gate, and the figure."""
    with user_errors():
        from interp.eval.coherence import CoherenceJudge
        from interp.figures.style import save_figure
        from interp.models import load_model
        from interp.persona import select as ps
        from interp.persona.figures import steering
        from interp.persona.spec import load_spec

        if scale not in ("raw", "unit", "resid_norm"):
            raise ValueError(f"unknown scale {scale!r}; use resid_norm, unit or raw")
        mode = cast("ScaleMode", scale)
        spec = load_spec(trait)
        lm = load_model(model)
        vectors = _vector(out, spec.name, vector, model)
        vectors.check(lm)
        if mode == "resid_norm":  # measured once, as the sweep would: the side cost needs it too
            asked = list(spec.extraction_questions)[: questions or None]
            vectors = ps.with_resid_norm(lm, vectors, asked)
        frame = ps.steering_sweep(
            lm,
            spec,
            vectors,
            out,
            _trait_judge(judge, out),
            CoherenceJudge(lm),
            layers=lm.layers(layers),
            coefs=coef or [-1.0, -0.5, 0.5, 1.0],
            questions=questions or None,
            samples=samples,
            scale=mode,
        )
        table = ps.summarize(frame)
        direction: ps.Direction = "suppress" if suppress else "elicit"
        choice = ps.choose(table, gate, direction, mode)
        # the side cost of the choice, else of the largest effect at any coherence (marked)
        shown = choice or ps.choose(table, 0.0, direction, mode)
        cost = ps.side_cost_of(lm, vectors, shown) if shown is not None else None
        files = save_figure(steering(out / "steering_scores.jsonl", gate), out, "steering")
    _echo(table.round(2).to_string(index=False))
    _echo(f"chosen: {ps.describe(choice, gate)}")
    if shown is not None and cost is not None:
        which = "chosen setting" if choice is not None else "largest effect (failed the gate)"
        _echo(
            f"side cost of the {which}, block {shown.layer} × {shown.coef:g}, on neutral text: "
            f"{cost}"
        )
    _echo(f"scores: {out / 'steering_scores.jsonl'}\nfigure: {', '.join(map(str, files))}")


@persona_app.command("monitor")
def monitor_cmd(
    trait: Trait,
    out: Out,
    layer: Annotated[int, typer.Option(help="block whose last prompt token is projected")],
    model: ModelOpt = "smollm2-135m-instruct",
    judge: JudgeOpt = "classifier",
    vector: Annotated[Path | None, typer.Option(help="vector file (default: extracted)")] = None,
    questions: Annotated[int, typer.Option(help="evaluation questions used (0: all)")] = 10,
    shots: Annotated[str, typer.Option(help="many-shot example counts")] = "0,5,10,15,20",
) -> None:
    """Projection of the last prompt token vs the trait score of the reply that follows."""
    with user_errors():
        from interp.models import load_model
        from interp.persona.monitor import correlations, run_monitor
        from interp.persona.spec import load_spec

        counts = _int_list(shots, "--shots")  # before any work
        spec = load_spec(trait)
        lm = load_model(model)
        vectors = _vector(out, spec.name, vector, model)
        vectors.check(lm)
        frame = run_monitor(
            lm,
            spec,
            vectors,
            layer,
            out,
            _trait_judge(judge, out),
            questions=questions or None,
            shots=counts,
        )
        table = correlations(frame)
        table.to_csv(out / "monitor_correlations.csv", index=False)
    _echo(table.round(3).to_string(index=False))


@persona_app.command("screen")
def screen_cmd(
    data: Annotated[list[Path], typer.Argument(help="JSONL datasets of {prompt, response}")],
    out: Out,
    trait: Annotated[str, typer.Option(help="trait whose vector is used")],
    layer: Annotated[int, typer.Option(help="block of the projection")],
    model: ModelOpt = "smollm2-135m-instruct",
    vector: Annotated[Path | None, typer.Option(help="vector file (default: extracted)")] = None,
    top: Annotated[int, typer.Option(help="samples shown per dataset")] = 5,
) -> None:
    """Projection difference ΔP per sample and per dataset, ranked."""
    with user_errors():
        from interp.io import read_jsonl
        from interp.models import load_model
        from interp.persona.screen import projection_difference, rank

        lm = load_model(model)
        vectors = _vector(out, trait, vector, model)
        vectors.check(lm)
        frames = []
        for path in data:
            frame = projection_difference(lm, read_jsonl(path), vectors, layer, out, name=path.stem)
            frames.append(frame)
    for frame in frames:
        name = frame["dataset"].iloc[0]
        _echo(f"{name}: dataset ΔP {frame['delta_p'].mean():.3f} over {len(frame)} samples")
        _echo(rank(frame)[["id", "delta_p"]].head(top).round(3).to_string(index=False))
    if len(frames) == 2:  # how well sample-level ΔP tells the first dataset from the second
        from interp.persona.screen import separation

        first, second = (f["dataset"].iloc[0] for f in frames)
        _echo(f"AUROC of ΔP, {first} vs {second} (95% CI): {separation(frames[0], frames[1])}")


NEW_TRAIT_HELP = (
    "Draft a trait spec with a generator model and write it to FILE.json.\n\n"
    "The generator is any OpenAI-compatible chat server, read from INTERP_GENERATOR_BASE_URL "
    "(fallback OPENAI_BASE_URL), INTERP_GENERATOR_API_KEY (fallback OPENAI_API_KEY) and "
    "INTERP_GENERATOR_MODEL (or --model; default: the server's only model). The reply is "
    "checked like any spec; a failing reply is sent back with the error (--attempts requests "
    "in all), and the last reply is saved next to FILE.json when none passes.\n\n"
    "Point it at a strong model: the embedded models (135M/270M) are too small to draft "
    "specs. Read the draft before using it."
)


@persona_app.command("new-trait", help=NEW_TRAIT_HELP)
def new_trait_cmd(
    name: Annotated[str, typer.Argument(help="identifier of the new trait (a-z, 0-9, '-')")],
    description: Annotated[
        str, typer.Option("--description", "-d", help="what the trait means, in a sentence")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="spec file to write (.json)")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="generator model (INTERP_GENERATOR_MODEL)")
    ] = None,
    attempts: Annotated[int, typer.Option(min=1, help="requests in all, corrections included")] = 2,
    force: Annotated[bool, typer.Option("--force", help="replace FILE.json if it exists")] = False,
) -> None:
    with user_errors():
        from interp.io import output_file
        from interp.persona.draft import draft_spec, write_spec

        out = output_file(out, "spec file")
        if out.suffix != ".json":
            raise ValueError(f"spec file {out} must end in .json")
        if out.exists() and not force:
            raise ValueError(f"{out} exists; pass --force to replace it")
        spec = draft_spec(
            name,
            description,
            model=model,
            attempts=attempts,
            raw_path=out.with_name(f"{out.stem}.draft.txt"),
        )
        write_spec(spec, out, force=True)
    _echo(
        f"{spec.name}: {len(spec.instructions)} instruction pairs, "
        f"{len(spec.extraction_questions)} + {len(spec.evaluation_questions)} questions, "
        f"{len(spec.monitor_prompts)} system prompts, {len(spec.many_shot)} many-shot examples"
    )
    _echo(f"wrote {out}; {spec.source}")
