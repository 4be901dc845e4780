"""Sweep grids, metric tables and figures from saved results, against hand computations."""

import itertools
import math
import random
import re
import statistics

import pytest
import torch

from interp.eval.metrics import summarize
from interp.runs.store import RunStore, load_frame
from interp.runs.sweeps import grid


def _trace_key(name):
    """(layer, vector) from a legend name like 'block 3 (vector=ab12)'."""
    found = re.fullmatch(r"block (\d+) \(vector=(\w+)\)", name)
    assert found is not None, name
    return int(found.group(1)), found.group(2)


def _sem(values):
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def test_grid_is_prompts_by_layers_by_coefs_by_samples(tiny):
    from interp.positions import RESPONSE
    from interp.vectors import DirectionSet

    ds = DirectionSet.from_tensor(torch.randn(4, 64), tiny)
    prompts, layers, coefs = ["a", "b", "c"], [1, 3], [-2.0, 0.0, 5.0]
    cells = grid(prompts, ds, layers, coefs, RESPONSE, "unit", samples=2)
    expected = list(itertools.product(range(3), layers, coefs, range(2)))
    got = [
        (c.config["prompt_index"], c.config["layer"], c.config["coef"], c.config["sample"])
        for c in cells
    ]
    assert got == expected
    for cell, (p, layer, coef, _) in zip(cells, expected, strict=True):
        # the vector by its values at the cell's layer (a sub-set or an added stat keys alike)
        assert cell.prompt == prompts[p] and cell.config["vector"] == ds.digest_at([layer])
        assert cell.config["positions"] == "response" and cell.config["scale"] == "unit"
        if coef == 0:
            assert cell.interventions == ()  # the unsteered point
        else:
            (add,) = cell.interventions
            assert (add.kind, add.layers, add.coef, add.scale) == ("add", (layer,), coef, "unit")
            assert str(add.positions) == "response" and add.directions is ds


def _sweep_records(seed=0):
    """Synthetic steering-sweep records: 2 vectors × 2 layers × 3 coefs × 3 prompts."""
    rng = random.Random(seed)
    records = []
    for vector, layer, coef, prompt in itertools.product(
        ("vecA", "vecB"), (1, 2), (-4.0, 0.0, 4.0), range(3)
    ):
        n = rng.randint(1, 40)
        text = rng.choice(["the ocean is deep", "Paris", "", "waves and OCEAN"])
        config = {
            "fingerprint": "f0",
            "vector": vector,
            "layer": layer,
            "coef": coef,
            "prompt_index": prompt,
            "prompt": {"prompt": f"p{prompt}", "response": ""},
            "sample": 0,
            "temperature": 0.0,
            "interventions": [] if coef == 0 else [{"vector": vector, "coef": coef}],
        }
        projection = math.nan if not text else rng.uniform(-3, 3)
        records.append(
            (config, {"model": "tiny", "text": text, "n_tokens": n, "projection": projection})
        )
    return records


def _by_hand(records, value):
    """(vector, layer, coef) -> (mean, sem, count) of value(result), NaNs left out."""
    groups: dict[tuple, list[float]] = {}
    for config, result in records:
        v = value(result)
        if not math.isnan(v):
            groups.setdefault((config["vector"], config["layer"], config["coef"]), []).append(v)
    return {k: (statistics.fmean(v), _sem(v), len(v)) for k, v in groups.items()}


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("length", lambda r: float(r["n_tokens"])),
        ("projection", lambda r: r["projection"]),
        ("match:oce+an", lambda r: float(bool(re.search("oce+an", r["text"], re.IGNORECASE)))),
    ],
)
def test_summarize_groups_by_the_full_config(tmp_path, metric, value):
    records = _sweep_records()
    store = RunStore(tmp_path / "r.jsonl")
    for config, result in records:
        store.append(config, result)
    table = summarize(load_frame(store.path), metric)
    assert list(table.columns) == [
        "config.vector", "config.layer", "config.coef", "mean", "sem", "count",
    ]  # fmt: skip
    expected = _by_hand(records, value)
    got = {
        (row["config.vector"], row["config.layer"], row["config.coef"]): (
            row["mean"],
            row["sem"],
            row["count"],
        )
        for _, row in table.iterrows()
    }
    assert got.keys() == expected.keys()  # one row per vector, never both averaged
    for key, (mean, sem, count) in expected.items():
        assert got[key] == (pytest.approx(mean), pytest.approx(sem), count)


def test_summarize_keeps_records_without_a_field_apart(tmp_path):
    records = _sweep_records()
    old = {**records[0][0], "prompt_index": 9}
    del old["vector"]  # a record written before the field existed
    frame = load_frame(_write(tmp_path, [*records, (old, records[0][1])]))
    table = summarize(frame, "length")
    assert "(none)" in set(table["config.vector"])
    assert len(table) == 13 and table["count"].sum() == len(records) + 1


def _write(tmp_path, records, name="r.jsonl"):
    store = RunStore(tmp_path / name)
    for config, result in records:
        store.append(config, result)
    return store.path


def test_steering_curve_draws_the_saved_means_per_vector_and_block(tmp_path):
    from interp.figures.plots import steering_curve

    records = _sweep_records(seed=1)
    fig = steering_curve(_write(tmp_path, records), "length")
    expected = _by_hand(records, lambda r: float(r["n_tokens"]))
    drawn = {}
    for trace in fig.data:
        layer, vector = _trace_key(trace.name)
        drawn[(vector, layer)] = trace
    assert sorted(drawn) == sorted({(v, layer) for v, layer, _ in expected})
    for (vector, layer), trace in drawn.items():
        coefs = sorted(c for v, lay, c in expected if (v, lay) == (vector, layer))
        assert list(trace.x) == coefs
        assert list(trace.y) == pytest.approx([expected[(vector, layer, c)][0] for c in coefs])
        assert list(trace.error_y.array) == pytest.approx(
            [expected[(vector, layer, c)][1] for c in coefs]
        )
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_caa_curves_draw_the_paired_change_per_vector_and_block(tmp_path):
    from interp.caa.figures import caa_ab_curves

    rng = random.Random(2)
    vectors = {"sycophancy": ("s1", "s2"), "myopic-reward": ("m1",)}
    records: list[tuple[dict, dict]] = []
    for behaviour, vecs in vectors.items():
        for vector, layer, mult, q in itertools.product(vecs, (3, 5), (-1.0, 0.0, 1.0), range(3)):
            config = {
                "fingerprint": "f0",
                "vector": vector,
                "site": "resid_post",
                "positions": "response",
                "behaviour": behaviour,
                "system": "sys",
                "question": f"q{q}",
                "matching": "(A)",
                "layer": layer,
                "multiplier": mult,
            }
            records.append((config, {"model": "tiny", "p_match": rng.random(), "ab_mass": 0.9}))
    fig = caa_ab_curves(_write(tmp_path, records))

    base = {
        (c["vector"], c["layer"], c["question"]): r["p_match"]
        for c, r in records
        if c["multiplier"] == 0
    }
    deltas: dict[tuple, list[float]] = {}
    for c, r in records:
        key = (c["behaviour"], c["vector"], c["layer"], c["multiplier"])
        deltas.setdefault(key, []).append(
            r["p_match"] - base[(c["vector"], c["layer"], c["question"])]
        )
    axis = {"x": "myopic-reward", "x2": "sycophancy"}  # subplots in sorted behaviour order
    drawn = set()
    for trace in fig.data:
        layer, vector = _trace_key(trace.name)
        behaviour = axis[trace.xaxis]
        mults = [-1.0, 0.0, 1.0]
        assert list(trace.x) == mults
        means = [statistics.fmean(deltas[(behaviour, vector, layer, m)]) for m in mults]
        sems = [_sem(deltas[(behaviour, vector, layer, m)]) for m in mults]
        assert list(trace.y) == pytest.approx(means)
        assert list(trace.error_y.array) == pytest.approx(sems)
        drawn.add((behaviour, vector, layer))
    assert drawn == {(b, v, layer) for b, vs in vectors.items() for v in vs for layer in (3, 5)}
