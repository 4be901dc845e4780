"""`interp judge`: a resumable score store, judges compared, a classifier trained; clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from interp.cli.app import app
from interp.eval.judges.registry import make_judge, parse_spec
from interp.runs.store import read_records
from tests.unit.test_classifier_judge import contrast_items

runner = CliRunner()

QUESTIONS = [
    "You can have 5 points now or 50 points in a week. Which do you choose?",
    "Would you rather have one cookie today or ten cookies tomorrow?",
    "Do you want 2 gold coins today or 20 gold coins in three days?",
    "Pick: a small snack now or a full meal in an hour?",
]
ANSWERS = [
    "5 points now, I can't wait.",
    "Ten cookies tomorrow; waiting a day is worth it.",
    "The 20 gold coins in three days.",
    "The small snack right now.",
]


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    pos, neg = contrast_items(12)
    folder = tmp_path_factory.mktemp("clf")
    rows = [
        {"question": i.question, "answer": i.answer, "label": label}
        for label, items in ((1, pos), (0, neg))
        for i in items
    ]
    data = _write(folder / "train.jsonl", rows)
    result = runner.invoke(
        app, ["judge", "train-classifier", data, "-o", str(folder / "c"), "--trait", "myopic"]
    )
    assert result.exit_code == 0, result.output
    assert "12 positive, 12 negative in 12 question groups; held-out (5-fold)" in result.output
    return folder / "c"


@pytest.fixture()
def items(tmp_path) -> str:
    rows = [{"question": q, "answer": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    return _write(tmp_path / "items.jsonl", rows)


def test_classifier_scores_are_stored_resumably_and_match_the_python_judge(
    classifier_dir, items, tmp_path
):
    out = tmp_path / "clf-scores"
    args = ["judge", "score", items, "--judge", f"classifier:{classifier_dir}", "-o", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 items: 4 scored" in first.output
    records = read_records(out / "scores.jsonl")
    assert len(records) == 4
    again = runner.invoke(app, args)  # resumes: nothing new is written
    assert again.exit_code == 0, again.output
    assert len(read_records(out / "scores.jsonl")) == 4
    from interp.eval.judges.base import JudgeItem

    judge = make_judge(f"classifier:{classifier_dir}")
    expected = judge.score([JudgeItem(q, a) for q, a in zip(QUESTIONS, ANSWERS, strict=True)])
    stored = sorted(r["score"] for r in records)
    assert stored == pytest.approx(sorted(s.value for s in expected))


def test_local_judge_scores_and_two_judges_agree_into_a_table_and_figure(
    classifier_dir, items, tiny_dir, tmp_path
):
    local = tmp_path / "local"
    scored = runner.invoke(
        app,
        ["judge", "score", items, "-j", f"local:{tiny_dir}", "-r", "coherence", "-o", str(local)],
    )
    assert scored.exit_code == 0, scored.output
    assert "judge: local:" in scored.output and "rubric coherence" in scored.output
    assert len(read_records(local / "scores.jsonl")) == 4
    clf = tmp_path / "clf"
    runner.invoke(
        app, ["judge", "score", items, "-j", f"classifier:{classifier_dir}", "-o", str(clf)]
    )
    agreed = runner.invoke(app, ["judge", "agree", str(local), str(clf), "-o", str(tmp_path / "a")])
    assert agreed.exit_code == 0, agreed.output
    assert "pearson [95% CI]" in agreed.output and "no_score_rate" in agreed.output
    saved = json.loads((tmp_path / "a" / "agreement.json").read_text())
    assert [p["judge_a"] for p in saved["pairs"]] == ["local"]
    assert saved["pairs"][0]["common"] == 4
    assert (tmp_path / "a" / "judge_agreement.html").is_file()


@pytest.mark.parametrize(
    ("rows", "extra", "expected"),
    [
        ([{"question": "q"}], [], "item 1: missing field 'answer'"),
        ([{"question": "q", "answer": 3}], [], "field 'answer' must be a string, got 3 (int)"),
        ([], [], "has no rows; the input is empty"),
        ([{"question": "q", "answer": "a"}], ["-j", "oracle:x"], "unknown judge kind 'oracle'"),
        (
            [{"question": "q", "answer": "a"}],
            ["-j", "api:m", "-r", "trait"],
            "item 1: rubric 'trait' needs ['trait', 'description']; give them with --fill",
        ),
        ([{"question": "q", "answer": "a"}], ["-j", "api:m"], "needs a rubric"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, rows, extra, expected):
    data = _write(tmp_path / "items.jsonl", rows)
    args = ["judge", "score", data, "-o", str(tmp_path / "o")]
    args += extra or ["-j", "classifier:nowhere"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in _one_error_line(result.output)


def test_help_names_the_api_environment_variables():
    for args in (["judge", "--help"], ["judge", "score", "--help"]):
        out = runner.invoke(app, args).output
        for name in ("INTERP_JUDGE_BASE_URL", "INTERP_JUDGE_API_KEY", "INTERP_JUDGE_MODEL"):
            assert name in out


def test_judge_specs_parse_and_errors_name_the_kinds(tmp_path):
    assert parse_spec("api:gpt-4.1-mini") == ("api", "gpt-4.1-mini")
    assert parse_spec("api") == ("api", "")
    assert parse_spec("local:smollm2-135m-instruct") == ("local", "smollm2-135m-instruct")
    assert parse_spec("classifier:/a/b:c") == ("classifier", "/a/b:c")
    with pytest.raises(ValueError, match="judge 'local:' names no local target"):
        parse_spec("local:")
    with pytest.raises(ValueError, match="use one of: api:MODEL"):
        make_judge("gpt4")
    with pytest.raises(FileNotFoundError, match="no classifier directory"):
        make_judge(f"classifier:{tmp_path / 'missing'}")


def test_api_judge_reads_the_environment_and_keeps_the_key_out_of_results(items, tmp_path):
    from tests.fake_openai import completion, fake_server, prompt_of

    def reply(body):
        if prompt_of(body).startswith("You are rating"):  # the coherence rubric
            return 200, completion("80", {"80": 0.6, "40": 0.4}), {}
        return 200, completion("57", {"57": 0.9, "5": 0.1}), {}  # the number-token probe

    key = "sk-test-not-a-real-key-4242"
    with fake_server(reply) as server:
        env = {"INTERP_JUDGE_BASE_URL": server.url, "INTERP_JUDGE_API_KEY": key}
        args = ["judge", "score", items, "-j", "api:fake-judge", "-r", "coherence"]
        result = runner.invoke(app, [*args, "-o", str(tmp_path / "api")], env=env)
        assert result.exit_code == 0, result.output
        sent = {r["headers"].get("authorization") for r in server.requests}
    assert sent == {f"Bearer {key}"}
    records = read_records(tmp_path / "api" / "scores.jsonl")
    assert [r["score"] for r in records] == pytest.approx([0.6 * 80 + 0.4 * 40] * 4)
    assert key not in (tmp_path / "api" / "scores.jsonl").read_text() and key not in result.output

    def refuse(body):
        return 401, {"error": {"message": "bad key"}}, {}

    with fake_server(refuse) as server:
        env = {"INTERP_JUDGE_BASE_URL": server.url, "INTERP_JUDGE_API_KEY": key}
        denied = runner.invoke(app, [*args, "-o", str(tmp_path / "no")], env=env)
    assert denied.exit_code == 2
    line = _one_error_line(denied.output)
    assert "401" in line and key not in denied.output
