"""Persona figures are drawn from saved result files and show what the files hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import pearsonr

from interp.persona.figures import monitor, screening, steering


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_steering_figure_draws_means_per_block_with_counts_and_raw_factors(tmp_path):
    rows = []
    for layer, factor in ((4, 10.0), (8, 5.0)):
        for coef, trait, coherence in ((0.0, 20.0, 90.0), (0.5, 60.0, 70.0)):
            for k in range(4 if coef == 0 else 2):  # the shared baseline has more samples
                rows.append(
                    {
                        "trait_name": "evil",
                        "layer": layer,
                        "coef": coef,
                        "raw_coef": coef * factor,
                        "scale": "resid_norm",
                        "sample": k,
                        "question": "q",
                        "text": f"t{k}",
                        "trait": trait + k,
                        "coherence": coherence,
                    }
                )
    fig = steering(write_jsonl(tmp_path / "s.jsonl", rows))
    by_name: dict[str, list] = {}
    for trace in fig.data:
        by_name.setdefault(trace.name, []).append(trace)
    assert set(by_name) == {"block 4", "block 8"}
    trait_line, coherence_line = by_name["block 4"]
    assert list(trait_line.x) == [0.0, 0.5]
    assert list(trait_line.y) == pytest.approx([20 + 1.5, 60 + 0.5])  # means of the saved rows
    assert list(coherence_line.y) == pytest.approx([90.0, 70.0])
    subtitle = fig.layout.title.subtitle.text
    assert "n = 2 per steered point, 4 unsteered (shared)" in subtitle
    assert "raw = coef × 10 (block 4), 5 (block 8)" in fig.layout.xaxis.title.text


def test_monitor_figure_puts_each_experiment_in_a_panel_with_its_r(tmp_path):
    rows = []
    for experiment, levels in (("system", range(8)), ("many-shot", (0, 5, 10, 15, 20))):
        for level in levels:
            for k in range(2):
                rows.append(
                    {
                        "trait_name": "evil",
                        "layer": 18,
                        "experiment": experiment,
                        "level": level,
                        "projection": level + 0.1 * k,
                        "trait": 3.0 * level + (5 if k else -5),
                    }
                )
    rows.append({**rows[0], "trait": None})  # unscored replies are left out
    fig = monitor(write_jsonl(tmp_path / "m.jsonl", rows))
    assert len(fig.data) == 8 + 5  # one trace per condition
    system = [r for r in rows[:-1] if r["experiment"] == "system"]
    r = pearsonr([x["projection"] for x in system], [x["trait"] for x in system]).statistic
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == f"system prompts (0 = most suppressing)<br>r = {r:.2f}, n = {len(system)}"
    assert titles[1].startswith("many-shot (shots)<br>r = ")
    assert "block 18" in fig.layout.xaxis.title.text


def test_screening_figure_has_one_box_per_dataset_with_every_sample(tmp_path):
    a = write_jsonl(
        tmp_path / "a.jsonl", [{"dataset": "eliciting", "delta_p": v} for v in (1.0, 2.0, 3.0)]
    )
    b = write_jsonl(tmp_path / "b.jsonl", [{"dataset": "normal", "delta_p": v} for v in (0.5,)])
    fig = screening([a, b])
    assert [t.name for t in fig.data] == ["eliciting", "normal"]
    assert list(fig.data[0].y) == [1.0, 2.0, 3.0] and list(fig.data[1].y) == [0.5]
    empty = write_jsonl(tmp_path / "e.jsonl", [])
    with pytest.raises(ValueError, match="has no rows"):
        screening([empty])
