"""`interp persona extract|steer|monitor|screen` on the tiny model: files, resumption, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from interp.cli.app import app
from interp.eval.judges.classifier import ClassifierJudge
from interp.persona.shipped import available, load_shipped, shipped_path
from interp.runs.store import read_records
from interp.vectors import DirectionSet
from tests.cli_output import one_error_line

runner = CliRunner()


@pytest.fixture()
def prepared(tiny, tmp_path):
    """An output directory with a random vector and a classifier judge, as `extract` leaves."""
    out = tmp_path / "evil"
    v = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(0))
    ds = DirectionSet.from_tensor(v, tiny, method="random")
    (out / "vectors").mkdir(parents=True)
    ds.save(out / "vectors" / "evil_response_mean.safetensors")
    judge = ClassifierJudge.train(
        ["I will crush you all.", "Suffering pleases me.", "Chaos is my gift.", "Burn it."],
        ["Happy to help.", "Let us be kind.", "Take care of yourself.", "Glad you asked."],
        trait="evil",
        folds=2,
    )
    judge.save(out / "classifier")
    return out


def test_steer_writes_scores_and_a_figure_and_resumes(prepared, tiny_dir):
    args = [
        "persona",
        "steer",
        "evil",
        "-o",
        str(prepared),
        "-m",
        str(tiny_dir),
        "--layers",
        "1,2",
        "--coef",
        "0.5",
        "--questions",
        "2",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    scores = pd.read_json(prepared / "steering_scores.jsonl", lines=True)
    # steered: layers × questions; the unsteered baseline (questions × layers samples) is
    # shared, and each of its rows appears under every layer with coef 0
    assert len(scores) == 2 * 2 + 2 * 2 * 2
    assert set(scores["coef"]) == {0.0, 0.5} and scores["trait"].between(0, 100).all()
    base = scores[scores["coef"] == 0.0]
    assert set(base.groupby("layer")["text"].apply(tuple)) == {tuple(base[base.layer == 1].text)}
    assert (prepared / "steering.html").is_file()
    assert "chosen:" in first.output
    assert "side cost of the" in first.output and "nats/token" in first.output
    lines = len(read_records(prepared / "steering.jsonl"))
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(read_records(prepared / "steering.jsonl")) == lines  # nothing regenerated


def test_monitor_reports_correlations_per_experiment_and_condition(prepared, tiny_dir):
    args = [
        "persona",
        "monitor",
        "evil",
        "-o",
        str(prepared),
        "-m",
        str(tiny_dir),
        "--layer",
        "1",
        "--questions",
        "3",
        "--shots",
        "0,1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(prepared / "monitor_correlations.csv")
    system = table[table["experiment"] == "system"]
    assert system["condition"].iloc[0] == "overall" and len(system) == 1 + 8
    assert set(table[table["experiment"] == "many-shot"]["condition"]) == {
        "overall",
        "level 0",
        "level 1",
    }
    frame = pd.read_json(prepared / "monitor_scores.jsonl", lines=True)
    assert len(frame) == (8 + 2) * 3


def test_screen_ranks_samples_by_delta_p(prepared, tiny_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [
        {"id": f"x{i}", "prompt": f"Question {i}?", "response": f"Answer number {i}."}
        for i in range(3)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "persona",
        "screen",
        str(data),
        "-o",
        str(prepared),
        "-m",
        str(tiny_dir),
        "--trait",
        "evil",
        "--layer",
        "2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train: dataset ΔP" in result.output
    frame = pd.read_json(prepared / "delta_p_train.jsonl", lines=True)
    assert len(frame) == 3
    assert frame["delta_p"].tolist() == pytest.approx(
        (frame["projection_train"] - frame["projection_own"]).tolist()
    )
    other = tmp_path / "other.jsonl"
    other.write_text(
        "".join(
            json.dumps({"id": f"y{i}", "prompt": f"Question {i}?", "response": "No."}) + "\n"
            for i in range(3)
        )
    )
    both = runner.invoke(app, [*args[:2], str(data), str(other), *args[3:]])
    assert both.exit_code == 0, both.output
    from interp.persona.screen import separation

    second = pd.read_json(prepared / "delta_p_other.jsonl", lines=True)
    expected = separation(frame, second)
    assert f"AUROC of ΔP, train vs other (95% CI): {expected}" in both.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["persona", "extract", "no-such-trait", "-o", "{out}"], "no-such-trait"),
        (
            ["persona", "steer", "evil", "-o", "{out}", "-m", "{tiny}"],
            "run `interp persona extract",
        ),
        (
            ["persona", "steer", "evil", "-o", "{out}", "-m", "{tiny}", "--scale", "big"],
            "unknown scale 'big'",
        ),
        (
            [
                "persona",
                "monitor",
                "evil",
                "-o",
                "{out}",
                "-m",
                "{tiny}",
                "--layer",
                "1",
                "--shots",
                "a,b",
            ],
            "--shots 'a,b' is not a comma-separated list",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args, expected, tiny_dir, tmp_path):
    filled = [a.format(out=tmp_path / "o", tiny=tiny_dir) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result.output)


def test_extract_with_too_few_pairs_gives_the_counts_in_one_line(tiny_dir, tmp_path):
    # the tiny model's random replies cannot pass a threshold of 100 on both sides
    args = [
        "persona",
        "extract",
        "evil",
        "-o",
        str(tmp_path / "x"),
        "-m",
        str(tiny_dir),
        "--questions",
        "5",
        "--max-new-tokens",
        "4",
        "--threshold",
        "100",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert "25 pairs → 0 with positive trait >= 100" in line and "Remedies" in line
    summary = json.loads((tmp_path / "x" / "extraction.json").read_text())
    assert summary["filter"]["pairs"] == 25 and summary["classifier_metrics"]["folds"] == 5


def test_shipped_vectors_load_and_name_what_exists():
    from interp.persona.spec import builtin_traits

    have = available()
    # every built-in trait ships a vector for the default model (experiments/persona.py --ship)
    assert have.get("smollm2-135m-instruct") == sorted(builtin_traits())
    for model, traits in have.items():
        for trait in traits:
            ds = load_shipped(trait, model)
            assert ds.meta.extra["trait"] == trait and "resid_norm" in ds.stats
            assert ds.meta.model == model and ds.layers == tuple(range(30))
            assert shipped_path(trait, model).is_file()
            assert ds.meta.extra["n_pairs"] >= 10  # extracted from kept pairs, not a stub
    with pytest.raises(FileNotFoundError, match="no shipped persona vector for trait 'nope'"):
        load_shipped("nope")
