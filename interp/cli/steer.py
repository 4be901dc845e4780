"""`interp steer`: a resumable steering sweep over layers × coefficients, with a figure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from interp.cli.common import app, console, user_errors
from interp.embedded import DEFAULT_MODEL


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
    scale: Annotated[
        str,
        typer.Option(help="raw | unit | resid_norm (measured on the prompts if the set lacks it)"),
    ] = "raw",
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
    """Sweep steering over layers × coefficients; write generations (resumable) and a figure.

    Every generation is keyed by everything that produced it (vector content, model weights and
    dtype, prompt tokens, positions, scale, decoding settings), so running again into the same
    directory with another vector or setting computes the new units and keeps the old ones; the
    table and the figure show each configuration as its own series. Another --metric reuses the
    stored generations and only scores them.
    """
    import math
    from dataclasses import replace

    from interp.eval.metrics import check as check_metric
    from interp.eval.metrics import projection_scorer, summarize
    from interp.figures.plots import steering_curve
    from interp.figures.style import save_figure
    from interp.io import inside, output_dir, read_jsonl
    from interp.models import load_model
    from interp.ops import ScaleMode
    from interp.positions import parse
    from interp.runs.store import load_frame
    from interp.runs.sweeps import grid, run_sweep
    from interp.steering.interventions import measure_resid_norm, resid_norm_texts
    from interp.vectors import DirectionSet

    with user_errors():
        coefs = coef or [-4.0, 0.0, 4.0]
        bad = [c for c in coefs if not math.isfinite(c)]
        if bad:
            raise ValueError(f"--coef {bad[0]} is not a finite number; give finite coefficients")
        if scale not in ("raw", "unit", "resid_norm"):
            raise ValueError(f"unknown scale {scale!r}; use raw, unit or resid_norm")
        output_dir(out, "--out")
        check_metric(metric)  # fail before loading anything
        rows = read_jsonl(prompts)
        where = parse(positions)
        ds = DirectionSet.load(vector)
        lm = load_model(model)
        ds.check(lm, allow_other_model)
        chosen = lm.layers(layers)
        if scale == "resid_norm" and "resid_norm" not in ds.stats:
            ds = measure_resid_norm(lm, rows, ds, batch_size=batch_size)
            used = len(resid_norm_texts(lm, rows))
            skipped = f", {len(rows) - used} of one token skipped" if used < len(rows) else ""
            console.print(
                f"{vector} has no resid_norm stat: measured it on {used} "
                f"prompt{'' if used == 1 else 's'}{skipped} "
                f"(store it with: interp vectors resid-norm {vector} --data TEXTS.jsonl)",
                soft_wrap=True,
                highlight=False,
            )
        cells = grid(rows, ds, chosen, coefs, where, cast(ScaleMode, scale), samples)
        store_path = inside(out, "generations.jsonl")
        # the projection reads the vectors only: a stat added later must not re-key its units
        values = replace(ds, stats={})
        scorer = projection_scorer(lm, values) if metric == "projection" else None
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
    series = list(table.columns[:-5])  # before layer, coef, mean, sem, count
    if series:
        fields = ", ".join(c.removeprefix("config.") for c in series)
        console.print(
            f"note: {store_path} holds several configurations (differing in {fields}); "
            "each is its own series in the table and the figure",
            soft_wrap=True,
            highlight=False,
        )
    console.print(table.to_string(index=False), soft_wrap=True, highlight=False)
    console.print(
        f"generations: {store_path}\nfigure: {', '.join(map(str, files))}",
        soft_wrap=True,
        highlight=False,
    )
