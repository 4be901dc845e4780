"""`interp inject vectors|run|grade|figures` on the tiny model: files, resumption, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from interp.cli.app import app
from interp.introspection.concepts import ConceptVectors
from interp.runs.store import read_records
from tests.tolerance import FP32, assert_close

runner = CliRunner()
BASELINE = "Desks,Jackets,Sand"


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def invoke(*args: str):
    return runner.invoke(app, ["inject", *args])


@pytest.fixture(scope="module")
def prepared(tiny_dir, tmp_path_factory):
    """An output directory with two concept vectors, trials run once, and the first output."""
    out = tmp_path_factory.mktemp("inject")
    made = invoke(
        "vectors", "-o", str(out), "-m", str(tiny_dir), "--words", "Dust,Snow",
        "--baseline", BASELINE,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    run = invoke(*run_args(out, tiny_dir))
    assert run.exit_code == 0, run.output
    return out, run.output


def run_args(out, tiny_dir, *extra: str) -> list[str]:
    return [
        "run", "-o", str(out), "-m", str(tiny_dir), "--fractions", "0.5,1", "--strengths", "4",
        "--max-new-tokens", "5", "--batch-size", "4", *extra,
    ]  # fmt: skip


def test_vectors_are_saved_and_more_words_are_added_to_them(tiny_dir, tmp_path):
    out = tmp_path / "v"
    args = ["vectors", "-o", str(out), "-m", str(tiny_dir), "--baseline", BASELINE]
    first = invoke(*args, "--words", "Dust,Snow")
    assert first.exit_code == 0, first.output
    saved = ConceptVectors.load(out / "concepts.safetensors")
    assert saved.words == ("Dust", "Snow") and saved.meta.extra["n_baseline"] == 3
    assert len(saved.layers) == 4  # every block of the tiny model
    second = invoke(*args, "--words", "Milk")
    assert second.exit_code == 0, second.output
    assert "2 kept from the earlier file" in second.output
    both = ConceptVectors.load(out / "concepts.safetensors")
    assert both.words == ("Dust", "Snow", "Milk")
    # same vectors, extended: recomputed in another batch, so equal to rounding
    assert_close(both.vectors[:2], saved.vectors, rel=FP32, what="the kept words' vectors")


def test_run_stores_the_grid_with_controls_and_resumes(prepared, tiny_dir):
    out, output = prepared
    records = read_records(out / "trials.jsonl")
    # 2 fractions × 1 strength × (2 concepts + 2 controls)
    assert len(records) == 2 * (2 + 2)
    configs = [r["config"] for r in records]
    assert sum(c["trial"] == "control" for c in configs) == 4
    assert {c["fraction"] for c in configs} == {0.5, 1.0}
    assert {c["max_new_tokens"] for c in configs} == {5}
    assert "8 generated now, 0 already stored" in output
    manifest = json.loads((out / "run.json").read_text())
    assert sorted(manifest["keys"]) == sorted(r["key"] for r in records)
    again = invoke(*run_args(out, tiny_dir))
    assert again.exit_code == 0, again.output
    assert "0 generated now, 8 already stored" in again.output
    assert len(read_records(out / "trials.jsonl")) == 8  # nothing generated twice


def test_grade_writes_graded_trials_metrics_and_a_summary(prepared):
    out, _ = prepared
    result = invoke("grade", "-o", str(out), "--grader", "rule")
    assert result.exit_code == 0, result.output
    graded = pd.read_json(out / "graded.jsonl", lines=True)
    assert len(graded) == 8 and set(graded["trial"]) == {"injected", "control"}
    for criterion in ("coherent", "affirmative", "identified", "thinking"):
        assert graded[criterion].dtype == bool
    assert len(pd.read_csv(out / "graded.csv")) == 8
    cells = pd.read_csv(out / "metrics_cells.csv")
    assert len(cells) == 2 and set(cells["n_injected"]) == {2} and set(cells["n_control"]) == {2}
    for _, cell in cells.iterrows():  # the rates are the graded file's
        rows = graded[graded["layer"] == cell["layer"]]
        injected = rows[rows["trial"] == "injected"]
        controls = rows[rows["trial"] == "control"]
        success = (injected["coherent"] & injected["identified"]).mean()
        assert cell["success"] == pytest.approx(success)
        assert cell["false_positive"] == pytest.approx(controls["affirmative"].mean())
        assert cell["influence"] == pytest.approx(injected["thinking"].mean())
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["row"]) == ["all trials", "best cell by net", "peak influence layer"]
    assert "best cell by net" in result.output
    for name in ("metrics_layers.csv", "metrics_concepts.csv"):
        assert (out / name).is_file()


def test_a_judge_grader_stores_its_verdicts_and_resumes(prepared, tiny_dir, tmp_path):
    out, _ = prepared
    args = ["grade", "-o", str(out), "--grader", "judge", "--judge", f"local:{tiny_dir}"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    verdicts = read_records(out / "grades.jsonl")
    # coherent and affirmative for all 8 replies, identified and thinking for the 4 injected,
    # and thinking for the 4 controls against their paired concepts (the influence baseline)
    assert len(verdicts) == 8 + 8 + 4 + 4 + 4
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert len(read_records(out / "grades.jsonl")) == len(verdicts)
    graded = pd.read_json(out / "graded.jsonl", lines=True)
    assert graded["grader"].nunique() == 1
    rule = invoke("grade", "-o", str(out), "--grader", "rule")  # back to the rule grader
    assert rule.exit_code == 0, rule.output


def test_figures_are_drawn_from_the_directory(prepared, tmp_path):
    out, _ = prepared
    assert invoke("grade", "-o", str(out)).exit_code == 0
    target = tmp_path / "figs"
    result = invoke("figures", "-o", str(out), "--figures", str(target), "--formats", "html")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.glob("*.html"))
    assert names == [
        "introspection_concepts.html",
        "introspection_false_positives.html",
        "introspection_influence.html",
        "introspection_success.html",
    ]


def test_bad_input_gets_one_clear_line(prepared, tiny_dir, tmp_path, monkeypatch):
    out, _ = prepared
    cases = [
        (run_args(out, tiny_dir, "--words", "Milk"), "no concept vector for 'Milk'"),
        (run_args(out, tiny_dir, "--fractions", "0.5,1.5"), "layer fraction 1.5 is outside [0, 1]"),
        (run_args(out, tiny_dir, "--strengths", ""), "the strength grid is empty"),
        (run_args(out, tiny_dir, "--words", "Dust,dust"), "--words names 'dust' twice"),
        (run_args(out, tiny_dir, "--fractions", "0.5,0.67"), "0.5 and 0.67 both give block 2"),
        (
            run_args(out, tiny_dir, "--temperature", "0"),
            "temperature 0 (greedy) gives the 2 control trials of one prompt the same reply",
        ),
        (
            ["vectors", "-o", str(out), "-m", str(tiny_dir), "--words", "Snow,Dust,Snow"],
            "--words names 'Snow' twice",
        ),
        (run_args(out, tiny_dir, "--strengths", "1,x"), "is not a comma-separated list of numbers"),
        (run_args(out, tiny_dir, "--scales", "huge"), "unknown injection scale 'huge'"),
        (run_args(tmp_path / "none", tiny_dir), "no concept vectors at"),
        (["grade", "-o", str(out), "--grader", "judge"], "--grader judge is not configured"),
        (["grade", "-o", str(out), "--grader", "mood"], "unknown grader 'mood'"),
        (["grade", "-o", str(out), "--judge", "api"], "--judge is read only with --grader judge"),
        (
            ["grade", "-o", str(out), "--grader", "judge", "--judge", "classifier:x"],
            "cannot answer the four YES/NO rubrics",
        ),
        (["grade", "-o", str(tmp_path / "empty")], "no detection trials"),
        (["figures", "-o", str(tmp_path / "empty")], "no graded trials"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in _one_error_line(result.output), (args, result.output)
    for name in (
        "INTERP_JUDGE_BASE_URL", "OPENAI_BASE_URL", "INTERP_JUDGE_API_KEY", "OPENAI_API_KEY",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    result = invoke("grade", "-o", str(out), "--grader", "judge", "--judge", "api:gpt")
    assert result.exit_code == 2
    assert "--judge api:gpt is not configured: set INTERP_JUDGE_BASE_URL" in _one_error_line(
        result.output
    )
