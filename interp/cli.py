"""The `interp` command line: one Typer app, `interp <verb>` or `interp <group> <verb>`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from interp.embedded import DEFAULT_MODEL, EMBEDDED, EmbeddedModelMissing, materialized_dir

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)
console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, missing files or models) into one clear line."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, EmbeddedModelMissing) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def models() -> None:
    """List the embedded models: dimensions, install state and where each loads from."""
    table = Table(title="Embedded models (offline). Any HF directory or Hub id also works.")
    for column in ("alias", "stands for", "layers", "d_model", "chat", "weights", "loads from"):
        table.add_column(column)
    for alias, model in EMBEDDED.items():
        if not model.installed():
            where = f"[red]not installed[/]: {model.install}"
        elif (materialized_dir(model) / "interp-embedded.json").exists():
            where = str(materialized_dir(model))
        else:
            where = f"package {model.package} (dequantized on first load)"
        name = f"{alias} (default)" if alias == DEFAULT_MODEL else alias
        table.add_row(
            name,
            model.hub_id,
            str(model.n_layers),
            str(model.d_model),
            "yes" if model.chat else "no",
            model.quantization,
            where,
        )
    Console(width=None if Console().is_terminal else 160).print(table)


def _reductions(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, body = spec.partition("=")
        out[name if sep else spec] = body if sep else spec
    return out


@app.command()
def capture(
    data: Annotated[Path, typer.Argument(help="JSONL: {prompt, response?} | {text} | {messages}")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .safetensors file")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="alias, HF dir or Hub id")
    ] = DEFAULT_MODEL,
    layers: Annotated[str, typer.Option(help="'all', '10-20' or '3,7,9'")] = "all",
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="repeatable; default resid_post")
    ] = None,
    reduce: Annotated[
        list[str] | None,
        typer.Option("--reduce", help="repeatable [name=]positions:how; default response:mean"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    cache_dir: Annotated[
        Path | None, typer.Option(help="reuse and resume via an on-disk cache")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: cuda if present)")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or bfloat16")] = None,
) -> None:
    """Capture per-layer reductions of the texts or chats in DATA and save them as safetensors."""
    from interp.capture import capture as run_capture
    from interp.io import read_jsonl
    from interp.models import load_model

    with user_errors():
        rows = read_jsonl(data)
        lm = load_model(model, device=device, dtype=dtype)
        acts = run_capture(
            lm,
            rows,
            _reductions(reduce or ["response:mean"]),
            layers=lm.layers(layers),
            sites=sites or ["resid_post"],
            batch_size=batch_size,
            cache_dir=cache_dir,
        )
        acts.meta["data"] = str(data)
        path = acts.save(out)
    shapes = ", ".join(f"{n}@{s} {tuple(t.shape)}" for (n, s), t in acts.data.items())
    console.print(f"wrote {path}: {shapes}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
