"""The `interp` command line: one Typer app, `interp <verb>` or `interp <group> <verb>`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, cast

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
) -> None:
    """Convert between interp safetensors and llama.cpp control-vector GGUF (used by repeng)."""
    from interp.models import load_model
    from interp.vectors import DirectionSet

    with user_errors():
        if source.suffix == ".gguf":
            if target.suffix != ".safetensors":
                raise ValueError(f"converting a .gguf writes .safetensors, not {target.suffix!r}")
            if model is None:
                raise ValueError(
                    "importing a GGUF control vector needs --model (for the metadata and checks)"
                )
            DirectionSet.from_gguf(source, load_model(model)).save(target)
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
    from interp.io import read_jsonl
    from interp.models import load_model
    from interp.vectors import DirectionSet

    with user_errors():
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


@app.command()
def steer(
    prompts: Annotated[
        Path, typer.Argument(help="JSONL of prompts: {prompt} | {text} | {messages}")
    ],
    vector: Annotated[Path, typer.Option("--vector", "-v", help="direction set (.safetensors)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    model: Annotated[str, typer.Option("--model", "-m")] = DEFAULT_MODEL,
    layers: Annotated[
        str, typer.Option(help="blocks to steer, one per sweep cell: '10,15'")
    ] = "15",
    coef: Annotated[
        list[float] | None, typer.Option("--coef", help="repeatable; default -4 0 4")
    ] = None,
    positions: Annotated[
        str, typer.Option(help="where to add: e.g. 'response|last_prompt', 'all'")
    ] = ("(response|last_prompt)"),
    scale: Annotated[str, typer.Option(help="raw | unit | resid_norm")] = "raw",
    metric: Annotated[str, typer.Option(help="projection | length | match:<regex>")] = "projection",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    samples: Annotated[int, typer.Option(min=1, help="generations per cell")] = 1,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    allow_other_model: Annotated[
        bool, typer.Option(help="apply a vector from another model")
    ] = False,
) -> None:
    """Sweep steering over layers × coefficients; write generations (resumable) and a figure."""
    from interp.eval.metrics import check as check_metric
    from interp.eval.metrics import projection_scorer, summarize
    from interp.figures.plots import steering_curve
    from interp.figures.style import save_figure
    from interp.io import inside, read_jsonl
    from interp.models import load_model
    from interp.ops import ScaleMode
    from interp.positions import parse
    from interp.runs.store import load_frame
    from interp.runs.sweeps import grid, run_sweep
    from interp.vectors import DirectionSet

    with user_errors():
        if scale not in ("raw", "unit", "resid_norm"):
            raise ValueError(f"unknown scale {scale!r}; use raw, unit or resid_norm")
        rows = read_jsonl(prompts)
        check_metric(metric)  # fail before loading anything
        lm = load_model(model)
        ds = DirectionSet.load(vector).check(lm, allow_other_model)
        chosen = lm.layers(layers)
        cells = grid(
            rows,
            ds,
            chosen,
            coef or [-4.0, 0.0, 4.0],
            parse(positions),
            cast(ScaleMode, scale),
            samples,
        )
        store_path = inside(out, "generations.jsonl")
        scorer = projection_scorer(lm, ds) if metric == "projection" else None
        run_sweep(
            lm,
            cells,
            store_path,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            batch_size=batch_size,
            scorer=scorer,
            allow_other_model=allow_other_model,
        )
        name = metric.split(":")[0]
        files = save_figure(steering_curve(store_path, metric), out, f"steer_{name}")
        table = summarize(load_frame(store_path), metric)
    console.print(table.to_string(index=False))
    console.print(f"generations: {store_path}\nfigure: {', '.join(map(str, files))}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
