"""The entity study in stages, each reading and writing one results directory.

    label   →  labels.jsonl (the run store of every answer) and labels.csv (one row per entity)
    score   →  entities.csv, layers.csv (difference of means by block), latents.csv (top
               latents per SAE layer), tokenization.json, chosen.json (the known and unknown
               latents used for steering, each from its own best block), timings.json
    steer   →  steering.jsonl (run store), steering.csv, steering_summary.csv, sure.csv,
               attention.csv
    figures →  drawn from those files only (`interp.entities.figures`)

`interp entities label|score|steer|figures` and `experiments/entities.py` call these. Every
stage that runs the model appends as it goes or is cheap enough to recompute; a stage whose
inputs are missing says which command makes them.
"""

from __future__ import annotations

import hashlib
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
    latent_conditions,
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
KINDS = ("known", "unknown")


def _need(path: Path, command: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; run `interp entities {command} --out {path.parent}` first"
        )
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
    layers = diff_means_by_layer(data_acts, tokens)
    latents = score_latents(data_acts, saes, top=top, baselines=tokens)
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
    """The known and the unknown latent, each from the SAE block where its kind scores best.

    As the paper does: at the last entity token, the argmax over SAE blocks of the
    minimum-over-types separation, separately for each kind, so the two may sit in different
    blocks (each is then steered with its own SAE and its block's residual norm).
    """
    last = latents[(latents["position"] == "last") & (latents["rank"] == 0)]
    chosen: dict[str, Any] = {}
    for kind in KINDS:
        rows = last[last["kind"] == kind]
        if rows.empty:
            raise ValueError(
                f"no SAE block has a {kind} latent with positive separation in every entity type "
                "at the last entity token, so there is nothing to steer (see latents.csv); label "
                f"more entities of the types where few are {kind}, or score wider SAEs or more "
                "blocks"
            )
        best = rows.loc[rows["separation"].idxmax()]
        sae = next(s for s in saes if s.layer == int(best["layer"]))
        chosen[kind] = {
            "sae": sae.source,
            "sae_digest": sae_digest(sae),
            "layer": int(best["layer"]),
            "latent": int(best["latent"]),
            "separation": float(best["separation"]),
            "auroc": float(best["auroc"]),
            "auroc_strata": float(best["auroc_strata"]),
        }
    return chosen


def sae_digest(sae: LoadedSAE) -> str:
    """A short digest of the SAE's decoder weights: the same SAE under any path or name."""
    weights = sae.sae.W_dec.detach().float().cpu().contiguous().numpy()
    return hashlib.sha256(weights.tobytes()).hexdigest()[:16]


def _find_sae(saes: Sequence[LoadedSAE], chosen: dict[str, Any], kind: str) -> LoadedSAE:
    """The SAE `chosen` names, by its source or (given another way) by its weights digest."""
    for sae in saes:
        if sae.source == chosen["sae"]:
            return sae
    digest = chosen.get("sae_digest")
    for sae in saes:
        if digest and sae.layer == chosen["layer"] and sae_digest(sae) == digest:
            return sae
    given = ", ".join(s.source for s in saes) or "none"
    raise ValueError(
        f"the chosen {kind} latent is in SAE {chosen['sae']} (block {chosen['layer']}, weights "
        f"digest {digest or 'not recorded'}), which is not among the SAEs given ({given}); pass "
        "that SAE with --sae (its directory or shipped name)"
    )


def chosen_saes(root: Path) -> list[str]:
    """The SAEs holding the chosen latents (from chosen.json), without repeats."""
    chosen = read_chosen(root)
    return list(dict.fromkeys(chosen[kind]["sae"] for kind in KINDS))


def read_chosen(root: Path) -> dict[str, Any]:
    path = _need(root / CHOSEN, "score")
    chosen = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(chosen, dict) or any(
        not isinstance(chosen.get(kind), dict) or "latent" not in chosen[kind] for kind in KINDS
    ):
        found = ", ".join(map(str, chosen)) if isinstance(chosen, dict) else type(chosen).__name__
        raise ValueError(
            f"{path} does not hold a known and an unknown latent (it holds: {found}; an older "
            f"layout?); run `interp entities score --out {root}` again"
        )
    return chosen


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
    saes: Sequence[LoadedSAE],
    out: str | Path,
    *,
    alphas: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    per_group: int = 24,
    n_random: int = 10,
    attention_alpha: float = 1.0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Steering with the chosen latents against random latents and orthogonalisation.

    `saes` must include the SAE of each chosen latent (chosen.json names them); each latent is
    steered at its own block, with that block's residual norm, against `n_random` random
    zero-separation latents of the same SAE.
    """
    root = output_dir(out)
    chosen = read_chosen(root)
    picked = {kind: _find_sae(saes, chosen[kind], kind).check(model) for kind in KINDS}
    groups = _groups(data, root, per_group)
    questions = [question(e, data, i)[0] for g in groups.values() for i, e in enumerate(g)]
    blocks = sorted({sae.layer for sae in picked.values()})
    # the random baseline: latents with zero separation on the training entities
    acts = capture_entities(model, data, load_labels(root / LABELS), layers=blocks)
    train = (acts.frame["split"] == "train").to_numpy()
    conditions: list[Condition] = []
    meta: dict[str, Any] = {}
    for kind, sae in picked.items():
        active = (sae.encode(acts.acts["last"][:, blocks.index(sae.layer)]) > 0).numpy()
        per_type, types = separation(active.astype(float), acts.frame, train)
        density = sae.density.numpy() if sae.density is not None else np.ones(sae.d_sae)
        where = f"SAE {sae.source} (block {sae.layer})"
        randoms = random_latents(per_type, density, n_random, seed=0, types=types, where=where)
        # α is in units of the mean residual norm at the SAE's block, over the question prompts
        norm = residual_norm(model, questions, sae.layer)
        named = {f"{kind}_latent": int(chosen[kind]["latent"])}
        named |= {f"random_{kind}_{i}": j for i, j in enumerate(randoms)}
        conditions += latent_conditions(model, sae, named, norm)
        meta[kind] = {
            "sae": sae.source,
            "layer": sae.layer,
            "latent": int(chosen[kind]["latent"]),
            "resid_norm": norm,
            "random_latents": randoms,
        }
    start, before = time.perf_counter(), _units(root / "steering.jsonl")
    unknown = picked["unknown"].decoder_row(int(chosen["unknown"]["latent"]))
    cells = steering_cells(model, data, groups, conditions, alphas, orthogonal=unknown)
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
    sure_logit_diffs(model, data, groups, conditions, alphas).to_csv(root / "sure.csv", index=False)
    attn = attention_changes(model, data, groups, conditions, attention_alpha)
    attn.to_csv(root / "attention.csv", index=False)
    meta |= {
        "alphas": list(alphas),
        "attention_alpha": attention_alpha,
        "per_group": {k: len(v) for k, v in groups.items()},
    }
    (root / "steering_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return results
