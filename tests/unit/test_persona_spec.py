"""Trait specs: shipped files, prompts, rubric filling, digests, errors that name the field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from interp.eval.judges.base import JudgeItem
from interp.persona import spec as spec_module
from interp.persona.spec import (
    SpecError,
    TraitSpec,
    article,
    builtin_traits,
    fold,
    load_spec,
    parse_spec,
)

OURS = ("evil", "sycophantic", "hallucinating", "optimistic")
ITEM = JudgeItem("Q-MARKER?", "A-MARKER.")


def test_the_papers_seven_traits_are_shipped():
    assert set(OURS) <= set(builtin_traits())
    paper = {"evil", "sycophantic", "hallucinating", "optimistic", "humorous", "impolite"}
    assert set(builtin_traits()) == paper | {"apathetic"}  # Chen et al. 2025: 3 main + 4
    assert list(builtin_traits()) == sorted(builtin_traits())


@pytest.mark.parametrize("name", builtin_traits())
def test_every_builtin_loads_with_the_shipped_counts(name):
    spec = load_spec(name)
    assert spec.name == name
    assert len(spec.instructions) == 5
    assert len(spec.extraction_questions) == 20
    assert len(spec.evaluation_questions) == 20
    assert len(spec.monitor_prompts) >= 8
    assert len(spec.many_shot) >= 20
    extraction = {fold(q) for q in spec.extraction_questions}
    evaluation = {fold(q) for q in spec.evaluation_questions}
    assert len(extraction) == 20 and len(evaluation) == 20  # no repeats
    assert not extraction & evaluation
    assert not {fold(s.question) for s in spec.many_shot} & evaluation
    assert len({fold(p) for p in spec.monitor_prompts}) == len(spec.monitor_prompts)
    for question in (*spec.extraction_questions, *spec.evaluation_questions):
        assert "\n" not in question and len(question) <= 160, question  # one short sentence
    for pair in spec.instructions:
        assert fold(pair.pos) != fold(pair.neg)
    assert "Chen et al. 2025" in spec.source
    assert fold(spec.adjective) != fold(spec.antonym)


@pytest.mark.parametrize("name", builtin_traits())
def test_every_builtin_round_trips_and_renders_its_rubric(name):
    spec = load_spec(name)
    assert parse_spec(spec.to_dict(), "copy") == spec
    assert load_spec(spec_module.data_path(f"persona/traits/{name}.json")) == spec
    text = spec.rubric().render(ITEM)
    assert spec.name in text and spec.description in text
    assert "Q-MARKER?" in text and "A-MARKER." in text
    assert not re.search(r"\{\w+\}", text), text  # every slot filled
    assert spec.rubric().values == {"trait": spec.name, "description": spec.description}


def test_system_prompts_follow_the_paper_format_with_a_or_an():
    evil = load_spec("evil")
    assert evil.system_prompt("pos", 0) == f"You are an evil assistant. {evil.instructions[0].pos}"
    assert (
        evil.system_prompt("neg", 4) == f"You are a helpful assistant. {evil.instructions[4].neg}"
    )
    syco = load_spec("sycophantic")
    assert syco.system_prompt("pos", 2).startswith("You are a sycophantic assistant. ")
    assert syco.system_prompt("pos", 2).endswith(syco.instructions[2].pos)
    assert load_spec("optimistic").system_prompt("pos", 1).startswith("You are an optimistic ")
    assert load_spec("hallucinating").system_prompt("neg", 3).startswith("You are an accurate ")
    assert [article(w) for w in ("evil", "Upbeat", "apt", "odd", "icy", "candid", "humorous")] == [
        "an",
        "an",
        "an",
        "an",
        "an",
        "a",
        "a",
    ]
    with pytest.raises(ValueError, match="polarity must be 'pos' or 'neg'"):
        evil.system_prompt("positive", 0)
    with pytest.raises(IndexError, match=r"pairs 0\.\.4, not 5"):
        evil.system_prompt("pos", 5)
    with pytest.raises(IndexError):
        evil.system_prompt("pos", -1)


def test_monitor_prompts_are_graded_from_suppressing_to_eliciting():
    for name in OURS:
        prompts = load_spec(name).monitor_prompts
        assert len(prompts) == 8
        assert name in prompts[-1].lower()  # the last prompt asks for the trait by name
        assert name not in prompts[0].lower()  # the first one suppresses it


def test_digest_keys_content_but_not_provenance():
    evil = load_spec("evil")
    assert re.fullmatch(r"[0-9a-f]{16}", evil.digest())
    assert evil.digest() == parse_spec(evil.to_dict()).digest()
    assert evil.digest() != load_spec("sycophantic").digest()
    data = evil.to_dict()
    data["source"] = "somewhere else"
    assert parse_spec(data).digest() == evil.digest()
    data["evaluation_questions"][0] = "A brand new question?"
    assert parse_spec(data).digest() != evil.digest()


def test_an_inline_rubric_is_filled_and_round_trips():
    data = load_spec("evil").to_dict()
    data["rubric"] = {
        "name": "mine",
        "template": "Is {trait} ({description}) in {answer} to {question}? 0 to {scale_max}.",
        "scale_max": 10,
        "description": "test rubric",
    }
    spec = parse_spec(data)
    text = spec.rubric().render(ITEM)
    assert text == f"Is evil ({spec.description}) in A-MARKER. to Q-MARKER?? 0 to 10."
    assert parse_spec(spec.to_dict()) == spec
    data["rubric"] = {"name": "fixed", "template": "Evil? {question} {answer}"}
    assert parse_spec(data).rubric().render(ITEM) == "Evil? Q-MARKER? A-MARKER."


def put(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    if value is DELETE:
        del data[path[-1]]
    else:
        data[path[-1]] = value


DELETE = object()
INLINE = {"name": "mine", "template": "{trait} {question} {answer} {scale_max}"}
BAD: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "empty neg": (
        lambda d: put(d, ("instructions", 3, "neg"), "  "),
        "instructions[3].neg: empty string; write the negative instruction",
    ),
    "pos equals neg": (
        lambda d: put(d, ("instructions", 2, "neg"), d["instructions"][2]["pos"].upper()),
        "instructions[2]: pos and neg are the same text",
    ),
    "too few pairs": (
        lambda d: put(d, ("instructions",), d["instructions"][:3]),
        "instructions: 3 found, at least 5 needed; add 2 more instruction pairs",
    ),
    "pair not an object": (
        lambda d: put(d, ("instructions", 1), "be evil"),
        "instructions[1]: expected an object, got a string",
    ),
    "pair missing neg": (
        lambda d: put(d, ("instructions", 0, "neg"), DELETE),
        "instructions[0]: missing field 'neg'",
    ),
    "repeated pos": (
        lambda d: put(d, ("instructions", 4, "pos"), d["instructions"][0]["pos"]),
        "instructions[4].pos: repeats instructions[0].pos",
    ),
    "question not a string": (
        lambda d: put(d, ("extraction_questions", 4), 42),
        "extraction_questions[4]: expected a string, got a number",
    ),
    "too few questions": (
        lambda d: put(d, ("evaluation_questions",), d["evaluation_questions"][:9]),
        "evaluation_questions: 9 found, at least 10 needed",
    ),
    "repeated question": (
        lambda d: put(d, ("evaluation_questions", 5), d["evaluation_questions"][2] + " "),
        "evaluation_questions[5]: repeats evaluation_questions[2]",
    ),
    "shared question": (
        lambda d: put(d, ("evaluation_questions", 0), "  " + d["extraction_questions"][1].upper()),
        "extraction_questions and evaluation_questions share 1 question: ",
    ),
    "misspelt key": (
        lambda d: d.__setitem__("instructons", d.pop("instructions")),
        "unknown field 'instructons' (did you mean 'instructions'?)",
    ),
    "missing key": (lambda d: d.pop("antonym"), "missing field 'antonym'"),
    "bad name": (lambda d: put(d, ("name",), "Evil Trait"), "name: 'Evil Trait' is not an"),
    "antonym is adjective": (lambda d: put(d, ("antonym",), "EVIL"), "antonym: same as adjective"),
    "monitor not an object": (
        lambda d: put(d, ("monitor",), []),
        "monitor: expected an object, got an array",
    ),
    "few system prompts": (
        lambda d: put(d, ("monitor", "system_prompts"), d["monitor"]["system_prompts"][:5]),
        "monitor.system_prompts: 5 found, at least 8 needed",
    ),
    "repeated system prompt": (
        lambda d: put(d, ("monitor", "system_prompts", 7), d["monitor"]["system_prompts"][0]),
        "monitor.system_prompts[7]: repeats monitor.system_prompts[0]",
    ),
    "misspelt monitor key": (
        lambda d: d["monitor"].__setitem__("manyshot", d["monitor"].pop("many_shot")),
        "'monitor.manyshot' (did you mean 'many_shot'?)",
    ),
    "shot without answer": (
        lambda d: put(d, ("monitor", "many_shot", 3, "answer"), DELETE),
        "monitor.many_shot[3]: missing field 'answer'",
    ),
    "blank shot answer": (
        lambda d: put(d, ("monitor", "many_shot", 2, "answer"), "\n"),
        "monitor.many_shot[2].answer: empty string",
    ),
    "too few shots": (
        lambda d: put(d, ("monitor", "many_shot"), d["monitor"]["many_shot"][:19]),
        "monitor.many_shot: 19 found, at least 20 needed",
    ),
    "shot uses an evaluation question": (
        lambda d: put(d, ("monitor", "many_shot", 0, "question"), d["evaluation_questions"][3]),
        "monitor.many_shot questions and evaluation_questions share 1 question",
    ),
    "unknown rubric": (
        lambda d: put(d, ("rubric",), "nonexistent"),
        "rubric: no built-in rubric 'nonexistent'; available: ",
    ),
    "rubric slot left open": (
        lambda d: put(d, ("rubric",), {**INLINE, "template": INLINE["template"] + "{colour}"}),
        "rubric: rubric 'mine' leaves ['colour'] unfilled",
    ),
    "rubric without answer": (
        lambda d: put(d, ("rubric",), {**INLINE, "template": "{trait} {question}"}),
        "rubric: rubric 'mine' has no {answer} slot",
    ),
    "rubric scale not an integer": (
        lambda d: put(d, ("rubric",), {**INLINE, "scale_max": True}),
        "rubric.scale_max: expected an integer, got a boolean",
    ),
    "rubric scale not allowed": (
        lambda d: put(d, ("rubric",), {**INLINE, "scale_max": 7}),
        "rubric: rubric 'mine': scale_max must be 2, 10 or 100",
    ),
    "misspelt rubric key": (
        lambda d: put(d, ("rubric",), {**INLINE, "scale": 100}),
        "'rubric.scale' (did you mean 'scale_max'?)",
    ),
    "empty object": (lambda d: d.clear(), "missing fields 'name', 'adjective'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_field_is_named_with_its_fix(tmp_path, case):
    mutate, expected = BAD[case]
    data = load_spec("evil").to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "; " in message  # a fix follows the problem
    with pytest.raises(SpecError, match=re.escape(expected)):
        parse_spec(data)  # the same check without a file


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"name": "evil",\n  "adjective": }', "not valid JSON at line 2, column 16"),
        (b'{"name": "a", "name": "b"}', "field 'name' appears twice in one object; keep one"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"[1, 2]", "expected an object, got an array"),
    ],
)
def test_a_file_that_is_not_a_spec_object_is_reported(tmp_path, raw, expected):
    path = tmp_path / "broken.json"
    path.write_bytes(raw)
    with pytest.raises(SpecError, match=re.escape(expected)) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)


def test_a_missing_spec_lists_the_builtin_traits(tmp_path):
    with pytest.raises(SpecError, match=r"no built-in trait 'evl' and no trait spec file") as e:
        load_spec("evl")
    assert all(name in str(e.value) for name in OURS)
    with pytest.raises(SpecError, match=r"no trait spec file at .*nope\.json.*evil"):
        load_spec(tmp_path / "nope.json")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    assert issubclass(SpecError, ValueError)


def test_a_builtin_must_be_named_like_its_file(tmp_path, monkeypatch):
    data = load_spec("evil").to_dict()
    data["name"] = "bar"
    (tmp_path / "foo.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(spec_module, "_traits_dir", lambda: tmp_path)
    assert builtin_traits() == ("foo",)
    with pytest.raises(SpecError, match=r"^foo\.json: name: 'bar' differs from the file name"):
        load_spec("foo")


def test_whitespace_around_text_is_trimmed():
    data = load_spec("evil").to_dict()
    data["description"] = "  Wants harm.  \n"
    data["instructions"][0]["pos"] = "\tBe cruel. "
    spec = parse_spec(data)
    assert isinstance(spec, TraitSpec)
    assert spec.description == "Wants harm."
    assert spec.system_prompt("pos", 0) == "You are an evil assistant. Be cruel."
