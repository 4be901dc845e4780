"""`interp judge score|agree|train-classifier`: score answers, compare judges, train one offline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interp.cli.common import app, console, user_errors

if TYPE_CHECKING:
    from interp.eval.judges.base import JudgeItem

JUDGE_HELP = (
    "Judge answers with an LLM (API or local) or an offline classifier, and compare judges.\n\n"
    "API judges read INTERP_JUDGE_BASE_URL (fallback OPENAI_BASE_URL; e.g. "
    "http://127.0.0.1:8000/v1 for a local vLLM or llama.cpp server), INTERP_JUDGE_API_KEY "
    "(fallback OPENAI_API_KEY; a local server needs none) and INTERP_JUDGE_MODEL (or "
    "--judge api:MODEL; default: the server's only model). The key is never written to "
    "results or logs."
)
judge_app = typer.Typer(no_args_is_help=True, help=JUDGE_HELP)
app.add_typer(judge_app, name="judge")


def _echo(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def read_items(path: Path) -> list[JudgeItem]:
    """Items from JSONL rows {question, answer, fields?}; errors name the row and the field."""
    from interp.eval.judges.base import JudgeItem
    from interp.io import read_jsonl

    items = []
    for number, row in enumerate(read_jsonl(path), start=1):
        where = f"{path} item {number}"
        for name in ("question", "answer"):
            if name not in row:
                raise ValueError(
                    f"{where}: missing field {name!r}; each line is "
                    '{"question": ..., "answer": ..., "fields": {...}?}'
                )
            if not isinstance(row[name], str):
                raise ValueError(
                    f"{where}: field {name!r} must be a string, got {row[name]!r} "
                    f"({type(row[name]).__name__})"
                )
        fields = row.get("fields", {})
        if not isinstance(fields, dict):
            raise ValueError(
                f"{where}: 'fields' must be an object of strings, got {type(fields).__name__}"
            )
        try:
            items.append(JudgeItem(row["question"], row["answer"], dict(fields)))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    return items


def _fills(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--fill {value!r} is not KEY=VALUE; write e.g. --fill trait=evil")
        out[key.strip()] = text
    return out


def _summary(scores: list[Any]) -> str:
    from collections import Counter

    values = [s.value for s in scores if s.value is not None]
    missing = Counter(s.no_score for s in scores if s.value is None)
    line = f"{len(scores)} items: {len(values)} scored"
    if values:
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        line += f", mean {sum(values) / len(values):.1f}, median {median:.1f}"
    if missing:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(missing.items()))
        line += f"; no score: {sum(missing.values())} ({reasons})"
    return line


@judge_app.command("score")
def judge_score(
    items_path: Annotated[
        Path, typer.Argument(help='JSONL of items: {"question", "answer", "fields"?}')
    ],
    judge: Annotated[
        str,
        typer.Option("--judge", "-j", help="api:MODEL | local:ALIAS_OR_PATH | classifier:PATH"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    rubric: Annotated[
        str | None,
        typer.Option(
            "--rubric",
            "-r",
            help="rubric JSON file or built-in name (trait, coherence, axbench-concept, "
            "axbench-instruction, axbench-fluency); a classifier needs none",
        ),
    ] = None,
    fill: Annotated[
        list[str] | None,
        typer.Option("--fill", help="fill a rubric slot for every item: KEY=VALUE (repeatable)"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[str | None, typer.Option(help="device of a local judge")] = None,
) -> None:
    """Score every item with one judge into OUT/scores.jsonl (resumable), then summarize.

    Scores are keyed by the judge's identity (backend, model, method, rubric) and the item, so
    running again into the same directory scores only what is missing, and another judge or
    rubric adds its own scores beside the old ones.

    An api: judge connects to INTERP_JUDGE_BASE_URL (or OPENAI_BASE_URL) with the key in
    INTERP_JUDGE_API_KEY (or OPENAI_API_KEY); api: without a model uses INTERP_JUDGE_MODEL.
    """
    from interp.eval.judges.registry import make_judge, parse_spec
    from interp.eval.judges.rubrics import resolve
    from interp.eval.judges.run import judge_all
    from interp.io import inside, output_dir

    with user_errors(), _api_errors():
        kind, _ = parse_spec(judge)  # fail before reading anything
        output_dir(out, "--out")
        values = _fills(fill)
        items = read_items(items_path)
        chosen = None
        if rubric is not None:
            chosen = resolve(rubric).fill(**values) if values else resolve(rubric)
            for number, item in enumerate(items, start=1):
                given = {*chosen.values, *item.fields, "question", "answer", "scale_max"}
                missing = [slot for slot in chosen.slots if slot not in given]
                if missing:
                    raise ValueError(
                        f"{items_path} item {number}: rubric {chosen.name!r} needs {missing}; "
                        "give them with --fill NAME=VALUE or a 'fields' object in each item"
                    )
        elif kind != "classifier":
            raise ValueError(
                f"judge {judge!r} needs a rubric: --rubric trait|coherence|FILE.json "
                "(only a classifier judge scores without one)"
            )
        elif values:
            raise ValueError("--fill fills rubric slots; give --rubric too")
        scorer = make_judge(judge, device=device, batch_size=batch_size)
        if chosen is None:  # a classifier reads no rubric; its scores are of its trait
            chosen = resolve("trait").fill(trait=scorer.trait)
        store = inside(out, "scores.jsonl")
        scores = judge_all(scorer, items, chosen, store, batch_size=batch_size)
        identity = scorer.identity(chosen)
    _echo(
        f"judge: {identity.backend}:{identity.model} ({identity.method}), rubric "
        f"{chosen.name}\n{_summary(scores)}\nscores: {store}"
    )


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """Turn an API judge's server errors (down, wrong key or model) into one line."""
    from interp.cli.common import debugging
    from interp.eval.judges.api import ApiJudgeError

    try:
        yield
    except ApiJudgeError as err:
        if debugging():
            raise
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@judge_app.command("agree")
def judge_agree(
    stores: Annotated[
        list[Path],
        typer.Argument(help="two or more score directories (or their scores.jsonl files)"),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="where to write the table and figure (default: first)"),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=100.0, help="score read as 'yes' for Cohen's kappa")
    ] = 50.0,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
) -> None:
    """Agreement of judges on shared items: Pearson, Spearman (95% CIs), kappa, no-score rates.

    Items are matched by digest. A store holding several judges counts as several judges.
    Writes agreement.json and the scatter figure judge_agreement.html (+ .png with a Chromium).
    """
    from interp.eval.agreement import agreement
    from interp.figures.judges import agreement_scatter
    from interp.figures.style import save_figure
    from interp.io import inside, output_dir

    with user_errors():
        if out is None:
            out = stores[0] if stores[0].is_dir() else stores[0].parent
        output_dir(out, "--out")
        result = agreement(stores, threshold=threshold, seed=seed)
        table = inside(out, "agreement.json")
        result.save(table)
        files = save_figure(agreement_scatter(stores, threshold), out, "judge_agreement")
    _echo(result.table())
    _echo(f"\ntable: {table}\nfigure: {', '.join(map(str, files))}")


@judge_app.command("train-classifier")
def judge_train(
    data: Annotated[
        Path,
        typer.Argument(
            help='JSONL of {"answer", "label", "question"?}: label 1 = shows the trait, 0 = not'
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="classifier directory to write")],
    trait: Annotated[str, typer.Option(help="the trait's name (recorded in the metadata)")],
    folds: Annotated[int, typer.Option(min=2, help="cross-fitting folds")] = 5,
    seed: int = 0,
) -> None:
    """Train the offline classifier judge on labelled answers; use it as classifier:OUT.

    When every row also has a "question", a question's answers stay in one cross-fitting fold
    (the held-out scores of paired contrastive data are then honest).
    """
    from interp.eval.judges.base import JudgeItem
    from interp.eval.judges.classifier import ClassifierJudge
    from interp.io import output_dir, read_jsonl

    with user_errors():
        output_dir(out, "--out")
        rows = read_jsonl(data)
        paired = all(isinstance(row.get("question"), str) for row in rows)
        positives: list[str | JudgeItem] = []
        negatives: list[str | JudgeItem] = []
        for number, row in enumerate(rows, start=1):
            answer, label = row.get("answer"), row.get("label")
            if not isinstance(answer, str):
                raise ValueError(f"{data} row {number}: 'answer' must be a string, got {answer!r}")
            if label not in (0, 1) or isinstance(label, float):
                raise ValueError(f"{data} row {number}: 'label' must be 0 or 1, got {label!r}")
            entry = JudgeItem(row["question"], answer) if paired else answer
            (positives if label else negatives).append(entry)
        clf = ClassifierJudge.train(positives, negatives, trait=trait, folds=folds, seed=seed)
        clf.save(out)
    m = clf.metrics
    grouped = f" in {m['groups']} question groups" if m["groups"] else ""
    _echo(
        f"{trait}: {m['n_positive']} positive, {m['n_negative']} negative{grouped}; held-out "
        f"({folds}-fold) accuracy {m['heldout_accuracy']:.3f}, AUROC {m['heldout_auroc']:.3f} "
        f"[{m['heldout_auroc_low']:.3f}, {m['heldout_auroc_high']:.3f}]\n"
        f"classifier: {out} (use --judge classifier:{out})"
    )
