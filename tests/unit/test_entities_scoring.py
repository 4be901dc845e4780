"""Entity scoring on the tiny model, against computations written here: the entity's tokens,
the captured residual at the name's last token and the next one (plain HF forward), the
separation score, the within-strata AUROC and the held-out baselines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.entities.data import load_entities
from interp.entities.scoring import (
    capture_entities,
    diff_means_by_layer,
    separation,
    strata_of,
    stratified_auroc,
    tokenization_baseline,
)
from interp.entities.tokens import locate_all
from tests.tolerance import FP32, assert_close

NAMES = ["Paris", "Snowflakes drifted", "Velmora", "Road", "Ocean mountains", "Tell", "Why"]


def entity_file(tmp_path: Path) -> Path:
    types = {
        "city": {
            "noun": "city",
            "attributes": {
                "country": {"kind": "text", "question": "Where is {entity}?", "prefix": "{entity}"}
            },
        },
        "person": {
            "noun": "person",
            "attributes": {
                "country": {"kind": "text", "question": "Where is {entity}?", "prefix": "{entity}"}
            },
        },
    }
    entities = [
        {
            "type": "city" if i % 2 else "person",
            "name": name,
            "origin": "invented" if name == "Velmora" else "real",
            "attributes": {} if name == "Velmora" else {"country": ["x"]},
        }
        for i, name in enumerate(NAMES)
    ]
    path = tmp_path / "entities.json"
    path.write_text(json.dumps({"types": types, "entities": entities}))
    return path


def labels_for(data, known: set[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "type": [e.type for e in data.entities],
            "name": [e.name for e in data.entities],
            "label": ["known" if e.name in known else "unknown" for e in data.entities],
        }
    )


def test_entity_tokens_match_the_tokenizer(tiny, tmp_path):
    data = load_entities(entity_file(tmp_path))
    prompts, found = locate_all(tiny, list(data.entities), data.types)
    for entity, prompt, where in zip(data.entities, prompts, found, strict=True):
        assert prompt == f"The {data.types[entity.type].noun} {entity.name} is"
        enc = tiny.tokenizer(prompt, return_offsets_mapping=True)
        ids, spans = enc["input_ids"], enc["offset_mapping"]
        start = prompt.index(entity.name)
        end = start + len(entity.name)
        inside = [i for i, (a, b) in enumerate(spans) if b > start and a < end]
        assert where.last == inside[-1] and where.n_tokens == len(inside)
        assert where.after == where.last + 1 < len(ids)
        assert tiny.tokenizer.decode(ids[where.after :]).strip() == "is"
        text = tiny.tokenizer.decode([ids[where.last]])
        assert where.word_start == (where.n_tokens == 1 or text.startswith(" "))


def test_capture_reads_the_last_entity_token_and_the_next_one(tiny, tiny_dir, tmp_path):
    data = load_entities(entity_file(tmp_path))
    labels = labels_for(data, {"Paris", "Road", "Tell"})
    acts = capture_entities(tiny, data, labels, batch_size=3)
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    _, found = locate_all(tiny, list(data.entities), data.types)
    for i, (row, where) in enumerate(zip(acts.frame.itertuples(), found, strict=True)):
        ids = tiny.tokenizer(row.prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hs = hf(ids, output_hidden_states=True).hidden_states
        # batches of 3 through the bridge against plain HF alone: other kernels, so rounding
        # (measured 1.3e-6 of the activations here; 10 x FP32 for margin)
        for layer in range(tiny.n_layers - 1):  # the last entry carries the final norm
            last, after = hs[layer + 1][0, where.last], hs[layer + 1][0, where.after]
            assert_close(acts.acts["last"][i, layer], last, rel=10 * FP32, what="last")
            assert_close(acts.acts["after"][i, layer], after, rel=10 * FP32, what="after")
    assert set(acts.frame["split"]) <= {"train", "test"}
    # the split is a function of the entity alone: another selection keeps each one's split
    again = capture_entities(tiny, data.select(["city"]), labels)
    merged = again.frame.merge(acts.frame, on="name", suffixes=("", "_all"))
    assert (merged["split"] == merged["split_all"]).all()


def test_ambiguous_entities_are_left_out_and_none_labelled_is_an_error(tiny, tmp_path):
    data = load_entities(entity_file(tmp_path))
    labels = labels_for(data, {"Paris"})
    labels.loc[labels["name"] == "Road", "label"] = "ambiguous"
    acts = capture_entities(tiny, data, labels)
    assert "Road" not in set(acts.frame["name"]) and len(acts.frame) == len(NAMES) - 1
    labels["label"] = "ambiguous"
    with pytest.raises(ValueError, match="no entity is labelled known or unknown"):
        capture_entities(tiny, data, labels)


def test_stratified_auroc_counts_only_pairs_within_a_stratum():
    rng = np.random.default_rng(0)
    n = 60
    scores = rng.normal(size=n)
    known = rng.random(n) < 0.5
    n_tokens = rng.integers(1, 7, size=n)
    word_start = rng.random(n) < 0.5
    types = rng.choice(["city", "book"], size=n)
    est, pairs = stratified_auroc(scores, known, strata_of(types, n_tokens, word_start))
    wins = total = 0.0
    for i, j in itertools.product(range(n), range(n)):
        same = (
            min(n_tokens[i], 4) == min(n_tokens[j], 4)
            and word_start[i] == word_start[j]
            and types[i] == types[j]
        )
        if known[i] and not known[j] and same:
            total += 1
            wins += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0
    assert pairs == total and est.value == pytest.approx(wins / total)
    assert est.low < est.value < est.high
    # neither the token count nor the type wins anything inside a stratum
    for confound in (np.minimum(n_tokens, 4).astype(float), (types == "city").astype(float)):
        flat, _ = stratified_auroc(confound, known, strata_of(types, n_tokens, word_start))
        assert flat.value == pytest.approx(0.5)
    # a score that orders every within-stratum pair gets 1 in every resample
    perfect, _ = stratified_auroc(
        known.astype(float), known, strata_of(types, n_tokens, word_start)
    )
    assert (perfect.value, perfect.low, perfect.high) == (1.0, 1.0, 1.0)


def test_stratified_auroc_interval_is_a_bootstrap_over_entities():
    """The interval recomputed here: resample entities, count each pair by its draws."""
    rng = np.random.default_rng(1)
    n = 30
    scores = rng.normal(size=n)
    known = np.arange(n) % 2 == 0
    strata = np.where(np.arange(n) < 15, "a", "b")
    est, _ = stratified_auroc(scores, known, strata, n_resamples=400, seed=3)
    draws = np.random.default_rng(3).integers(0, n, size=(400, n))  # scipy's percentile draws
    values = []
    for draw in draws:
        counts = np.bincount(draw, minlength=n)
        wins = total = 0.0
        for i, j in itertools.product(range(n), range(n)):
            if known[i] and not known[j] and strata[i] == strata[j]:
                w = counts[i] * counts[j]
                total += w
                wins += w * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0)
        if total:
            values.append(wins / total)
    low, high = np.percentile(values, [2.5, 97.5])
    assert (est.low, est.high) == pytest.approx((low, high), abs=1e-9)


def test_separation_is_frequency_known_minus_unknown_per_type():
    frame = pd.DataFrame(
        {
            "type": ["a", "a", "a", "b", "b", "b", "a"],
            "label": ["known", "unknown", "unknown", "known", "known", "unknown", "known"],
            "origin": ["real"] * 6 + ["invented"],
        }
    )
    active = np.array([[1, 0], [0, 0], [1, 1], [1, 1], [0, 1], [0, 0], [0, 0]], dtype=float)
    rows = np.array([True] * 7)
    per_type, types = separation(active, frame, rows)
    assert types == ["a", "b"]
    # type a: known {0} (invented row 6 excluded), unknown {1, 2}
    np.testing.assert_allclose(per_type[0], [1 - 0.5, 0 - 0.5])
    np.testing.assert_allclose(per_type[1], [0.5 - 0, 1 - 0])


def test_baselines_see_what_tokenization_and_the_residual_give(tiny, tmp_path):
    data = load_entities(entity_file(tmp_path))
    known = {"Paris", "Road", "Tell", "Why"}
    acts = capture_entities(tiny, data, labels_for(data, known))
    frame = acts.frame.copy()
    # hand-made split and features: token count decides the label exactly
    train_names = {"Paris", "Road", "Velmora"}
    frame["split"] = ["train" if n in train_names else "test" for n in frame["name"]]
    frame["n_tokens"] = [1 if n in known else 3 for n in frame["name"]]
    frame["word_start"] = True
    frame["origin"] = "real"
    perfect = tokenization_baseline(pd.concat([frame] * 3, ignore_index=True))
    assert perfect["auroc"] == pytest.approx(1.0) and perfect["type_auroc"] == pytest.approx(1.0)
    # when the type alone decides the label, only the regression with the type sees it
    by_type = frame.assign(n_tokens=2, label=np.where(frame["type"] == "city", "known", "unknown"))
    typed = tokenization_baseline(pd.concat([by_type] * 3, ignore_index=True))
    assert typed["auroc"] == pytest.approx(0.5) and typed["type_auroc"] == pytest.approx(1.0)
    # the name's length: only the regression that sees it, inside strata too
    by_length = frame.assign(
        n_tokens=2, label=np.where(frame["name"].str.len() > 4, "known", "unknown")
    )
    surface = tokenization_baseline(pd.concat([by_length] * 3, ignore_index=True))
    assert surface["surface_auroc"] == pytest.approx(1.0) and surface["type_auroc"] < 0.9
    assert surface["surface_strata"] == pytest.approx(1.0)
    acts.frame = frame
    table = diff_means_by_layer(acts, {"auroc": 0.5})
    assert set(table["position"]) == {"last", "after"}
    assert sorted(set(table["layer"])) == list(range(tiny.n_layers))
    # the direction is the train means' difference; its projection is recomputed here
    x = acts.acts["last"][:, 1]
    train = (frame["split"] == "train").to_numpy()
    is_known = (frame["label"] == "known").to_numpy()
    d = x[train & is_known].mean(0) - x[train & ~is_known].mean(0)
    scores = (x @ d).numpy()[~train]
    y = is_known[~train]
    pos, neg = scores[y], scores[~y]
    expected = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    got = table[(table["position"] == "last") & (table["layer"] == 1)]["auroc"].item()
    assert got == pytest.approx(expected)

    # within strata: one token count for all, so the strata are the entity types
    acts.frame = frame.assign(n_tokens=2)
    baselines = {"auroc": 0.55, "type_auroc": 0.7, "surface_strata": 0.6}
    table = diff_means_by_layer(acts, baselines)
    row = table[(table["position"] == "last") & (table["layer"] == 1)].iloc[0]
    types = frame["type"].to_numpy()[~train]
    wins = [
        (p > q) + 0.5 * (p == q)
        for i, p in enumerate(scores)
        for j, q in enumerate(scores)
        if y[i] and not y[j] and types[i] == types[j]
    ]
    assert row["auroc_strata"] == pytest.approx(np.mean(wins)) and row["strata_pairs"] == len(wins)
    assert (table["beats_tokens"] == (table["auroc_low"] > 0.55)).all()
    assert (table["beats_type"] == (table["auroc_low"] > 0.7)).all()
    assert (table["beats_strata"] == (table["auroc_strata_low"] > 0.6)).all()
