"""`interp capture`: per-layer reductions of a JSONL file, saved as safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL


def _reductions(specs: list[str]) -> dict[str, str]:
    """`--reduce` values ("[name=]positions:how") by name; a name given twice is refused."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, body = spec.partition("=")
        name, body = (name, body) if sep else (spec, spec)
        if name in out:
            raise ValueError(
                f"--reduce name {name!r} is given twice ({out[name]!r} and {body!r}); "
                f"give each its own name, e.g. --reduce {name}2={body}"
            )
        out[name] = body
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
    from interp.io import output_file, read_jsonl
    from interp.models import load_model

    with user_errors():
        output_file(out, "--out")  # before any work: not a directory, no file in the way
        reductions = _reductions(reduce or ["response:mean"])
        rows = read_jsonl(data)
        lm = load_model(model, device=device, dtype=dtype)
        acts = run_capture(
            lm,
            rows,
            reductions,
            layers=lm.layers(layers),
            sites=sites or ["resid_post"],
            batch_size=batch_size,
            cache_dir=cache_dir,
        )
        acts.meta["data"] = str(data)
        path = acts.save(out)
    shapes = ", ".join(f"{n}@{s} {tuple(t.shape)}" for (n, s), t in acts.data.items())
    console.print(f"wrote {path}: {shapes}")
