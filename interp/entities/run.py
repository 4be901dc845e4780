"""The entity study in stages, each reading and writing one results directory.

    label   →  labels.jsonl (the run store of every answer) and labels.csv (one row per entity)
    score   →  entities.csv, layers.csv (difference of means by block), latents.csv (top
               latents per SAE layer), tokenization.json, chosen.json (the known and unknown
               latents used for steering), timings.json
    steer   →  steering.jsonl (run store), steering.csv, steering_summary.csv, sure.csv,
               attention.csv
    figures →  drawn from those files only (`interp.entities.figures`)

`interp entities label|score|steer|figures` and `experiments/entities.py` call these. Every
stage that runs the model appends as it goes or is cheap enough to recompute; a stage whose
inputs are missing says which command makes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interp.capture import capture
from interp.entities.attention import attention_changes
from interp.entities.data import Entity, EntitySet
from interp.entities.labels import label_entities, load_labels, save_labels_table
from interp.entities.scoring import (
    capture_entities,
    diff_means_by_layer,
    score_latents,
    separation,
    tokenization_baseline,
)
from interp.entities.steering import (
    Condition,
    latent_directions,
    question,
    random_latents,
    run_steering,
    steering_cells,
    summarize,
    sure_logit_diffs,
)
from interp.io import output_dir
from interp.models import Model
from interp.saes.load import LoadedSAE

LABELS = "labels.csv"
CHOSEN = "chosen.json"


def _need(path: Path, command: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `interp entities {command}` first")
    return path


def label(
    model: Model,
    data: EntitySet,
    out: str | Path,
    *,
    samples: int = 5,
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    root = output_dir(out)
    start, before = time.perf_counter(), _units(root / "labels.jsonl")
    table = label_entities(
        model,
        data,
        root / "labels.jsonl",
        samples=samples,
        batch_size=batch_size,
        progress=progress,
    )
    save_labels_table(table, root / LABELS)
    _timing(
        root, "label_seconds", time.perf_counter() - start, _units(root / "labels.jsonl") - before
    )
    return table


def _units(store: Path) -> int:
    """Lines in a run store (0 when absent): how many units it holds."""
    return sum(1 for _ in store.open("rb")) if store.exists() else 0


def _timing(root: Path, name: str, seconds: float, new_units: int | None = None) -> None:
    """Record a stage's time; a rerun that computed nothing new keeps the earlier record."""
    if new_units == 0:
        return
    path = root / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 2)
    if new_units is not None:
        timings[f"{name.removesuffix('_seconds')}_units"] = new_units
    path.write_text(json.dumps(timings, indent=1) + "\n")


def score(
    model: Model,
    data: EntitySet,
    saes: Sequence[LoadedSAE],
    out: str | Path,
    *,
    top: int = 10,
) -> dict[str, Any]:
    """Capture every labelled entity once at every block, then score latents and baselines."""
    root = output_dir(out)
    labels = load_labels(_need(root / LABELS, "label"))
    for sae in saes:
        sae.check(model)
    data_acts = capture_entities(model, data, labels)
    start = time.perf_counter()
    tokens = tokenization_baseline(data_acts.frame)
    layers = diff_means_by_layer(data_acts, tokens["auroc"])
    latents = score_latents(data_acts, saes, top=top, tokens_auroc=tokens["auroc"])
    scoring_seconds = time.perf_counter() - start
    data_acts.frame.to_csv(root / "entities.csv", index=False)
    layers.to_csv(root / "layers.csv", index=False)
    latents.to_csv(root / "latents.csv", index=False)
    (root / "tokenization.json").write_text(json.dumps(tokens, indent=1) + "\n")
    chosen = choose_latents(latents, saes)
    (root / CHOSEN).write_text(json.dumps(chosen, indent=1) + "\n")
    _timing(root, "capture_seconds", data_acts.seconds)
    _timing(root, "scoring_seconds", scoring_seconds)
    return chosen


def choose_latents(latents: pd.DataFrame, saes: Sequence[LoadedSAE]) -> dict[str, Any]:
    """The known and the unknown latent: argmax over SAE layers of the minimum-over-types score.

    Chosen at the last entity token, as the paper does; both from the same block (the block
    whose weaker best score is highest) so that one SAE and one residual norm serve the
    steering. The paper picks each from its own best block: where they differ, the stronger
    latent of one kind may be left out (latents.csv lists every block's best).
    """
    last = latents[(latents["position"] == "last") & (latents["rank"] == 0)]
    if last.empty:
        raise ValueError("no latents were scored; check the SAEs and labels")
    best = {}
    for layer, part in last.groupby("layer"):
        known, unknown = part[part["kind"] == "known"], part[part["kind"] == "unknown"]
        if known.empty or unknown.empty:
            continue  # no latent of one kind separates at this block
        score = min(known["separation"].iloc[0], unknown["separation"].iloc[0])
        best[int(layer)] = (score, known.iloc[0], unknown.iloc[0])
    if not best:
        raise ValueError(
            "no SAE block has both a known and an unknown latent with positive separation in "
            "every type; there is nothing to steer (see latents.csv)"
        )
    layer = max(best, key=lambda k: best[k][0])
    _, known, unknown = best[layer]
    sae = next(s for s in saes if s.layer == layer)
    return {
        "sae": sae.source,
        "layer": layer,
        "known_latent": int(known["latent"]),
        "unknown_latent": int(unknown["latent"]),
        "known_separation": float(known["separation"]),
        "unknown_separation": float(unknown["separation"]),
        "known_auroc": float(known["auroc"]),
        "unknown_auroc": float(unknown["auroc"]),
    }


def read_entities(path: Path) -> pd.DataFrame:
    """entities.csv with names kept as text (a title such as "1984" is not a number)."""
    return pd.read_csv(path, dtype={"name": str, "type": str, "last_token": str})


def _groups(data: EntitySet, root: Path, per_group: int, seed: int = 0) -> dict[str, list[Entity]]:
    """Held-out known and unknown (real) entities and invented names, `per_group` of each."""
    frame = read_entities(_need(root / "entities.csv", "score"))
    test = frame[frame["split"] == "test"]
    by_key = {(e.type, e.name): e for e in data.entities}
    rng = np.random.default_rng(seed)
    groups = {}
    for name, rows in (
        ("known", test[(test["label"] == "known") & (test["origin"] == "real")]),
        ("unknown", test[(test["label"] == "unknown") & (test["origin"] == "real")]),
        ("invented", test[test["origin"] == "invented"]),
    ):
        picked = rows.iloc[sorted(rng.permutation(len(rows))[:per_group])] if len(rows) else rows
        groups[name] = [by_key[(r.type, r.name)] for r in picked.itertuples()]
    return groups


def residual_norm(model: Model, prompts: Sequence[Any], layer: int) -> float:
    """Mean residual norm at block `layer` over the prompts' tokens (first token excluded)."""
    acts = capture(
        model, list(prompts), {"norm": "all&!first:norm"}, layers=[layer], progress=False
    )
    return float(acts.get("norm").mean())


def steer(
    model: Model,
    data: EntitySet,
    sae: LoadedSAE,
    out: str | Path,
    *,
    alphas: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    per_group: int = 24,
    n_random: int = 10,
    attention_alpha: float = 1.0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Steering with the chosen latents against random latents and orthogonalisation."""
    root = output_dir(out)
    chosen = json.loads(_need(root / CHOSEN, "score").read_text())
    if sae.layer != chosen["layer"]:
        raise ValueError(
            f"the chosen latents are at block {chosen['layer']}, but the SAE given is for block "
            f"{sae.layer}; pass the SAE {chosen['sae']}"
        )
    sae.check(model)
    groups = _groups(data, root, per_group)
    # the random baseline: latents with zero separation on the training entities
    acts = capture_entities(model, data, load_labels(root / LABELS), layers=[sae.layer])
    active = (sae.encode(acts.acts["last"][:, 0]) > 0).numpy().astype(float)
    per_type, _ = separation(active, acts.frame, (acts.frame["split"] == "train").to_numpy())
    density = sae.density.numpy() if sae.density is not None else np.ones(sae.d_sae)
    randoms = random_latents(per_type, density, n_random, seed=0)
    conditions = [
        Condition("known_latent", chosen["known_latent"]),
        Condition("unknown_latent", chosen["unknown_latent"]),
        *[Condition(f"random_{i}", j) for i, j in enumerate(randoms)],
    ]
    # α is in units of the mean residual norm at the SAE's block, over the question prompts
    questions = [question(e, data, i)[0] for g in groups.values() for i, e in enumerate(g)]
    norm = residual_norm(model, questions, sae.layer)
    start, before = time.perf_counter(), _units(root / "steering.jsonl")
    cells = steering_cells(
        model,
        data,
        groups,
        sae,
        conditions,
        alphas,
        norm,
        orthogonal=sae.decoder_row(chosen["unknown_latent"]),
    )
    results = run_steering(
        model, data, cells, root / "steering.jsonl", batch_size=batch_size, progress=progress
    )
    results.to_csv(root / "steering.csv", index=False)
    summarize(results).to_csv(root / "steering_summary.csv", index=False)
    _timing(
        root,
        "steering_seconds",
        time.perf_counter() - start,
        _units(root / "steering.jsonl") - before,
    )
    sure = sure_logit_diffs(model, data, groups, sae, conditions, alphas, norm)
    sure.to_csv(root / "sure.csv", index=False)
    directions = latent_directions(model, sae, conditions, norm)
    attn = attention_changes(model, data, groups, directions, sae.layer, attention_alpha)
    attn.to_csv(root / "attention.csv", index=False)
    meta = {
        "resid_norm": norm,
        "random_latents": randoms,
        "alphas": list(alphas),
        "attention_alpha": attention_alpha,
        "per_group": {k: len(v) for k, v in groups.items()},
    }
    (root / "steering_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return results
