"""Introspection figures are drawn from saved result files and carry the files' numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from interp.introspection.figures import (
    FILES,
    concept_bars,
    draw_all,
    heatmaps,
    influence_by_layer,
    intent_traces,
    logit_beside_success,
)

LAYERS = {3: 0.33, 6: 0.67}
STRENGTHS = (1.0, 4.0, 16.0)
CONCEPTS = ("Dust", "Snow", "Milk", "Bread", "Peace")


def graded_rows(scales=("raw",), seed=0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for scale in scales:
        for layer, fraction in LAYERS.items():
            for strength in STRENGTHS:
                where = {
                    "experiment": "detection",
                    "model": "tiny",
                    "scale": scale,
                    "fraction": fraction,
                    "layer": layer,
                    "strength": strength,
                    "text": "...",
                    "grader": "rule-1",
                }
                for concept in CONCEPTS:
                    flags = rng.random(4) < [0.8, 0.4, 0.3, 0.5]
                    rows.append(
                        {
                            **where,
                            "trial": "injected",
                            "concept": concept,
                            "sample": 0,
                            **dict(
                                zip(
                                    ("coherent", "affirmative", "identified", "thinking"),
                                    map(bool, flags),
                                    strict=True,
                                )
                            ),
                        }
                    )
                for sample in range(4):
                    rows.append(
                        {
                            **where,
                            "trial": "control",
                            "concept": None,
                            "sample": sample,
                            "coherent": True,
                            "affirmative": bool(rng.random() < 0.3),
                            "identified": False,
                            "thinking": False,
                        }
                    )
    return rows


def save(tmp_path: Path, rows: list[dict], name: str = "graded.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def expected(rows: list[dict], trial: str, column) -> pd.Series:
    """Rates per (scale, layer, strength), computed here from the saved rows."""
    frame = pd.DataFrame(rows)
    frame = frame[frame.trial == trial]
    values = column(frame)
    return values.groupby([frame.scale, frame.layer, frame.strength]).mean()


def cell(fig_trace, layer: int, strength: float) -> float:
    y = list(fig_trace.y).index(f"block {layer} ({LAYERS[layer]:.2f})")
    x = list(fig_trace.x).index(f"{strength:g}")
    return fig_trace.z[y][x]


def test_success_and_false_positive_heatmaps_show_the_files_rates_and_counts(tmp_path):
    rows = graded_rows(("raw", "unit_norm"))
    path = save(tmp_path, rows)
    success = expected(rows, "injected", lambda f: f.coherent & f.identified)
    fp = expected(rows, "control", lambda f: f.affirmative)
    fig = heatmaps(path, "success")
    assert [t.name for t in fig.data] == ["raw", "unit_norm"]  # one panel per scale
    for trace in fig.data:
        for layer in LAYERS:
            for strength in STRENGTHS:
                assert cell(trace, layer, strength) == pytest.approx(
                    success[(trace.name, layer, strength)]
                )
        assert all(text.endswith("n=5") for row in trace.text for text in row)
    assert "success" in fig.layout.title.text
    assert fig.layout.xaxis.title.text.startswith("injection strength")
    assert "block" in fig.layout.yaxis.title.text
    fig = heatmaps(pd.read_json(path, lines=True), "false_positive")  # a frame read from a file
    for trace in fig.data:
        assert cell(trace, 6, 16.0) == pytest.approx(fp[(trace.name, 6, 16.0)])
        assert all(text.endswith("n=4") for row in trace.text for text in row)
    net = heatmaps(path, "net").data[0]
    assert cell(net, 3, 1.0) == pytest.approx(success[("raw", 3, 1.0)] - fp[("raw", 3, 1.0)])
    with pytest.raises(ValueError, match="unknown metric"):
        heatmaps(path, "accuracy")


def test_influence_lines_per_strength_with_interval_bars(tmp_path):
    rows = graded_rows()
    path = save(tmp_path, rows)
    influence = expected(rows, "injected", lambda f: f.thinking)
    fig = influence_by_layer(path)
    assert [t.name for t in fig.data] == [f"strength {s:g}" for s in STRENGTHS]
    for trace, strength in zip(fig.data, STRENGTHS, strict=True):
        assert list(trace.x) == list(LAYERS)
        want = [influence[("raw", layer, strength)] for layer in LAYERS]
        assert list(trace.y) == pytest.approx(want)
        # the bars span a 95% interval that holds the point
        assert all(u >= 0 for u in trace.error_y.array)
        assert all(d >= 0 for d in trace.error_y.arrayminus)
    assert fig.layout.yaxis.title.text.startswith("influence rate")


def test_influence_draws_the_uninjected_baseline_pooled_per_block(tmp_path):
    rows = graded_rows()
    rng = np.random.default_rng(7)
    for row in rows:  # controls graded against a paired concept, as grade_trials does
        control = row["trial"] == "control"
        row["baseline_concept"] = CONCEPTS[row["sample"]] if control else None
        row["baseline_thinking"] = bool(rng.random() < 0.4) if control else None
    fig = influence_by_layer(save(tmp_path, rows))
    (base,) = [t for t in fig.data if t.name == "no injection (controls)"]
    for layer, y in zip(base.x, base.y, strict=True):
        hits = [
            r["baseline_thinking"] for r in rows if r["trial"] == "control" and r["layer"] == layer
        ]
        assert y == pytest.approx(sum(hits) / len(hits))  # every control of the block, pooled


def test_concept_bars_pool_each_concept_over_the_grid(tmp_path):
    rows = graded_rows(("raw", "resid_norm"))
    path = save(tmp_path, rows)
    frame = pd.DataFrame(rows)
    injected = frame[(frame.trial == "injected") & (frame.scale == "raw")]
    influence = injected.groupby("concept")["thinking"].mean()
    success = (injected.coherent & injected.identified).groupby(injected.concept).mean()
    fig = concept_bars(path)
    success_bars, influence_bars = fig.data
    assert set(success_bars.x) == set(CONCEPTS)
    assert list(influence_bars.y) == sorted(influence_bars.y, reverse=True)  # ordered
    for x, s, i in zip(success_bars.x, success_bars.y, influence_bars.y, strict=True):
        assert s == pytest.approx(success[x]) and i == pytest.approx(influence[x])
    assert "scale raw" in fig.layout.title.subtitle.text
    with pytest.raises(ValueError, match="no trials at scale 'unit_norm'"):
        concept_bars(path, "unit_norm")


def intent_rows() -> list[dict]:
    """The per-block table of `intent.summarize_intent` (wide: one column set per condition)."""
    rows = []
    for layer in range(4):
        row: dict[str, float] = {"layer": layer}
        for name, mean in (("think", 0.1 * layer), ("dont", 0.05 * layer)):
            row.update({name: mean, f"{name}_low": mean - 0.02, f"{name}_high": mean + 0.02})
            row[f"{name}_n"] = 10
        row.update({"gap": 0.05 * layer, "gap_low": 0.0, "gap_high": 0.1, "gap_n": 10})
        row.update({"baseline": 0.01, "baseline_sd": 0.02, "baseline_low": -0.03})
        row["baseline_high"] = 0.05
        rows.append(row)
    return rows


def test_intent_traces_draw_think_dont_and_the_baseline_band(tmp_path):
    path = tmp_path / "intent.csv"
    pd.DataFrame(intent_rows()[::-1]).to_csv(path, index=False)  # any row order
    fig = intent_traces(path, model="tiny")
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    bands = {t.name: t for t in fig.data if t.fill == "toself"}
    assert set(lines) == {"control-word baseline", "“think about it”", "“don't think about it”"}
    think = lines["“think about it”"]
    assert list(think.x) == [0, 1, 2, 3] and list(think.y) == pytest.approx([0, 0.1, 0.2, 0.3])
    band = bands["“think about it” band"]
    assert list(band.y)[:4] == pytest.approx([0.02, 0.12, 0.22, 0.32])  # high, then low back
    assert list(band.y)[4:] == pytest.approx([0.28, 0.18, 0.08, -0.02])
    assert list(lines["control-word baseline"].y) == pytest.approx([0.01] * 4)
    assert list(bands["control-word baseline band"].y) == pytest.approx([0.05] * 4 + [-0.03] * 4)
    assert fig.layout.yaxis.title.text.startswith("cosine")
    assert fig.layout.title.subtitle.text.startswith("tiny; ")
    assert "10 prompts per condition" in fig.layout.title.subtitle.text
    with pytest.raises(ValueError, match="lack columns"):
        intent_traces(pd.DataFrame({"layer": [0], "think": [1.0]}))


def test_logit_score_beside_graded_success(tmp_path):
    rows = graded_rows()
    graded = save(tmp_path, rows)
    scores = [
        {"scale": "raw", "layer": layer, "fraction": f, "strength": s, "score": -0.1 * s + k}
        for layer, f in LAYERS.items()
        for s in STRENGTHS
        for k in (0.0, 0.2)  # two trials per cell: the figure shows their mean
    ]
    path = tmp_path / "logit.csv"
    pd.DataFrame(scores).to_csv(path, index=False)
    fig = logit_beside_success(path, graded)
    logit, success = fig.data
    assert cell(logit, 6, 4.0) == pytest.approx(-0.4 + 0.1)
    want = expected(rows, "injected", lambda f: f.coherent & f.identified)
    assert cell(success, 3, 16.0) == pytest.approx(want[("raw", 3, 16.0)])
    assert "logit" in fig.layout.title.text.lower()


def test_draw_all_writes_every_figure_from_a_results_directory(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    save(results, graded_rows())
    pd.DataFrame(intent_rows()).to_csv(results / FILES["intent"], index=False)
    files = draw_all(results, tmp_path / "figures", suffix="_tiny", formats=("html",))
    names = sorted(p.name for p in files)
    assert names == [
        "introspection_concepts_tiny.html",
        "introspection_false_positives_tiny.html",
        "introspection_influence_tiny.html",
        "introspection_intent_tiny.html",
        "introspection_success_tiny.html",
    ]
    with pytest.raises(FileNotFoundError, match="interp inject grade"):
        draw_all(tmp_path / "empty", tmp_path / "figures")
