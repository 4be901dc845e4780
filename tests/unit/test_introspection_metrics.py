"""Detection metrics on hand-built graded frames, against rates counted by hand in the test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from interp.introspection.metrics import (
    cell_rates,
    concept_rates,
    difference,
    layer_rates,
    load_graded,
    rate,
    rates,
    save_metrics,
    summary,
)

# (coherent, affirmative, identified, thinking) per trial
INJ = {
    # cell (block 2, strength 4): 4 concepts
    (2, 4.0): [
        ("Dust", (True, True, True, True)),  # success, influence
        ("Snow", (False, True, True, True)),  # identified but incoherent: no success
        ("Milk", (True, False, False, True)),  # influence only
        ("Bread", (True, False, False, False)),
    ],
    # cell (block 2, strength 8)
    (2, 8.0): [
        ("Dust", (True, True, True, True)),
        ("Snow", (True, True, True, False)),
        ("Milk", (False, False, False, True)),
        ("Bread", (True, False, False, True)),
    ],
    # cell (block 5, strength 4)
    (5, 4.0): [
        ("Dust", (True, False, False, False)),
        ("Snow", (True, False, False, False)),
        ("Milk", (True, False, False, True)),
        ("Bread", (True, True, False, False)),  # a claim without the word
    ],
}
# affirmative flags of the 4 controls of each cell
CONTROLS = {
    (2, 4.0): [False, False, True, False],
    (2, 8.0): [False] * 4,
    (5, 4.0): [True] * 2 + [False] * 2,
}
# baseline_thinking of the same controls: the reply graded for a paired concept
BASELINE = {
    (2, 4.0): [True, False, False, False],
    (2, 8.0): [False] * 4,
    (5, 4.0): [True, True, False, False],
}
FRACTION = {2: 0.33, 5: 0.83}


def row(layer, strength, trial, concept, crit, sample=0, scale="raw"):
    coherent, affirmative, identified, thinking = crit
    return {
        "experiment": "detection",
        "scale": scale,
        "fraction": FRACTION[layer],
        "layer": layer,
        "strength": strength,
        "trial": trial,
        "concept": concept,
        "sample": sample,
        "text": "reply",
        "coherent": coherent,
        "affirmative": affirmative,
        "identified": identified,
        "thinking": thinking,
        "grader": "rule-abc",
    }


def graded(scale: str = "raw") -> pd.DataFrame:
    rows = []
    for (layer, strength), trials in INJ.items():
        for concept, crit in trials:
            rows.append(row(layer, strength, "injected", concept, crit, scale=scale))
        paired = sorted(c for c, _ in trials)
        for sample, aff in enumerate(CONTROLS[(layer, strength)]):
            crit = (True, aff, False, False)
            rows.append(row(layer, strength, "control", None, crit, sample, scale))
            rows[-1]["baseline_concept"] = paired[sample]
            rows[-1]["baseline_thinking"] = BASELINE[(layer, strength)][sample]
    return pd.DataFrame(rows)


def by_hand(trials, test):
    return sum(test(crit) for _, crit in trials) / len(trials)


def success(c):
    return c[0] and c[2]


def test_cell_rates_match_counts_by_hand():
    table = cell_rates(graded(), n_resamples=200)
    assert len(table) == 3
    for (layer, strength), trials in INJ.items():
        got = table[(table.layer == layer) & (table.strength == strength)].iloc[0]
        controls = CONTROLS[(layer, strength)]
        fp = sum(controls) / len(controls)
        assert got.success == pytest.approx(by_hand(trials, success))
        assert got.influence == pytest.approx(by_hand(trials, lambda c: c[3]))
        assert got.detection == pytest.approx(by_hand(trials, lambda c: c[1]))
        assert got.coherence == pytest.approx(by_hand(trials, lambda c: c[0]))
        assert got.false_positive == pytest.approx(fp)
        assert got.net == pytest.approx(by_hand(trials, success) - fp)
        assert got.n_injected == 4 and got.n_control == 4
        assert got.success_k == sum(success(c) for _, c in trials)
        assert got.fraction == FRACTION[layer]
        baseline = BASELINE[(layer, strength)]
        assert got.influence_baseline == pytest.approx(sum(baseline) / 4)
        assert got.n_baseline == 4 and got.influence_baseline_k == sum(baseline)
        for name in ("success", "false_positive", "net", "influence", "influence_baseline"):
            assert got[f"{name}_low"] <= got[name] <= got[f"{name}_high"]


def test_layer_rates_pool_strengths_and_concept_rates_pool_the_grid():
    layers = layer_rates(graded(), n_resamples=200).set_index("layer")
    pooled = INJ[(2, 4.0)] + INJ[(2, 8.0)]
    assert layers.loc[2, "n_injected"] == 8 and layers.loc[2, "n_control"] == 8
    assert layers.loc[2, "influence"] == pytest.approx(by_hand(pooled, lambda c: c[3]))
    assert layers.loc[2, "false_positive"] == pytest.approx(1 / 8)
    assert layers.loc[5, "false_positive"] == pytest.approx(2 / 4)
    assert layers.loc[2, "influence_baseline"] == pytest.approx(1 / 8)  # 1 of 8 controls
    assert layers.loc[5, "influence_baseline"] == pytest.approx(2 / 4)
    assert layers.loc[2, "n_baseline"] == 8

    concepts = concept_rates(graded(), n_resamples=200).set_index("concept")
    all_fp = sum(sum(v) for v in CONTROLS.values()) / 12  # every control of the scale
    for concept in ("Dust", "Snow", "Milk", "Bread"):
        trials = [(w, c) for cell in INJ.values() for w, c in cell if w == concept]
        got = concepts.loc[concept]
        assert got.n_injected == 3 and got.n_control == 12
        assert got.success == pytest.approx(by_hand(trials, success))
        assert got.influence == pytest.approx(by_hand(trials, lambda c: c[3]))
        assert got.false_positive == pytest.approx(all_fp)
        assert got.net == pytest.approx(by_hand(trials, success) - all_fp)
        assert got.influence_baseline == pytest.approx(3 / 12)  # every control of the scale


def test_influence_baseline_is_missing_without_the_baseline_columns():
    frame = graded()
    bare = cell_rates(frame.drop(columns=["baseline_concept", "baseline_thinking"]))
    assert bare["influence_baseline"].isna().all() and (bare["n_baseline"] == 0).all()
    assert (bare["influence_baseline_k"] == 0).all()
    # a control without a paired concept is left out of the baseline, not counted as NO
    partial = frame.copy()
    partial["baseline_thinking"] = partial["baseline_thinking"].astype(object)
    first = partial.index[(partial.trial == "control") & (partial.layer == 5)][0]
    partial.loc[first, "baseline_thinking"] = None  # was True
    table = cell_rates(partial, n_resamples=200).set_index(["layer", "strength"])
    assert table.loc[(5, 4.0), "n_baseline"] == 3
    assert table.loc[(5, 4.0), "influence_baseline"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="baseline_thinking must be a boolean"):
        cell_rates(frame.assign(baseline_thinking="maybe"))


def test_scales_are_kept_apart():
    frame = pd.concat([graded("raw"), graded("unit_norm").assign(affirmative=True)])
    table = cell_rates(frame, n_resamples=200)
    assert len(table) == 6
    raw = table[table.scale == "raw"].set_index(["layer", "strength"])
    unit = table[table.scale == "unit_norm"].set_index(["layer", "strength"])
    assert raw.loc[(2, 8.0), "false_positive"] == 0.0
    assert unit.loc[(2, 8.0), "false_positive"] == 1.0


def test_interval_contains_the_estimate_and_narrows_with_n():
    values = [True, False, False, True, False]  # 0.4
    small = rate(values)
    large = rate(values * 20)
    assert small.value == large.value == pytest.approx(0.4)
    assert small.low <= 0.4 <= small.high and large.low <= 0.4 <= large.high
    assert large.high - large.low < (small.high - small.low) / 2
    assert rate(values, seed=3) == rate(values, seed=3)  # seeded: same call, same interval
    one = rate([True])
    assert one.value == 1.0 and np.isnan(one.low) and np.isnan(one.high)
    # the frame's intervals narrow the same way when every trial is repeated
    frame = graded()
    wide = cell_rates(frame, n_resamples=500)
    narrow = cell_rates(pd.concat([frame] * 16), n_resamples=500)
    for name in ("success", "false_positive", "net", "influence"):
        w = wide[f"{name}_high"] - wide[f"{name}_low"]
        n = narrow[f"{name}_high"] - narrow[f"{name}_low"]
        varied = w > 0
        assert (n[varied] < w[varied]).all(), name
        assert np.allclose(narrow[name], wide[name])


def test_net_resamples_injected_and_controls_independently():
    rng = np.random.default_rng(1)
    injected = rng.random(60) < 0.3
    control = rng.random(40) < 0.1  # another size: a paired bootstrap could not run
    est = difference(injected, control, n_resamples=4000)
    assert est.value == pytest.approx(injected.mean() - control.mean())
    assert est.n == 60
    # independent check: resample each side on its own, many times
    sim = np.random.default_rng(7)
    draws = [sim.choice(injected, 60).mean() - sim.choice(control, 40).mean() for _ in range(20000)]
    low, high = np.percentile(draws, [2.5, 97.5])
    assert est.low == pytest.approx(low, abs=0.03) and est.high == pytest.approx(high, abs=0.03)
    # with success constant, net's interval is the false-positive interval mirrored
    flat = difference([True] * 30, control, n_resamples=4000)
    fp = rate(control, n_resamples=4000)
    assert flat.low == pytest.approx(1 - fp.high, abs=0.03)
    assert flat.high == pytest.approx(1 - fp.low, abs=0.03)


def test_empty_groups_and_bad_frames_are_clear_errors():
    frame = graded()
    with pytest.raises(ValueError, match="frame is empty"):
        cell_rates(frame.iloc[0:0])
    with pytest.raises(ValueError, match="no control trials in the graded frame"):
        cell_rates(frame[frame.trial == "injected"])
    with pytest.raises(ValueError, match="no injected trials"):
        cell_rates(frame[frame.trial == "control"])
    lacking = frame[~((frame.trial == "control") & (frame.layer == 5))]
    with pytest.raises(
        ValueError, match=r"no control trials for scale=raw, fraction=0.83, layer=5"
    ):
        cell_rates(lacking)
    with pytest.raises(ValueError, match=r"lacks columns \['thinking'\]"):
        cell_rates(frame.drop(columns="thinking"))
    with pytest.raises(ValueError, match="from 2 graders"):
        cell_rates(frame.assign(grader=["a", "b"] * (len(frame) // 2)))
    with pytest.raises(ValueError, match="cannot group by"):
        rates(frame, ["nope"])
    with pytest.raises(ValueError, match="no 'detection' trials"):
        cell_rates(frame.assign(experiment="prefill"))
    with pytest.raises(ValueError, match="must be a boolean"):
        cell_rates(frame.assign(coherent=0.5))
    with pytest.raises(ValueError, match="needs at least one trial"):
        rate([])


def test_summary_reports_overall_best_cell_and_peak_influence_layer():
    table = summary(graded(), n_resamples=200)
    assert list(table["row"]) == ["all trials", "best cell by net", "peak influence layer"]
    overall, best, peak = (table.iloc[i] for i in range(3))
    n_success = sum(success(c) for cell in INJ.values() for _, c in cell)
    assert overall.success_k == n_success and overall.n_injected == 12
    assert overall.false_positive_k == 3 and overall.n_control == 12
    assert overall.success.startswith(f"{n_success / 12:.3f} [")
    # block 2 strength 8: success 2/4 and no false positive, the best net of the three cells
    assert best.setting == "block 2, depth 0.33, strength 8" and best.net.startswith("0.500")
    assert peak.setting == "block 2, depth 0.33"
    assert overall.influence_baseline.startswith(f"{3 / 12:.3f} [")
    assert peak.influence_baseline.startswith(f"{1 / 8:.3f} [")


def test_saved_metrics_and_graded_files_round_trip(tmp_path):
    frame = graded()
    jsonl = tmp_path / "graded.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    frame.to_csv(tmp_path / "graded.csv", index=False)
    for path in (jsonl, tmp_path / "graded.csv"):
        loaded = load_graded(path)
        assert loaded["concept"].isna().sum() == 12
        pd.testing.assert_frame_equal(
            cell_rates(loaded, n_resamples=200), cell_rates(frame, n_resamples=200)
        )
    files = save_metrics(frame, tmp_path / "m", n_resamples=200)
    assert set(files) == {"metrics_cells", "metrics_layers", "metrics_concepts", "summary"}
    cells = pd.read_csv(files["metrics_cells"])
    assert len(cells) == 3 and cells["net"].tolist() == pytest.approx(
        cell_rates(frame, n_resamples=200)["net"].tolist()
    )
