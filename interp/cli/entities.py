"""`interp entities label|score|steer|figures`: the entity-recognition study (Ferrando et al.
2025) from the shell.

Every stage reads and writes one results directory (--out), laid out as
`interp.entities.run` describes: `label` writes labels.jsonl / labels.csv, `score` writes
entities.csv, layers.csv, latents.csv, tokenization.json and chosen.json, `steer` writes the
steering tables, and `figures` draws from those files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL

if TYPE_CHECKING:  # nothing heavy at import time: `interp --help` stays fast
    from interp.entities.data import EntitySet
    from interp.saes.load import LoadedSAE

ENTITIES_HELP = (
    "Entity recognition (Ferrando et al. 2025): label entities known or unknown from the "
    "model's own answers, score SAE latents and directions that separate them (held out, "
    "against a tokenization-only baseline), steer with the chosen latents, and draw the "
    "figures. Every stage reads and writes one results directory (-o).\n\n"
    "Order: label → score → steer → figures."
)
entities_app = typer.Typer(no_args_is_help=True, help=ENTITIES_HELP)
app.add_typer(entities_app, name="entities")

Out = Annotated[Path, typer.Option("--out", "-o", help="results directory of the study")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="alias, HF dir or Hub id")]
EntitiesOpt = Annotated[
    Path | None,
    typer.Option("--entities", help="entity file (default: the shipped entities.json)"),
]
BatchOpt = Annotated[int, typer.Option(min=1, help="prompts per forward pass")]


def _echo(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def parse_types(text: str | None) -> list[str] | None:
    """Comma-separated entity types; None when not given (all types)."""
    if text is None:
        return None
    types = [t.strip() for t in text.split(",") if t.strip()]
    if not types:
        raise ValueError(f"--types {text!r} names no type; give e.g. --types city,person")
    return types


def parse_alphas(text: str) -> list[float]:
    """Comma-separated positive steering strengths."""
    try:
        alphas = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--alphas {text!r} is not a comma-separated list of numbers, e.g. 0.5,1,2,4"
        ) from None
    if not alphas:
        raise ValueError("--alphas is empty; give e.g. --alphas 0.5,1,2,4")
    bad = [a for a in alphas if not a > 0]
    if bad:
        raise ValueError(
            f"--alphas {text!r}: every α must be > 0 (α = 0 is always run as the unsteered "
            f"baseline), got {', '.join(f'{a:g}' for a in bad)}"
        )
    return alphas


def load_data(
    path: Path | None, types: list[str] | None = None, per_type: int | None = None
) -> EntitySet:
    from interp.entities.data import load_entities

    return load_entities(path).select(types, per_type)


def _out(out: Path, make: bool = False) -> Path:
    """--out checked (not a file); made only when `make` (the first stage, `label`)."""
    from interp.io import output_dir

    root = output_dir(out, "--out")
    if make:
        root.mkdir(parents=True, exist_ok=True)
    return root


def default_saes(model: str) -> list[str]:
    """The SAEs shipped for `model` (its alias, or the last part of its path)."""
    from interp.saes.load import shipped_saes

    for alias in dict.fromkeys((model, Path(model).name)):
        names = shipped_saes(alias)
        if names:
            return names
    shipped = ", ".join(shipped_saes()) or "none yet"
    raise ValueError(
        f"no SAEs are shipped for model {model!r} (shipped: {shipped}); pass --sae DIR, a "
        "shipped name or release:sae_id (repeat --sae for several blocks)"
    )


def load_saes(specs: list[str]) -> list[LoadedSAE]:
    from interp.saes.load import load_sae

    saes = [load_sae(spec) for spec in specs]
    blocks: dict[int, str] = {}
    for sae, spec in zip(saes, specs, strict=True):
        if sae.layer in blocks:
            raise ValueError(
                f"--sae {blocks[sae.layer]} and --sae {spec} both read block {sae.layer}; "
                "give one SAE per block"
            )
        blocks[sae.layer] = spec
    return saes


@entities_app.command("label")
def label_cmd(
    out: Out,
    model: ModelOpt = DEFAULT_MODEL,
    entities: EntitiesOpt = None,
    samples: Annotated[int, typer.Option(min=1, help="sampled answers per question")] = 5,
    types: Annotated[
        str | None, typer.Option(help="entity types, comma-separated (default: all)")
    ] = None,
    per_type: Annotated[
        int | None,
        typer.Option(min=1, help="at most N real and N invented entities of each type"),
    ] = None,
    batch_size: BatchOpt = 32,
) -> None:
    """Ask the model every attribute question and label each entity known or unknown.

    Writes OUT/labels.jsonl (every answer; a rerun asks only what is missing).

    Writes OUT/labels.csv (one row per entity: its label and its correct attributes).
    """
    with user_errors():
        from interp.entities import run
        from interp.models import load_model

        data = load_data(entities, parse_types(types), per_type)  # checked before the model
        root = _out(out, make=True)
        lm = load_model(model)
        table = run.label(lm, data, root, samples=samples, batch_size=batch_size)
    counts = table["label"].value_counts()
    shown = ", ".join(f"{n} {label}" for label, n in counts.items())
    _echo(f"{len(table)} entities labelled: {shown}\nlabels: {root / 'labels.csv'}")


@entities_app.command("score")
def score_cmd(
    out: Out,
    model: ModelOpt = DEFAULT_MODEL,
    sae: Annotated[
        list[str] | None,
        typer.Option(
            "--sae",
            help="SAE: a directory, a shipped name or release:sae_id (repeat; default: every "
            "SAE shipped for the model)",
        ),
    ] = None,
    entities: EntitiesOpt = None,
    top: Annotated[int, typer.Option(min=1, help="top latents kept per SAE, kind, position")] = (
        10
    ),
) -> None:
    """Score SAE latents and difference-of-means directions on the labelled entities.

    Writes entities.csv, layers.csv, latents.csv, tokenization.json and chosen.json in OUT.

    chosen.json names the known and unknown latents (and their SAE) that `steer` uses.
    """
    with user_errors():
        from interp.entities import run
        from interp.models import load_model

        root = _out(out)
        labels = root / "labels.csv"
        if not labels.is_file():
            raise FileNotFoundError(
                f"no labels at {labels}: run `interp entities label --out {root}` first"
            )
        data = load_data(entities)
        saes = load_saes(list(sae) if sae else default_saes(model))  # before the model
        lm = load_model(model)
        chosen = run.score(lm, data, saes, root, top=top)
    lines = [
        f"{kind} latent {c['latent']} at block {c['layer']} ({c['sae']}): separation "
        f"{c['separation']:.2f}, held-out AUROC {c['auroc']:.2f}"
        for kind, c in chosen.items()
    ]
    _echo("\n".join([*lines, f"results: {root}"]))


@entities_app.command("steer")
def steer_cmd(
    out: Out,
    model: ModelOpt = DEFAULT_MODEL,
    sae: Annotated[
        list[str] | None,
        typer.Option(
            "--sae",
            help="SAE of a chosen latent (repeat; default: the SAEs OUT/chosen.json names)",
        ),
    ] = None,
    entities: EntitiesOpt = None,
    alphas: Annotated[
        str, typer.Option(help="steering strengths, × the mean residual norm at the block")
    ] = "0.5,1,2,4",
    per_group: Annotated[
        int, typer.Option(min=1, help="held-out known, unknown and invented entities each")
    ] = 24,
    random: Annotated[
        int, typer.Option("--random", min=0, help="random zero-separation latents (baseline)")
    ] = 10,
    attention_alpha: Annotated[float, typer.Option(help="α of the attention-head analysis")] = 1.0,
    batch_size: BatchOpt = 32,
) -> None:
    """Steer with the chosen latents against random latents and orthogonalization.

    Writes OUT/steering.jsonl (a run store: a rerun generates only what is missing).

    Tables: steering.csv, steering_summary.csv, sure.csv, attention.csv, steering_meta.json.
    """
    with user_errors():
        from interp.entities import run
        from interp.models import load_model

        grid = parse_alphas(alphas)
        root = _out(out)
        specs = list(sae) if sae else run.chosen_saes(root)
        data = load_data(entities)
        loaded = load_saes(specs)
        lm = load_model(model)
        run.steer(
            lm,
            data,
            loaded,
            root,
            alphas=grid,
            per_group=per_group,
            n_random=random,
            attention_alpha=attention_alpha,
            batch_size=batch_size,
        )
    import pandas as pd

    summary = pd.read_csv(root / "steering_summary.csv")
    keep = ["group", "condition", "alpha", "n", "refusal", "hallucination", "correct"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        _echo(summary[[c for c in keep if c in summary]].round(2).to_string(index=False))
    _echo(f"results: {root}")


@entities_app.command("figures")
def figures_cmd(
    results: Annotated[
        Path, typer.Option("--results", "-r", help="results directory of the study")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="where figures go (default: RESULTS/figures)"),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(help="model label in the file names (default: the results directory name)"),
    ] = None,
    formats: Annotated[str, typer.Option(help="html, png, svg, pdf (comma-separated)")] = (
        "html,png"
    ),
) -> None:
    """Draw the figures from the saved results (entities_<figure>_<label>.html/png).

    Each figure whose files exist: separation, top_latents, steering, sure and attention.
    """
    with user_errors():
        from interp.entities.figures import draw_all
        from interp.io import output_dir

        if not results.is_dir():
            raise FileNotFoundError(
                f"no results directory at {results}: run `interp entities label --out "
                f"{results}`, then `score` and `steer`, first"
            )
        target = output_dir(out or results / "figures", "--out")
        chosen = [f.strip() for f in formats.split(",") if f.strip()]
        name = label or results.resolve().name
        files = draw_all(results, target, name, chosen)
    _echo("figures: " + ", ".join(str(p) for p in files))
