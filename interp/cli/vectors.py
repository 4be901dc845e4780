"""`interp vectors info|convert|extract|resid-norm`: direction sets on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL

vectors_app = typer.Typer(no_args_is_help=True, help="Direction sets: inspect, convert, extract.")
app.add_typer(vectors_app, name="vectors")


@vectors_app.command("info")
def vectors_info(
    path: Annotated[Path, typer.Argument(help="a direction set (.safetensors)")],
) -> None:
    """Show a direction set's metadata, layers, norms and statistics."""
    from interp.vectors import DirectionSet

    with user_errors():
        ds = DirectionSet.load(path)
    meta = ds.meta.to_dict()
    table = Table(title=str(path), show_header=False)
    for key in ("model", "site", "method", "layer_convention", "data_hash", "created"):
        table.add_row(key, str(meta[key]))
    table.add_row("fingerprint", meta["fingerprint"] or "not recorded (older file)")
    table.add_row("digest", ds.digest())
    table.add_row(
        "shape",
        f"{len(ds.layers)} layers × d_model {meta['d_model']} (model has {meta['n_layers']})",
    )
    table.add_row("layers", _ranges(list(ds.layers)))
    norms = ds.norms()
    peak = int(norms.argmax())
    table.add_row("norm", f"min {norms.min():.3g}, max {norms.max():.3g} (block {ds.layers[peak]})")
    table.add_row("stats", ", ".join(ds.stats) or "none")
    for key, value in meta["extra"].items():
        table.add_row(f"extra.{key}", str(value)[:100])
    Console(width=None if Console().is_terminal else 160).print(table)


def _parse_layers(spec: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]; no model is at hand, so counting from the end is refused."""
    from interp.sites import parse_layer_ranges

    out: list[int] = []
    for lo, hi in parse_layer_ranges(spec):
        if lo < 0 or hi < 0:
            raise ValueError(
                f"layers {spec!r}: use block indices >= 0 here (no model to count from)"
            )
        out.extend(range(lo, hi + 1))
    return out


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    spans: list[list[int]] = []
    for layer in layers:
        if spans and layer == spans[-1][1] + 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


@vectors_app.command("convert")
def vectors_convert(
    source: Annotated[Path, typer.Argument(help=".safetensors or .gguf")],
    target: Annotated[Path, typer.Argument(help=".gguf or .safetensors")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="needed to import a .gguf")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="export only these blocks, e.g. '1-29'")
    ] = None,
    allow_other_model: Annotated[
        bool, typer.Option(help="import a .gguf recorded for another model")
    ] = False,
) -> None:
    """Convert between interp safetensors and llama.cpp control-vector GGUF (used by repeng)."""
    from interp.io import existing_file, output_file
    from interp.models import load_model
    from interp.vectors import DirectionSet

    with user_errors():
        existing_file(source)
        output_file(target, "target")
        if source.suffix == ".gguf":
            if target.suffix != ".safetensors":
                raise ValueError(f"converting a .gguf writes .safetensors, not {target.suffix!r}")
            if model is None:
                raise ValueError(
                    "importing a GGUF control vector needs --model (for the metadata and checks)"
                )
            lm = load_model(model)
            DirectionSet.from_gguf(source, lm, allow_other_model).save(target)
        elif source.suffix == ".safetensors":
            if target.suffix != ".gguf":
                raise ValueError(f"converting a .safetensors writes .gguf, not {target.suffix!r}")
            ds = DirectionSet.load(source)
            if layers is not None:
                ds = ds.at(_parse_layers(layers))
            ds.to_gguf(target)
        else:
            raise ValueError(f"unknown vector format {source.suffix!r}; use .safetensors or .gguf")
    console.print(f"wrote {target}")


@vectors_app.command("extract")
def vectors_extract(
    positive: Annotated[Path, typer.Argument(help="JSONL of examples showing the behaviour")],
    negative: Annotated[Path, typer.Argument(help="JSONL of contrasting examples")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .safetensors")],
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    reduce: Annotated[str, typer.Option(help="positions:how read per example")] = "response:mean",
    site: Annotated[
        str, typer.Option(help="resid_pre, resid_post, attn_out, mlp_out")
    ] = "resid_post",
    paired: Annotated[bool, typer.Option(help="rows align: mean of per-pair differences")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Difference-of-means direction at every block: mean(positive) − mean(negative)."""
    from interp import ops
    from interp.capture import capture as run_capture
    from interp.io import output_file, read_jsonl
    from interp.models import load_model
    from interp.vectors import DirectionSet

    with user_errors():
        output_file(out, "--out")
        pos_rows, neg_rows = read_jsonl(positive), read_jsonl(negative)
        lm = load_model(model)
        pos = run_capture(lm, pos_rows, {"r": reduce}, sites=site, batch_size=batch_size)["r"]
        neg = run_capture(lm, neg_rows, {"r": reduce}, sites=site, batch_size=batch_size)["r"]
        vec = ops.paired_mean_diff(pos, neg) if paired else ops.mean_diff(pos, neg)
        method = f"{'paired_' if paired else ''}mean_diff({reduce})"
        ds = DirectionSet.from_tensor(
            vec,
            lm,
            site=site,
            method=method,
            data=[pos_rows, neg_rows],
            positive=str(positive),
            negative=str(negative),
        )
        ds.save(out)
    console.print(
        f"wrote {out}: {len(ds.layers)} layers, norms {ds.norms().min():.3g}–{ds.norms().max():.3g}"
    )


@vectors_app.command("resid-norm")
def vectors_resid_norm(
    path: Annotated[Path, typer.Argument(help="a direction set (.safetensors)")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL of reference texts")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write here (default: update PATH)")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    allow_other_model: Annotated[
        bool, typer.Option(help="measure on a model the set was not made for")
    ] = False,
) -> None:
    """Store the mean residual norm per layer (first token left out), for --scale resid_norm."""
    from interp.io import output_file, read_jsonl
    from interp.models import load_model
    from interp.steering.interventions import measure_resid_norm, resid_norm_texts
    from interp.vectors import DirectionSet

    target = out or path
    with user_errors():
        output_file(target, "--out")
        ds = DirectionSet.load(path)
        rows = read_jsonl(data)
        lm = load_model(model)
        ds = measure_resid_norm(lm, rows, ds.check(lm, allow_other_model), batch_size=batch_size)
        ds.save(target)
        used = len(resid_norm_texts(lm, rows))
    norms = ds.stats["resid_norm"]
    skipped = f" ({len(rows) - used} of one token skipped)" if used < len(rows) else ""
    console.print(
        f"wrote {target}: resid_norm over {used} texts{skipped}, "
        f"{norms.min():.3g}–{norms.max():.3g}",
        soft_wrap=True,
        highlight=False,
    )
