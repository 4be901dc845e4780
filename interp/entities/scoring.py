"""Known/unknown entity latents: separation scores, held-out AUROC, tokenization controls.

Protocol (Ferrando et al. 2025, eq. 6–7; papers.md §3.2), in one batched capture:

1. Every entity's scoring prompt ("The {type} {name} is") runs once through the model; the
   residual stream is read at the last token of the name and at the next token (" is", the
   same word for every entity), at every block (one capture for all layers).
2. For each layer with an SAE: a latent is *active* on an entity when its activation is > 0.
   Per entity type t, on the training entities, `s_known = f_known − f_unknown` (fraction of
   known entities where the latent is active minus the fraction of unknown ones) and
   `s_unknown = −s_known`. A latent's score is its minimum over types (it must separate in
   every type), and latents active on more than 2% of generic-corpus tokens (the SAE's shipped
   density) are dropped.
3. The top latents are evaluated on held-out entities: AUROC of the activation as a
   known/unknown classifier, overall and *within strata* (pairs of a known and an unknown
   entity of the same type, the same token-count bucket and the same word-start flag), each
   with a 95% bootstrap interval.
4. Baselines on the same split: the difference-of-means direction at every block (trained on
   the training entities, projected on held-out ones), a tokenization-only logistic regression
   on (token count, word-start flag), and the same regression with the entity type added (the
   types differ in how many of their entities the model knows, so the type alone predicts the
   label), and with the name's length added (inside a stratum the type and the tokenization are
   fixed, but the length of the name still varies). Verdicts, each on the lower end of the 95%
   interval: `beats_tokens` (above the tokenization-only AUROC: the issue's criterion),
   `beats_type` (above tokenization + type) and `beats_strata` (within-strata AUROC above the
   length baseline's within-strata AUROC, or above 0.5 when that cannot be fitted).

Unknown entities are real entities the model answered wrongly (labels from its own answers);
invented names are an extra control, reported separately (`auroc_invented`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import Tensor

from interp.capture import Reduction, capture
from interp.entities.data import EntitySet
from interp.entities.tokens import locate_all
from interp.eval.stats import Estimate, auroc, bootstrap_ci
from interp.models import Model
from interp.positions import Explicit
from interp.saes.load import LoadedSAE

DENSITY_LIMIT = 0.02  # drop latents active on more than 2% of generic tokens (the paper's filter)
TEST_FRACTION = 0.4  # the paper's 50/10/40 split: train + validation select, test evaluates
POSITIONS = ("last", "after")


@dataclass
class EntityActivations:
    """Residual stream of every entity's scoring prompt at the name's last token and after it."""

    frame: pd.DataFrame  # one row per entity (type, name, origin, label, split, n_tokens, …)
    layers: list[int]
    acts: dict[str, Float[Tensor, "entity layer d_model"]]  # "last", "after"
    seconds: float = 0.0


def _split(key: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < TEST_FRACTION else "train"


def entity_frame(
    model: Model, entities: EntitySet, labels: pd.DataFrame, seed: int = 42
) -> tuple[pd.DataFrame, list[str], list[tuple[int, int]]]:
    """Labelled entities (known / unknown; ambiguous ones dropped), prompts and positions."""
    label_of = {(r.type, r.name): r.label for r in labels.itertuples()}
    kept = [e for e in entities.entities if label_of.get((e.type, e.name)) in ("known", "unknown")]
    if not kept:
        raise ValueError(
            "no entity is labelled known or unknown; label them first (interp entities label)"
        )
    prompts, found = locate_all(model, kept, entities.types)
    frame = pd.DataFrame(
        {
            "type": [e.type for e in kept],
            "name": [e.name for e in kept],
            "origin": [e.origin for e in kept],
            "fame": [e.fame for e in kept],
            "label": [label_of[(e.type, e.name)] for e in kept],
            "split": [_split(e.key, seed) for e in kept],
            "n_tokens": [f.n_tokens for f in found],
            "word_start": [f.word_start for f in found],
            "last_token": [f.last_text for f in found],
            "prompt": prompts,
        }
    )
    return frame, prompts, [(f.last, f.after) for f in found]


def capture_entities(
    model: Model,
    entities: EntitySet,
    labels: pd.DataFrame,
    *,
    layers: Sequence[int] | str = "all",
    batch_size: int = 32,
    seed: int = 42,
) -> EntityActivations:
    """One batched capture of every labelled entity at `layers` (resid_post)."""
    import time

    frame, prompts, where = entity_frame(model, entities, labels, seed)
    width = max(a for _, a in where) + 1
    masks = {
        name: Explicit.of([[j == pos[k] for j in range(width)] for pos in where])
        for k, name in enumerate(POSITIONS)
    }
    start = time.perf_counter()
    acts = capture(
        model,
        prompts,
        {name: Reduction(mask, "mean") for name, mask in masks.items()},
        layers=layers if isinstance(layers, str) else list(layers),
        sites="resid_post",
        batch_size=batch_size,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return EntityActivations(
        frame, acts.layers, {name: acts.get(name) for name in POSITIONS}, seconds
    )


# -- statistics ---------------------------------------------------------------------------------


def _bucket(n: int) -> int:
    return min(n, 4)


def strata_of(types: np.ndarray, n_tokens: np.ndarray, word_start: np.ndarray) -> np.ndarray:
    """Stratum key per entity: entity type × token count (1, 2, 3, 4+) × word-start flag."""
    return np.array(
        [
            f"{t}/{_bucket(int(n))}/{int(bool(w))}"
            for t, n, w in zip(types, n_tokens, word_start, strict=True)
        ]
    )


def stratified_auroc(
    scores: np.ndarray,
    known: np.ndarray,
    strata: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[Estimate, int]:
    """AUROC over (known, unknown) pairs in the same stratum (`strata_of`), and the pair count.

    Ties count ½. The interval is a percentile bootstrap over entities (each resample reweights
    every pair by how often its two entities were drawn). NaN when no stratum holds both a known
    and an unknown entity.
    """
    n = len(scores)
    blocks = []
    for key in np.unique(strata):
        pos = np.where((strata == key) & known)[0]
        neg = np.where((strata == key) & ~known)[0]
        if pos.size and neg.size:
            diff = scores[pos][:, None] - scores[neg][None, :]
            blocks.append((pos, neg, (diff > 0) + 0.5 * (diff == 0)))
    pairs = sum(p.size * q.size for p, q, _ in blocks)
    if not pairs:
        nan = float("nan")
        return Estimate(nan, nan, nan, n, 0.95, 0), 0

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        draws = np.asarray(sample).astype(int).reshape(-1, n)
        counts = np.zeros(draws.shape, dtype=float)
        np.add.at(counts, (np.arange(draws.shape[0])[:, None], draws), 1.0)
        wins = np.zeros(draws.shape[0])
        total = np.zeros(draws.shape[0])
        for pos, neg, win in blocks:
            wins += np.einsum("bp,pq,bq->b", counts[:, pos], win, counts[:, neg])
            total += counts[:, pos].sum(1) * counts[:, neg].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (wins / total).reshape(np.asarray(sample).shape[:-1])

    est = bootstrap_ci([np.arange(n)], statistic, n_resamples=n_resamples, seed=seed)
    return est, pairs


def _held_out(
    scores: np.ndarray, frame: pd.DataFrame, test: np.ndarray, positive: str
) -> dict[str, Any]:
    """Held-out AUROC (with interval) and stratified AUROC of `scores` for label `positive`."""
    real = (frame["origin"] == "real").to_numpy()
    y = (frame["label"] == positive).to_numpy()
    rows = test & real
    out: dict[str, Any] = {}
    try:
        est = auroc(y[rows].astype(float), scores[rows], n_resamples=1000)
        out.update(auroc=est.value, auroc_low=est.low, auroc_high=est.high, n_test=est.n)
    except ValueError:
        out.update(auroc=float("nan"), auroc_low=float("nan"), auroc_high=float("nan"), n_test=0)
    strata = strata_of(
        frame["type"].to_numpy()[rows],
        frame["n_tokens"].to_numpy()[rows],
        frame["word_start"].to_numpy()[rows],
    )
    strat, pairs = stratified_auroc(scores[rows], y[rows], strata)
    out.update(
        auroc_strata=strat.value,
        auroc_strata_low=strat.low,
        auroc_strata_high=strat.high,
        strata_pairs=pairs,
    )
    # the extra control: held-out known entities against invented names
    known_test = test & real & y
    invented = test & ~real
    if invented.sum() >= 2 and known_test.sum() >= 2 and positive == "known":
        mix = known_test | invented
        out["auroc_invented"] = auroc(
            known_test[mix].astype(float), scores[mix], n_resamples=200
        ).value
    else:
        out["auroc_invented"] = float("nan")
    return out


def _features(frame: pd.DataFrame, with_type: bool) -> np.ndarray:
    """(token count, word-start flag), and one column per entity type when `with_type`."""
    x = [frame["n_tokens"].to_numpy(float), frame["word_start"].to_numpy(float)]
    if with_type:
        x += [(frame["type"] == t).to_numpy(float) for t in sorted(frame["type"].unique())]
    return np.stack(x, 1)


def _surface_features(frame: pd.DataFrame) -> np.ndarray:
    """One column per stratum (`strata_of`) and the name's length in characters: inside a
    stratum, all this regression can use is the length of the name."""
    strata = strata_of(
        frame["type"].to_numpy(), frame["n_tokens"].to_numpy(), frame["word_start"].to_numpy()
    )
    x = [(strata == key).astype(float) for key in np.unique(strata)]
    x.append(frame["name"].astype(str).str.len().to_numpy(float))
    return np.stack(x, 1)


def _logistic_held_out(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Logistic regression fitted on `train`: held-out AUROC with its 95% interval (NaN when a
    split lacks one label), and its scores for every row (None when it could not be fitted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    nan = float("nan")
    out = {"auroc": nan, "auroc_low": nan, "auroc_high": nan, "n_test": int(test.sum())}
    if len(set(y[train].tolist())) < 2:
        return out, None
    scale = StandardScaler().fit(x[train])
    clf = LogisticRegression(random_state=seed).fit(scale.transform(x[train]), y[train])
    scores = clf.predict_proba(scale.transform(x))[:, 1]
    try:
        est = auroc(y[test].astype(float), scores[test], n_resamples=1000)
    except ValueError:  # too few held-out entities of one label
        return out, scores
    return {"auroc": est.value, "auroc_low": est.low, "auroc_high": est.high, "n_test": est.n}, (
        scores
    )


def tokenization_baseline(frame: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Logistic regressions on surface features, fitted on the train split, scored held out.

    - `auroc` (+ `_low`, `_high`, and `auroc_cv5`, 5-fold cross-validated over all real
      entities): token count and word-start flag, the issue's tokenization-only baseline;
    - `type_auroc` (+ interval): the same with the entity type added. When the types differ in
      how many of their entities are known, the type alone predicts the label, and a direction
      fitted across types can ride on it;
    - `surface_auroc` (+ interval): a regression on the stratum (type × token count × word
      start, one column each) and the name's length in characters, and `surface_strata`
      (+ interval): its AUROC within strata, where only the length is left to it: the null a
      direction's within-strata AUROC must beat.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    real = (frame["origin"] == "real").to_numpy()
    y = (frame["label"] == "known").to_numpy()
    train = real & (frame["split"] == "train").to_numpy()
    test = real & (frame["split"] == "test").to_numpy()
    x = _features(frame, with_type=False)
    out, _ = _logistic_held_out(x, y, train, test, seed)
    typed, _ = _logistic_held_out(_features(frame, with_type=True), y, train, test, seed)
    out |= {f"type_{k}": typed[k] for k in ("auroc", "auroc_low", "auroc_high")}
    surface, scores = _logistic_held_out(_surface_features(frame), y, train, test, seed)
    out |= {f"surface_{k}": surface[k] for k in ("auroc", "auroc_low", "auroc_high")}
    nan = float("nan")
    out |= {"surface_strata": nan, "surface_strata_low": nan, "surface_strata_high": nan}
    if scores is not None:
        strata = strata_of(
            frame["type"].to_numpy()[test],
            frame["n_tokens"].to_numpy()[test],
            frame["word_start"].to_numpy()[test],
        )
        est, _ = stratified_auroc(scores[test], y[test], strata)
        out |= {"surface_strata": est.value, "surface_strata_low": est.low}
        out["surface_strata_high"] = est.high
    # and 5-fold cross-validated over every real entity (a check on the one held-out split)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    if min(int(y[real].sum()), int((~y[real]).sum())) >= 5:
        model = make_pipeline(StandardScaler(), LogisticRegression())
        cv = cross_val_predict(model, x[real], y[real], cv=folds, method="predict_proba")[:, 1]
        out["auroc_cv5"] = auroc(y[real].astype(float), cv, n_resamples=200).value
    return out


def diff_means_by_layer(
    data: EntityActivations, baselines: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Held-out AUROC of the difference-of-means direction at every captured block."""
    frame = data.frame
    real = (frame["origin"] == "real").to_numpy()
    known = (frame["label"] == "known").to_numpy()
    train = real & (frame["split"] == "train").to_numpy()
    test = (frame["split"] == "test").to_numpy()
    rows = []
    for pos in POSITIONS:
        x = data.acts[pos].float()
        for li, layer in enumerate(data.layers):
            d = x[train & known, li].mean(0) - x[train & ~known, li].mean(0)
            scores = (x[:, li] @ d).numpy()
            rows.append(
                {
                    "position": pos,
                    "layer": layer,
                    "method": "diff_means",
                    **_held_out(scores, frame, test, "known"),
                }
            )
    return _verdicts(pd.DataFrame(rows), baselines or {})


def _verdicts(table: pd.DataFrame, baselines: Mapping[str, Any]) -> pd.DataFrame:
    """Whether each held-out AUROC beats the baselines (`tokenization_baseline`'s output; module
    docstring, step 4); a missing baseline is beaten by nothing, except the within-strata null,
    which falls back to chance (0.5)."""
    nan = float("nan")
    null = baselines.get("surface_strata", nan)
    null = 0.5 if not np.isfinite(null) else float(null)
    if not table.empty:
        table["beats_tokens"] = table["auroc_low"] > baselines.get("auroc", nan)
        table["beats_type"] = table["auroc_low"] > baselines.get("type_auroc", nan)
        table["beats_strata"] = table["auroc_strata_low"] > null
    return table


def separation(
    active: np.ndarray, frame: pd.DataFrame, rows: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Per-type `s_known = f_known − f_unknown` over `rows`: `[type, latent]` and the types."""
    types = sorted(frame["type"].unique())
    known = (frame["label"] == "known").to_numpy()
    real = (frame["origin"] == "real").to_numpy()
    out = []
    for t in types:
        of_t = rows & real & (frame["type"] == t).to_numpy()
        k, u = of_t & known, of_t & ~known
        if not k.any() or not u.any():
            out.append(np.full(active.shape[1], np.nan))
            continue
        out.append(active[k].mean(0) - active[u].mean(0))
    return np.stack(out), types


def score_latents(
    data: EntityActivations,
    saes: Sequence[LoadedSAE],
    *,
    top: int = 10,
    density_limit: float | None = DENSITY_LIMIT,
    baselines: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The top known and unknown latents of every SAE, at both positions, with held-out scores."""
    frame = data.frame
    train = (frame["split"] == "train").to_numpy()
    test = ~train
    rows: list[dict[str, Any]] = []
    for sae in saes:
        if sae.layer not in data.layers:
            raise ValueError(f"block {sae.layer} was not captured; captured: {data.layers}")
        li = data.layers.index(sae.layer)
        if sae.density is None and density_limit is not None:
            raise ValueError(
                f"SAE {sae.source} has no per-latent density on generic text, which the "
                f"{density_limit:.0%} filter needs; measure it (interp.saes.evaluate."
                "reconstruction_stats on corpus activations) or pass density_limit=None"
            )
        dense = sae.density.numpy() if sae.density is not None else np.zeros(sae.d_sae)
        allowed = dense <= density_limit if density_limit is not None else dense == dense
        for pos in POSITIONS:
            feats = sae.encode(data.acts[pos][:, li]).numpy()
            active = feats > 0
            per_type, types = separation(active.astype(float), frame, train)
            # the same score with the types pooled (what the minimum over types hides)
            pooled, _ = separation(active.astype(float), frame.assign(type="all"), train)
            for kind, sign in (("known", 1.0), ("unknown", -1.0)):
                score = np.where(allowed, np.nanmin(sign * per_type, axis=0), -np.inf)
                # only latents that separate at all: ranking silent latents would be a tie-break
                order = [j for j in np.argsort(-score)[:top] if score[j] > 0]
                for rank, j in enumerate(order):
                    # an unknown latent classifies "unknown": its activation, negated, ranks known
                    held = _held_out(feats[:, j] * sign, frame, test, "known")
                    # example contexts: the entities it fires on most (none if it never fires)
                    firing = np.argsort(-feats[:, j])[:5]
                    top_names = frame["name"].to_numpy()[firing[feats[firing, j] > 0]]
                    rows.append(
                        {
                            "layer": sae.layer,
                            "position": pos,
                            "kind": kind,
                            "rank": rank,
                            "latent": int(j),
                            "separation": float(score[j]) + 0.0,  # + 0.0: no "-0.0"
                            **{
                                f"sep_{t}": float(sign * per_type[i, j]) + 0.0
                                for i, t in enumerate(types)
                            },
                            "sep_pooled": float(sign * pooled[0, j]) + 0.0,
                            "density": float(dense[j]),
                            "freq_known": float(
                                active[(frame["label"] == "known").to_numpy(), j].mean()
                            ),
                            "freq_unknown_real": float(
                                active[
                                    (
                                        (frame["label"] == "unknown") & (frame["origin"] == "real")
                                    ).to_numpy(),
                                    j,
                                ].mean()
                            ),
                            "freq_invented": float(
                                active[(frame["origin"] == "invented").to_numpy(), j].mean()
                            )
                            if (frame["origin"] == "invented").any()
                            else float("nan"),
                            "top_entities": " | ".join(map(str, top_names)),
                            **held,
                        }
                    )
    return _verdicts(pd.DataFrame(rows), baselines or {})
