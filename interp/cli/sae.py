"""`interp sae info|list|train`: inspect, list and train sparse autoencoders.

`info` takes whatever `interp.saes.load.load_sae` takes (a directory, a shipped name, or a
published "release:sae_id") and shows what the SAE is, where it reads and how good it is;
with `--model` it loads the model and runs `LoadedSAE.check`, so a mismatch shows up before an
experiment. `train` is the offline recipe (`interp.saes.recipe.train_saes`) that made the
shipped SAEs, on any model and text tree.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL

sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders: inspect, list, train.")
app.add_typer(sae_app, name="sae")

# metrics.json keys worth a row, in reading order
METRIC_ROWS = (
    ("explained_variance", "explained variance"),
    ("l0", "L0 (active latents per token)"),
    ("dead_fraction", "dead fraction"),
    ("loss_increase", "loss increase (nats)"),
    ("loss_recovered", "loss recovered"),
    ("tokens", "held-out tokens"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@sae_app.command("info")
def sae_info(
    spec: Annotated[
        str, typer.Argument(help="SAE directory, shipped name or 'release:sae_id' (SAELens)")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="check that the SAE fits this model")
    ] = None,
    allow_other_model: Annotated[
        bool, typer.Option(help="accept a model with other weights (e.g. base vs chat)")
    ] = False,
) -> None:
    """Show an SAE's shape, hook, model, training config and quality metrics."""
    from interp.saes.load import load_sae

    with user_errors():
        loaded = load_sae(spec)
        fit = None
        if model is not None:
            from interp.models import load_model

            lm = load_model(model)
            loaded.check(lm, allow_other_model)
            fit = f"yes: {lm.name}, hook {lm.hook_name(loaded.site, loaded.layer)}"
    table = Table(title=loaded.source, show_header=False)
    for key, value in loaded.describe().items():
        if value is not None:
            table.add_row(key, str(value))
    if loaded.model_fingerprint is None:
        table.add_row("model_fingerprint", "not recorded (checked by model name)")
    cfg = loaded.sae.cfg
    table.add_row("normalize_activations", str(cfg.normalize_activations))
    table.add_row("apply_b_dec_to_input", str(cfg.apply_b_dec_to_input))
    train = getattr(cfg.metadata, "interp", None) or {}
    for key, value in (train.get("train") or {}).items():
        table.add_row(f"train.{key}", _fmt(value))
    record = loaded.metrics or {}
    metrics = record.get("metrics", record)
    for key, label in METRIC_ROWS:
        if key in metrics:
            table.add_row(label, _fmt(metrics[key]))
    for key, value in (record.get("corpus") or {}).items():
        table.add_row(f"corpus.{key}", _fmt(value)[:100])
    if loaded.density is not None:
        density = loaded.density
        table.add_row(
            "density",
            f"mean {float(density.mean()):.3g}, never active {int((density == 0).sum())}, "
            f"above 2% {int((density > 0.02).sum())} of {density.numel()}",
        )
    if fit is not None:
        table.add_row("fits --model", fit)
    Console(width=None if Console().is_terminal else 160).print(table)


@sae_app.command("list")
def sae_list(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="only this model alias's SAEs")
    ] = None,
) -> None:
    """List the SAEs shipped with the package (load them by these names)."""
    from interp.saes.load import shipped_saes

    names = shipped_saes(model)
    if not names:
        console.print("no shipped SAEs" + (f" for {model}" if model else ""))
        return
    for name in names:
        typer.echo(name)


@sae_app.command("train")
def sae_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory: one block{l}-{site}/ each")],
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    layers: Annotated[str, typer.Option(help="blocks, e.g. '6,15,24' or '10-12'")] = "6,15,24",
    corpus: Annotated[
        Path | None,
        typer.Option(help="text tree (.txt/.rst); default: the python3.11-doc reST sources"),
    ] = None,
    site: Annotated[str, typer.Option(help="resid_pre, resid_mid, resid_post, ...")] = "resid_post",
    d_sae: Annotated[int, typer.Option(min=1, help="latents")] = 3072,
    k: Annotated[int, typer.Option(min=1, help="active latents per token (TopK)")] = 32,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 1024,
    max_tokens: Annotated[int, typer.Option(min=1, help="training tokens per layer")] = 450_000,
    eval_tokens: Annotated[int, typer.Option(min=1, help="held-out tokens to evaluate on")] = (
        40_000
    ),
) -> None:
    """Train one TopK SAE per layer on a model's own activations (offline, SAELens)."""
    from interp.models import load_model
    from interp.saes.corpus import DEBIAN_PACKAGE, DEBIAN_PYTHON_DOCS, read_corpus
    from interp.saes.recipe import train_saes
    from interp.saes.train import TrainConfig
    from interp.sites import check_site

    with user_errors():
        config = TrainConfig(d_sae=d_sae, k=k, epochs=epochs, batch_size=batch_size)
        root = corpus or DEBIAN_PYTHON_DOCS
        text = read_corpus(root, package=DEBIAN_PACKAGE if root == DEBIAN_PYTHON_DOCS else None)
        lm = load_model(model)
        results = train_saes(
            lm,
            text,
            lm.layers(layers),
            out,
            site=check_site(site),
            config=config,
            max_tokens=max_tokens,
            eval_tokens=eval_tokens,
            log=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )
    for layer, record in sorted(results.items()):
        metrics = record["metrics"]
        finite = all(
            math.isfinite(metrics[key]) for key in ("explained_variance", "l0", "loss_increase")
        )
        console.print(
            f"block {layer}: EV {metrics['explained_variance']:.3f}, L0 {metrics['l0']:.1f}"
            + ("" if finite else " (non-finite metrics: check the data)"),
            highlight=False,
        )
    console.print(f"wrote {out}")
