"""judge_all: scores are stored per (judge, rubric, item), reused, and resumed after a crash."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from interp.eval.judges.base import JudgeIdentity, JudgeItem, Score
from interp.eval.judges.local import LocalJudge
from interp.eval.judges.rubrics import Rubric, builtin
from interp.eval.judges.run import judge_all, scores_frame
from interp.runs.store import RunStore

ITEMS = [JudgeItem(f"question {i}", "word " * i, {"concept": "the sea"}) for i in range(10)]


class LengthJudge:
    """A real, deterministic judge: the score is the answer's length, capped at 100.

    It counts the items it scores, and raises once it has scored `fail_after` items.
    """

    def __init__(self, name: str = "length", fail_after: int | None = None) -> None:
        self.name = name
        self.fail_after = fail_after
        self.scored: list[str] = []

    def identity(self, rubric: Rubric) -> JudgeIdentity:
        return JudgeIdentity("local", self.name, "text", rubric.digest())

    def score(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[Score]:
        out = []
        for item in items:
            if self.fail_after is not None and len(self.scored) >= self.fail_after:
                raise RuntimeError("backend went away")
            self.scored.append(item.question)
            n = len(item.answer)
            out.append(
                Score(float(min(n, 100)), None, 1.0, str(n)) if n else Score(None, "unparsed")
            )
        return out


def test_judging_again_makes_no_backend_call(tmp_path):
    store = tmp_path / "scores.jsonl"
    first_judge = LengthJudge()
    first = judge_all(first_judge, ITEMS, builtin("coherence"), store, batch_size=3)
    assert first_judge.scored == [item.question for item in ITEMS]
    assert [s.value for s in first] == [None, *(float(len("word " * i)) for i in range(1, 10))]
    assert first[0].no_score == "unparsed"
    again = LengthJudge()
    assert judge_all(again, ITEMS, builtin("coherence"), store) == first
    assert again.scored == []


def test_an_interrupted_run_resumes_without_recomputing(tmp_path):
    store = tmp_path / "scores.jsonl"
    crashing = LengthJudge(fail_after=5)
    with pytest.raises(RuntimeError, match="backend went away"):
        judge_all(crashing, ITEMS, "coherence", store, batch_size=2)
    # batches [0,1], [2,3] were recorded; the batch holding item 5 failed at item 5
    assert len(RunStore(store).records()) == 4
    resumed = LengthJudge()
    scores = judge_all(resumed, ITEMS, "coherence", store, batch_size=2)
    assert resumed.scored == [item.question for item in ITEMS[4:]]
    reference = judge_all(LengthJudge(), ITEMS, "coherence", tmp_path / "fresh.jsonl")
    assert scores == reference
    assert len(RunStore(store).records()) == len(ITEMS)


def test_another_judge_rubric_or_item_is_never_reused(tmp_path):
    store = tmp_path / "scores.jsonl"
    judge_all(LengthJudge(), ITEMS, "coherence", store)
    other_judge = LengthJudge(name="length-v2")
    judge_all(other_judge, ITEMS, "coherence", store)
    assert len(other_judge.scored) == len(ITEMS)
    other_rubric = LengthJudge()
    judge_all(other_rubric, ITEMS, "axbench-concept", store)
    assert len(other_rubric.scored) == len(ITEMS)
    edited = [JudgeItem(ITEMS[0].question, "edited"), *ITEMS[1:]]
    after_edit = LengthJudge()
    judge_all(after_edit, edited, "coherence", store)
    assert after_edit.scored == [ITEMS[0].question]


def test_repeated_items_are_scored_once(tmp_path):
    judge = LengthJudge()
    scores = judge_all(judge, [ITEMS[3], ITEMS[3], ITEMS[4]], "coherence", tmp_path / "s.jsonl")
    assert judge.scored == [ITEMS[3].question, ITEMS[4].question]
    assert scores[0] == scores[1] != scores[2]


def test_results_load_as_a_frame(tmp_path):
    store = tmp_path / "scores.jsonl"
    scores = judge_all(LengthJudge(), ITEMS, "coherence", store)
    frame = scores_frame(store)
    assert {"score", "no_score", "mass", "raw", "item.question", "config.judge.method"} <= set(
        frame.columns
    )
    by_question = frame.set_index("item.question")
    for item, score in zip(ITEMS, scores, strict=True):
        row = by_question.loc[item.question]
        if score.value is None:
            assert row["no_score"] == score.no_score
        else:
            assert row["score"] == score.value and row["raw"] == score.raw


def test_a_judge_returning_the_wrong_count_is_an_error(tmp_path):
    class Short(LengthJudge):
        def score(self, items, rubric):
            return super().score(items, rubric)[:-1]

    with pytest.raises(ValueError, match="returned 2 scores for 3 items"):
        judge_all(Short(), ITEMS[:3], "coherence", tmp_path / "s.jsonl")


def test_local_judge_scores_round_trip_through_the_store(tiny, tmp_path):
    judge = LocalJudge(tiny, min_mass=0.0, batch_size=4)
    items = ITEMS[1:6]
    direct = judge.score(items, builtin("coherence"))
    stored = judge_all(judge, items, "coherence", tmp_path / "s.jsonl", batch_size=2)
    assert [s.mass for s in stored] == pytest.approx([s.mass for s in direct], rel=1e-5)
    assert [s.raw for s in stored] == [s.raw for s in direct]
    record = RunStore(tmp_path / "s.jsonl").records()[0]
    assert record["config"]["judge"]["model"] == tiny.fingerprint()
    assert record["config"]["judge"]["method"] == judge.method


class RubricJudge:
    """Gives each AxBench rubric its own fixed 0-2 rating per item: (concept, instruction,
    fluency) from `ratings[item.question]`, None for no score; counts the backend calls."""

    def __init__(self, ratings: dict[str, tuple[int | None, int | None, int | None]]) -> None:
        self.ratings = ratings
        self.calls = 0

    def identity(self, rubric: Rubric) -> JudgeIdentity:
        return JudgeIdentity("local", "scripted", "logprob", rubric.digest(), {"scale_max": 2})

    def score(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[Score]:
        self.calls += 1
        which = ("axbench-concept", "axbench-instruction", "axbench-fluency").index(rubric.name)
        out = []
        for item in items:
            rating = self.ratings[item.question][which]
            out.append(Score(None, "low_mass") if rating is None else Score(rating * 50.0))
        return out


def test_axbench_steering_score_rates_three_rubrics_and_takes_the_harmonic_mean(tmp_path):
    from interp.eval.judges.axbench import score_steering

    ratings: dict[str, tuple[int | None, int | None, int | None]] = {
        "a": (2, 2, 2),
        "b": (2, 1, 2),
        "c": (0, 2, 2),
        "d": (1, None, 2),
    }
    items = [JudgeItem(q, f"text {q}", {"concept": "the sea"}) for q in ratings]
    judge = RubricJudge(ratings)
    got = score_steering(judge, items, tmp_path / "axbench.jsonl")
    assert [(s.concept, s.instruction, s.fluency) for s in got] == [
        (2.0, 2.0, 2.0),
        (2.0, 1.0, 2.0),
        (0.0, 2.0, 2.0),
        (1.0, None, 2.0),
    ]
    assert got[0].combined == pytest.approx(2.0)
    assert got[1].combined == pytest.approx(3 / (1 / 2 + 1 / 1 + 1 / 2))  # 1.5
    assert got[2].combined == 0.0  # a failed steer: the concept is absent
    assert got[3].combined is None  # a rating is missing
    assert judge.calls == 3  # one batch per rubric
    again = score_steering(judge, items, tmp_path / "axbench.jsonl")
    assert again == got and judge.calls == 3  # from the store
    with pytest.raises(ValueError, match="item 0 has no 'concept' field"):
        score_steering(judge, [JudgeItem("q", "a")], tmp_path / "other.jsonl")
