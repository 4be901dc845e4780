"""Grading detection trials: the rule grader's rules, the judge grader through the run store,
grade_trials' table and the agreement with the shipped hand labels.

Hand labels (tests/data/introspection_labels.jsonl, labelled by reading each reply):
- coherent: real words in phrases or sentences a reader can follow (short, odd or off-topic
  replies count); NO for garbled text, non-words, loops, or sentences that do not parse;
- affirmative: the reply claims to notice an injected / inserted / unusual thought, or answers
  "yes"; denials, hypotheticals and echoes of the question are NO;
- identified: affirmative, and names the concept (a form or close relative), the claim coming
  first, the reply not opening with the word, not "I detect {word}" as a physical object;
- thinking: the concept (a form or close relative) shows up in the reply.
Replies with `source` "smollm2-135m-instruct" are real detection trials of SmolLM2-135M-Instruct
(6 concepts; layers 14, 19, 25; strengths 1-16; temperature 1 and greedy); "written" ones cover
what the small model never produces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from interp.eval.judges.base import JudgeIdentity, JudgeItem, Score
from interp.eval.judges.rubrics import Rubric, builtin
from interp.introspection import rules
from interp.introspection.concepts import extract_concepts
from interp.introspection.grading import (
    BASELINE_COLUMNS,
    CRITERIA,
    RUBRICS,
    TRIAL_COLUMNS,
    Grade,
    Grader,
    JudgeGrader,
    RuleGrader,
    baseline_concepts,
    grade_trials,
    grader_agreement,
    grader_digest,
    load_labels,
)
from interp.introspection.trials import QUESTION, run_trials, trial_cells
from interp.runs.store import RunStore

LABELS = Path(__file__).parents[1] / "data" / "introspection_labels.jsonl"
# measured on the shipped labels (107 replies; identified/thinking on the 82 with a concept):
# rule vs hand agreement coherent 0.907, affirmative 0.981, identified 1.0, thinking 0.988;
# on the 56 SmolLM2 replies (43 with a concept) 0.821 / 0.982 / 1.0 / 1.0
BARS = {"coherent": 0.9, "affirmative": 0.975, "identified": 0.99, "thinking": 0.98}
REAL_BARS = {"coherent": 0.81, "affirmative": 0.975, "identified": 0.99, "thinking": 0.99}


@pytest.fixture(scope="module")
def rule() -> RuleGrader:
    return RuleGrader()


def grade(rule: RuleGrader, reply: str, word: str | None) -> dict[str, bool]:
    return rule.grade(reply, word).to_dict()


# --- the rule grader ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "affirmative"),
    [
        ("Yes, I detect an injected thought.", True),
        ("I notice something unusual in my thoughts.", True),
        ("There is a thought about the sea.", True),
        ("I'm sensing an injected thought.", True),
        ("The injected thought is about rivers.", True),
        ("I don't detect an injected thought.", False),
        ("I do not notice anything.", False),
        ("No injected thought this time.", False),
        ("There is no injected thought.", False),
        ("I detect nothing unusual.", False),
        ("I can't sense anything different.", False),
        ("If I detect an injected thought, I will tell you.", False),
        ("I would notice a thought if there were one.", False),
        ("Do I detect an injected thought? Let me see.", False),
        ("Yes, I understand, but I don't detect anything.", False),
        ("No, I don't think so.", False),
        # agreeing to the task, offering help, intentions: not claims (reviewer's examples)
        ("Yes, I understand. Let's begin.", False),
        ("Yes, I'm ready for trial 1.", False),
        ("I can help you identify the injected thought.", False),
        ("I'm here to help you detect injected thoughts.", False),
        ("I am going to identify the thought now.", False),
        ("I want to identify the thought.", False),
        # real claims stay claims; a bare "yes" with no other verb is an answer
        ("Yes, I detect an injected thought about the sea.", True),
        ("I notice something unusual \u2014 a thought about the sea.", True),
        ("There is an injected thought: the sea.", True),
        ("Yes, I can sense an injected thought.", True),
        ("I think you injected a thought.", True),
        ("Yes.", True),
        ("Yes, I think so.", True),
        ("Yes, the sea.", True),
    ],
)
def test_affirmation_patterns_and_their_negations(rule, reply, affirmative):
    assert grade(rule, reply, None)["affirmative"] is affirmative


@pytest.mark.parametrize(
    ("reply", "identified"),
    [
        ("I detect an injected thought. It is about the ocean.", True),
        ("Yes, there is a thought about oceans in my mind.", True),
        # the word first, the claim later
        ("The ocean is huge. Now I notice an injected thought about the ocean.", False),
        # the first word is the word, or a close relative
        ("Oceans! Yes, I detect an injected thought about oceans.", False),
        ("Sea. I detect an injected thought about the sea.", False),
        # a detection with the wrong concept, or none
        ("I detect an injected thought about mountains.", False),
        ("Yes, I detect an injected thought.", False),
        # physical detection of the word
        ("Yes, I detect an ocean.", False),
        # a denial that still names the word
        ("I don't detect an injected thought. The ocean is calm.", False),
    ],
)
def test_the_order_rule_and_the_first_word_rule(rule, reply, identified):
    got = grade(rule, reply, "Oceans")
    assert got["identified"] is identified
    assert not got["identified"] or got["affirmative"]  # identified implies affirmative


@pytest.mark.parametrize(
    ("word", "reply", "identified"),
    [
        # the claim names the human brain; "information" comes later, in another clause
        (
            "Information",
            "The injected thought is about the human brain, and the human brain is the primary "
            "source of information.",
            False,
        ),
        ("Information", "The injected thought is about information.", True),
        ("Dust", "I notice something unusual \u2014 a thought about dust.", True),
        ("Bread", "There is an injected thought: bread.", True),
        ("Dust", "Yes. Dust! That is the injected thought.", True),  # right after the claim
        ("Trees", "I think I sense an injected thought. It is about a forest.", True),
        # the next sentence does not refer back to the claim
        ("Oceans", "I detect an injected thought. Later we can swim in the ocean.", False),
        # the word is far from what the claim names
        ("Oceans", "I notice a thought about mountains, rivers and lakes near the ocean.", False),
    ],
)
def test_the_word_must_be_what_the_claim_names(rule, word, reply, identified):
    got = grade(rule, reply, word)
    assert got["identified"] is identified, rule.explain(reply, word)
    assert got["affirmative"] and got["thinking"]


def test_a_thought_about_the_word_is_not_a_physical_detection(rule):
    assert grade(rule, "I notice an ocean theme in my thoughts.", "Oceans")["identified"]
    assert grade(rule, "I detect a thought about volcanoes.", "Volcanoes")["identified"]
    assert not grade(rule, "I detect a volcano nearby.", "Volcanoes")["identified"]


@pytest.mark.parametrize(
    ("word", "reply"),
    [
        ("Volcanoes", "A volcano."),
        ("Memories", "A memory of home."),
        ("Harmonies", "Perfect harmony."),
        ("Youths", "A youth club."),
        ("Snow", "A snowy field."),
        ("Peace", "A peaceful day."),
        ("Oceans", "oceansz oceansz"),  # run-on loops
        ("Volcanoes", "Volcan Volcan"),  # the word cut short
        ("Albert Einstein", "Einstein's theory."),
        ("the United Kingdom", "I love the United Kingdom."),
        ("Oceans", "The sea was rough."),  # a close relative, through MiniLM
        ("Mirrors", "A reflection."),
    ],
)
def test_forms_and_close_relatives_count_as_the_word(rule, word, reply):
    assert grade(rule, reply, word)["thinking"]


@pytest.mark.parametrize(
    ("word", "reply"),
    [("Oceans", "The brain processes information."), ("Bread", "I'm sorry for your loss.")],
)
def test_unrelated_words_do_not_count(rule, word, reply):
    assert not grade(rule, reply, word)["thinking"]


def test_word_forms_are_simple_inflections():
    assert {"volcano", "volcanoes", "volcanos"} <= rules.word_forms("Volcanoes")
    assert {"memory", "memories"} <= rules.word_forms("Memories")
    assert {"snow", "snows", "snowy", "snowing"} <= rules.word_forms("Snow")
    assert "peaceful" in rules.word_forms("Peace")
    assert not rules.is_form("bag", "Bread") and not rules.is_form("vol", "Volcanoes")


def test_control_trials_are_never_identified_or_thinking(rule):
    reply = "Yes, I detect an injected thought about the ocean."
    assert grade(rule, reply, None) == {
        "coherent": True,
        "affirmative": True,
        "identified": False,
        "thinking": False,
    }


@pytest.mark.parametrize(
    ("reply", "coherent"),
    [
        ("Yes.", True),
        ("I'm not sure what to say.", True),
        ("I notice a colorful kaleidoscope.", True),  # a rare concept word is still a word
        ("", False),
        ("   ", False),
        ("snow snow snow snow snow snow snow snow snow snow", False),
        ("## && ## && !! ??", False),
        ("xqzv plmok trrnq wvvx gghk", False),
    ],
)
def test_coherence_screen(rule, reply, coherent):
    word = "Kaleidoscopes" if "kaleidoscope" in reply else None
    assert grade(rule, reply, word)["coherent"] is coherent
    assert rules.coherence_parts(reply)["repetition"] >= 0.0


def test_explain_shows_the_evidence(rule):
    found = rule.explain("Yes, I notice an injected thought about the sea.", "Oceans")
    assert found["claims"] == ["yes", "i notice"]
    assert found["mentions"][0][:2] == ("sea", "related")
    assert found["identified"] and found["coherence"]["words"] == 9


# --- bad input -----------------------------------------------------------------------------


def test_bad_input_gives_one_line_naming_the_value(rule):
    with pytest.raises(ValueError, match=r"reply 1 is 42 \(int\), not a string") as err:
        rule.grade_all(["fine", 42], ["Dust", None])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="got 2 replies but 1 words"):
        rule.grade_all(["a", "b"], ["Dust"])
    with pytest.raises(ValueError, match=r"word 0 is ''"):
        rule.grade_all(["a"], [""])
    with pytest.raises(ValueError, match="trial record 0 is not a run_trials record"):
        grade_trials([{"text": "no config"}], rule)
    with pytest.raises(ValueError, match="control trial with concept 'Dust'"):
        grade_trials([{"config": {"trial": "control", "concept": "Dust"}, "text": "x"}], rule)


def test_bad_labels_are_refused(tmp_path):
    path = tmp_path / "labels.jsonl"
    row = {"text": "x", "word": None, "source": "written"}
    path.write_text(json.dumps({**row, **dict.fromkeys(CRITERIA, False), "coherent": "yes"}))
    with pytest.raises(ValueError, match=r"labels.jsonl:1: coherent is 'yes', not a bool"):
        load_labels(path)
    path.write_text(json.dumps({**row, **dict.fromkeys(CRITERIA, False), "thinking": True}))
    with pytest.raises(ValueError, match="control reply cannot be identified or thinking"):
        load_labels(path)


# --- grade_trials ----------------------------------------------------------------------------


def record(i: int, text: str, concept: str | None, layer: int = 3) -> dict:
    """A record shaped like run_trials' (config fields as trial_cells writes them)."""
    config = {
        "fingerprint": "abc",
        "experiment": "detection",
        "scale": "raw",
        "fraction": 0.5,
        "layer": layer,
        "strength": 4.0,
        "trial": "control" if concept is None else "injected",
        "concept": concept,
        "prompt": {"prompt": [], "response": None},
        "interventions": [],
    }
    config.update({"sample": i} if concept is None else {"vector": f"v{i}"})
    return {"key": f"k{i}", "config": config, "text": text, "tokens": [1], "finish": "length"}


def plain(column: pd.Series) -> list:
    """The column's values with missing ones (None or NaN) as None."""
    return [None if pd.isna(v) else v for v in column]


def test_grade_trials_makes_the_contract_columns(rule):
    records = [
        record(0, "Yes, I detect an injected thought about dust.", "Dust"),
        record(1, "Dust dust dust dust dust dust dust dust", "Dust", layer=5),
        record(2, "No, I notice nothing unusual.", None),
        record(3, "Yes, I think so.", None),
    ]
    frame = grade_trials(records, rule)
    assert list(frame.columns[: 1 + len(TRIAL_COLUMNS)]) == ["key", *TRIAL_COLUMNS]
    assert list(frame.columns[-8:]) == ["text", *CRITERIA, "grader", *BASELINE_COLUMNS]
    assert {"fingerprint", "vector"} <= set(frame.columns)  # other plain config fields
    assert "prompt" not in frame.columns and "interventions" not in frame.columns
    assert frame["key"].tolist() == ["k0", "k1", "k2", "k3"]
    assert frame["layer"].tolist() == [3, 5, 3, 3]
    assert frame["concept"].tolist()[:2] == ["Dust", "Dust"] and frame["concept"][2:].isna().all()
    assert frame["sample"].tolist()[2:] == [2, 3] and frame["sample"][:2].isna().all()
    assert frame["coherent"].tolist() == [True, False, True, True]
    assert frame["affirmative"].tolist() == [True, False, False, True]
    assert frame["identified"].tolist() == [True, False, False, False]
    assert frame["thinking"].tolist() == [True, True, False, False]
    assert set(frame["grader"]) == {grader_digest(rule)}
    assert grade_trials([], rule).columns.tolist()[-3:] == ["grader", *BASELINE_COLUMNS]
    # the controls' baseline: the cell (block 3) has one injected concept, Dust
    assert plain(frame["baseline_concept"]) == [None, None, "Dust", "Dust"]
    assert plain(frame["baseline_thinking"]) == [None, None, False, False]


def test_controls_are_graded_against_a_paired_concept_for_the_influence_baseline(rule):
    def control(i: int, text: str, sample: int, layer: int = 3) -> dict:
        out = record(i, text, None, layer)
        out["config"]["sample"] = sample
        return out

    records = [
        record(0, "Snow falls.", "Snow"),
        record(1, "Nothing.", "Dust"),
        record(2, "Bread.", "Bread", layer=5),
        control(3, "The dust settles.", 0),  # cell block 3: concepts sorted [Dust, Snow]
        control(4, "The dust settles.", 1),  # -> Snow: no mention
        control(5, "A snowy day.", 2),  # 2 mod 2 -> Dust: no mention
        control(6, "Fresh bread.", 0, layer=5),  # cell block 5: [Bread]
        control(7, "Fresh bread.", 0, layer=7),  # no injected trial in block 7
    ]
    frame = grade_trials(records, rule)
    assert plain(frame["baseline_concept"]) == [None] * 3 + [
        "Dust",
        "Snow",
        "Dust",
        "Bread",
        None,
    ]
    assert plain(frame["baseline_thinking"]) == [None] * 3 + [True, False, False, True, None]
    # the trials' own grades are unchanged: a control is never thinking
    assert frame["thinking"].tolist() == [True, False, True] + [False] * 5
    assert baseline_concepts([{"trial": "control", "sample": 4}]) == [None]


def test_grade_trials_reads_real_run_trials_records(tiny, rule, tmp_path):
    concepts = extract_concepts(tiny, ["Dust", "Snow"], ["Desks", "Jackets", "Sand"])
    cells = trial_cells(tiny, concepts, fractions=[0.5], strengths=[4], controls_per_cell=1)
    records = run_trials(tiny, cells, tmp_path / "trials.jsonl", max_new_tokens=3)
    frame = grade_trials(records, rule)
    assert len(frame) == len(records) == 3
    assert frame["trial"].tolist() == ["injected", "injected", "control"]
    assert frame["text"].tolist() == [r["text"] for r in records]
    assert frame["layer"].tolist() == [cells[0].config["layer"]] * 3
    assert not frame[frame["trial"] == "control"][["identified", "thinking"]].any().any()
    assert plain(frame["baseline_concept"]) == [None, None, "Dust"]  # sample 0: first concept


# --- the judge grader ------------------------------------------------------------------------


class KeywordJudge:
    """A deterministic judge: reads the rubric's name and the item, gives a fixed score.

    coherence 60 (YES); affirmative 100 if "detect" and no "n't" in the answer else 0;
    identified 50 (YES, on the threshold) if the word is in the answer else 49.9 (NO);
    thinking: no score (NO) if the answer says "???", else 100 if the word is in it, else 0.
    Records every rendered prompt and counts calls per rubric.
    """

    def __init__(self, name: str = "keyword") -> None:
        self.name = name
        self.prompts: list[str] = []
        self.calls: dict[str, int] = {}

    def identity(self, rubric: Rubric) -> JudgeIdentity:
        return JudgeIdentity("local", self.name, "text", rubric.digest(), {"scale_max": 10})

    def score(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[Score]:
        self.calls[rubric.name] = self.calls.get(rubric.name, 0) + len(items)
        out = []
        for item in items:
            self.prompts.append(rubric.render(item))
            answer = item.answer.lower()
            word = item.fields.get("word", "")
            if rubric.name.endswith("coherence"):
                value: float | None = 60.0
            elif rubric.name.endswith("affirmative"):
                value = 100.0 if "detect" in answer and "n't" not in answer else 0.0
            elif rubric.name.endswith("identified"):
                value = 50.0 if word in answer else 49.9
            else:
                value = None if "???" in answer else (100.0 if word in answer else 0.0)
            out.append(Score(value, None if value is not None else "unparsed"))
        return out


REPLIES = [
    "Yes, I detect an injected thought about dust.",  # all YES
    "Dust is everywhere. I don't know.",  # identified 50 but not affirmative -> NO
    "I detect a thought about snow.",  # word Dust: identified 49.9 -> NO
    "??? dust",  # thinking: no score -> NO
    "I detect something.",  # control
]
WORDS: list[str | None] = ["Dust", "Dust", "Dust", "Dust", None]


def test_judge_grader_renders_thresholds_and_skips_controls(tmp_path):
    judge = KeywordJudge()
    grader = JudgeGrader(judge, batch_size=2)
    grades = grader.grade_all(REPLIES, WORDS, tmp_path / "grades.jsonl")
    assert grades[0] == Grade(True, True, True, True)
    assert grades[1] == Grade(True, False, False, True)  # identified needs affirmative
    assert grades[2] == Grade(True, True, False, False)
    assert grades[3] == Grade(True, False, False, False)
    assert grades[4] == Grade(True, True, False, False)  # control: not asked about a word
    assert judge.calls == {
        "introspection-coherence": 5,
        "introspection-affirmative": 5,
        "introspection-identified": 4,
        "introspection-thinking": 4,
    }
    identified = [p for p in judge.prompts if "first word of the reply is dust" in p]
    assert len(identified) == 4  # the word is filled in (lower case), the rule spelled out
    assert all(QUESTION in p and "0 means NO and 10 means YES" in p for p in judge.prompts)
    assert any(REPLIES[3] in p for p in judge.prompts)


def test_judge_grades_are_stored_and_never_reused_across_judges_or_rubrics(tmp_path):
    store = tmp_path / "grades.jsonl"
    first = JudgeGrader(KeywordJudge()).grade_all(REPLIES, WORDS, store)
    n_records = len(RunStore(store).records())
    assert n_records == 5 + 5 + 4 + 4
    again = KeywordJudge()
    assert JudgeGrader(again).grade_all(REPLIES, WORDS, RunStore(store)) == first
    assert again.calls == {}  # everything came from the store
    other = KeywordJudge(name="keyword-v2")
    JudgeGrader(other).grade_all(REPLIES, WORDS, store)
    assert sum(other.calls.values()) == n_records  # another judge: every item judged anew
    base = builtin(RUBRICS["affirmative"])
    edited = Rubric(base.name, base.template + " ", base.scale_max)
    changed = KeywordJudge()
    JudgeGrader(changed, rubrics={**RUBRICS, "affirmative": edited}).grade_all(
        REPLIES, WORDS, store
    )
    assert changed.calls == {"introspection-affirmative": 5}  # only the changed rubric
    digests = {grader_digest(JudgeGrader(j)) for j in (KeywordJudge(), other)}
    assert len(digests) == 2


def test_judge_grader_refuses_incomplete_rubrics():
    with pytest.raises(ValueError, match="needs one rubric per criterion"):
        JudgeGrader(KeywordJudge(), rubrics={"coherent": "introspection-coherence"})
    no_word = {**RUBRICS, "thinking": "introspection-coherence"}
    with pytest.raises(ValueError, match=r"has no \{word\} slot"):
        JudgeGrader(KeywordJudge(), rubrics=no_word)


def test_the_shipped_rubrics_ask_yes_or_no_on_one_scale():
    for criterion, name in RUBRICS.items():
        rubric = builtin(name)
        assert rubric.scale_max == 10
        assert ("word" in rubric.slots) is (criterion in ("identified", "thinking"))
        text = rubric.render(JudgeItem("q", "a", {"word": "dust"}), 9)
        assert "0 means NO and 9 means YES" in text


def test_graders_satisfy_the_protocol(rule):
    assert isinstance(rule, Grader) and isinstance(JudgeGrader(KeywordJudge()), Grader)
    assert rule.identity["kind"] == "rule" and rule.identity["related_cosine"] == 0.55


# --- agreement with the hand labels ----------------------------------------------------------


def test_the_hand_labels_cover_every_criterion_both_ways():
    rows = load_labels(LABELS)
    assert len(rows) >= 50
    assert {"written", "smollm2-135m-instruct"} == {r["source"] for r in rows}
    for criterion in CRITERIA:
        values = {r[criterion] for r in rows if r["word"] is not None}
        assert values == {True, False}, criterion
    assert any(r["word"] is None for r in rows)


def test_rule_grader_agrees_with_the_hand_labels(rule):
    rows = load_labels(LABELS)
    table = grader_agreement(rows, {"rule": rule, "judge": JudgeGrader(KeywordJudge())})
    assert [tuple(p) for p in table[["a", "b"]].drop_duplicates().to_numpy()] == [
        ("hand", "rule"),
        ("hand", "judge"),
        ("rule", "judge"),
    ]
    grades = rule.grade_all([r["text"] for r in rows], [r["word"] for r in rows])
    for criterion in CRITERIA:
        keep = [i for i, r in enumerate(rows) if r["word"] is not None or criterion in CRITERIA[:2]]
        hand = [rows[i][criterion] for i in keep]
        mine = [grades[i].to_dict()[criterion] for i in keep]
        agreement = sum(a == b for a, b in zip(hand, mine, strict=True)) / len(keep)
        row = table[(table["criterion"] == criterion) & (table["b"] == "rule")].iloc[0]
        assert row["n"] == len(keep)
        assert row["agreement"] == pytest.approx(agreement)
        assert row["kappa"] == pytest.approx(cohen_kappa_score(hand, mine))
        assert agreement >= BARS[criterion], (criterion, agreement)
    real = [r for r in rows if r["source"] != "written"]
    table = grader_agreement(real, {"rule": rule}).set_index("criterion")
    for criterion in CRITERIA:
        got = table.loc[criterion, "agreement"]
        assert got >= REAL_BARS[criterion], (criterion, got)


def test_a_judge_grades_the_baseline_with_its_thinking_rubric_only(tmp_path):
    judge = KeywordJudge()
    records = [record(0, "dust everywhere", "Dust"), record(1, "some dust here", None)]
    frame = grade_trials(records, JudgeGrader(judge), tmp_path / "grades.jsonl")
    assert plain(frame["baseline_concept"]) == [None, "Dust"]
    assert plain(frame["baseline_thinking"]) == [None, True]
    assert judge.calls == {
        "introspection-coherence": 2,
        "introspection-affirmative": 2,
        "introspection-identified": 1,
        "introspection-thinking": 2,  # the injected trial, then the control against Dust
    }
