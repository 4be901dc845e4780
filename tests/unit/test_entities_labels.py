"""Entity answer matching and known/unknown labelling on the tiny model (Ferrando et al. §3.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import interp
import interp.runs.sweeps as sweeps
from interp.entities.data import Attribute, EntitySet, load_entities
from interp.entities.labels import (
    COLUMNS,
    attribute_prompt,
    label_entities,
    load_labels,
    save_labels_table,
)
from interp.entities.matching import first_sentence, first_year, is_correct, normalize
from interp.runs.store import read_records
from interp.steering.generation import generate

# -- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "accepted", "right"),
    [
        (" Portugal.", ["Portugal"], True),
        ("The city of Porto is in Portugal.", ["Portugal"], True),
        (" the United States of America.", ["United States", "USA"], True),  # alias
        (" the USA, in the state of Texas.", ["United States", "USA"], True),
        (" Steven Speilberg.", ["Steven Spielberg"], True),  # one typo: fuzzy >= 90
        (" J. K. Rowling, a British author.", ["J.K. Rowling"], True),  # initials, not an end
        (" São Paulo, Brazil", ["Sao Paulo"], True),  # accents folded
        (" Zürich", ["Zurich"], True),
        (":\n\nSteven Spielberg. He also directed Jaws.", ["Steven Spielberg"], True),
        (" St. Petersburg, in Russia.", ["Russia"], True),
        (" the Schindlers List director", ["Schindler's List"], True),  # apostrophe dropped
        (" Spain.", ["Portugal"], False),
        (" Austria.", ["Australia"], False),  # close, but under 90
        (" Iran", ["Iraq"], False),
        (" North Korea", ["South Korea"], False),
        (" Portuguese food is great", ["Portugal"], False),  # not a whole word, ratio < 90
        (" Spain.\nOr maybe Portugal.", ["Portugal"], False),  # only the first line counts
        (" Spain. Some say Portugal.", ["Portugal"], False),  # only the first sentence
        (" Spain, France, Portugal, Italy or Germany", ["Portugal"], False),  # a list of guesses
        (" Portugal, Spain, France or Italy", ["Portugal"], True),  # ... whose first item counts
        (" Austin, Texas, United States", ["United States"], True),  # 3 items: read whole
        ("", ["Portugal"], False),
        (" Portugal", ["", "  "], False),  # empty accepted answers match nothing
    ],
)
def test_text_answers(answer, accepted, right):
    assert is_correct(answer, accepted, "text") is right


@pytest.mark.parametrize(
    ("answer", "accepted", "right"),
    [
        (" 1994.", [1994], True),
        (" in 1993, the same year as", [1994], True),  # off by 1
        (" 1996", [1994], True),  # off by 2: the edge
        (" 1989", [1994], False),  # off by 5
        (" released on Jan. 5, 1999", [1994, 1999], True),  # another accepted year
        (" 12 December 1990", ["1990"], True),  # years given as text
        (" the 1990s", [1991], True),
        (" a long time ago.", [1994], False),
        (" 1950. It was remade in 1994.", [1994], False),  # the first year is the answer
        (" 5 May 1940", [1945], False),  # "5" has too few digits; 1940 is off by 5
    ],
)
def test_year_answers(answer, accepted, right):
    assert is_correct(answer, accepted, "year") is right


def test_year_tolerance_is_a_setting():
    assert not is_correct(" 1989", [1994], "year")
    assert is_correct(" 1989", [1994], "year", year_tolerance=5)
    assert not is_correct(" 1993", [1994], "year", year_tolerance=0)


def test_matching_helpers_and_bad_input():
    assert normalize("  Zürich–Øresund, Côte d’Ivoire! ") == "zurich oresund cote divoire"
    assert (
        first_sentence(" Washington, D.C. is the capital. Next")
        == "Washington, D.C. is the capital"
    )
    assert first_sentence("Paris\nLondon") == "Paris"
    assert first_year("born 3 March 1879 in Ulm") == 1879
    assert first_year("no year") is None
    with pytest.raises(ValueError, match="not the string 'Portugal'"):
        is_correct("Portugal", "Portugal", "text")
    with pytest.raises(ValueError, match="'about 1900' is not a whole number"):
        is_correct("1900", ["about 1900"], "year")
    with pytest.raises(ValueError, match="year_tolerance"):
        is_correct("1900", [1900], "year", year_tolerance=-1)


# -- labelling on the tiny model ---------------------------------------------------------------

TYPES: dict[str, Any] = {
    "city": {
        "noun": "city",
        "attributes": {
            "country": {
                "kind": "text",
                "question": "In which country is the city {entity}?",
                "prefix": "The city {entity} is in",
            },
            "river": {
                "kind": "text",
                "question": "Which river flows through the city {entity}?",
                "prefix": "The river that flows through {entity} is",
            },
            "founded": {
                "kind": "year",
                "question": "In which year was the city {entity} founded?",
                "prefix": "The city {entity} was founded in",
            },
        },
    }
}
ATTRS = ("country", "river", "founded")
NEVER: dict[str, list[Any]] = {
    "country": ["Qqxzzv Impossiblestan"],
    "river": ["Zzqxv Nonriver"],
    "founded": [1],
}
NAMES = ("Porto", "Lyon", "Zqxville")
MAX_NEW = 6


def write_entities(path: Path, answers: dict[str, dict[str, list[Any]]]) -> EntitySet:
    """An entity file with the real cities of `answers` (name -> attribute -> accepted) and
    one invented city."""
    entities: list[dict[str, Any]] = [
        {"name": name, "type": "city", "origin": "real", "fame": "high", "attributes": accepted}
        for name, accepted in answers.items()
    ]
    entities.append({"name": "Vellmora", "type": "city", "origin": "invented", "fame": ""})
    path.write_text(json.dumps({"types": TYPES, "entities": entities}), encoding="utf-8")
    return load_entities(path)


def greedy_answer(model: interp.Model, name: str, attr: str) -> str:
    """What the model says greedily to the attribute's prompt, as `label_entities` asks it."""
    spec = TYPES["city"]["attributes"][attr]
    attribute = Attribute(attr, spec["kind"], spec["question"], spec["prefix"])
    (out,) = generate(model, [attribute_prompt(attribute, name)], max_new_tokens=MAX_NEW)
    return out.text


def echo(model: interp.Model, name: str, attr: str) -> list[Any]:
    """Accepted answers that the model's greedy answer must match: its own first sentence."""
    text = greedy_answer(model, name, attr)
    accepted = [first_sentence(text)]
    assert is_correct(text, accepted, "text"), f"degenerate tiny answer {text!r}"
    return accepted


def label(model, entities, store, **settings):
    settings = {"samples": 3, "max_new_tokens": MAX_NEW, "batch_size": 4, **settings}
    return label_entities(model, entities, store, **settings)


@pytest.fixture(scope="module")
def scenario(tiny, tmp_path_factory):
    """Porto: accepted answers = its greedy answers to two attributes (known); Lyon: to one
    (ambiguous); Zqxville: impossible strings (unknown); Vellmora: invented."""
    folder = tmp_path_factory.mktemp("entities")
    porto = {"country": echo(tiny, "Porto", "country"), "river": echo(tiny, "Porto", "river")}
    lyon = {"country": echo(tiny, "Lyon", "country")}
    answers = {
        "Porto": {**NEVER, **porto},
        "Lyon": {**NEVER, **lyon},
        "Zqxville": dict(NEVER),
    }
    entities = write_entities(folder / "entities.json", answers)
    store = folder / "store.jsonl"
    return entities, store, label(tiny, entities, store)


def test_labels_follow_the_rule(scenario):
    _, store, labels = scenario
    assert list(labels.columns) == list(COLUMNS)
    rows = labels.set_index("name")
    assert rows.loc["Porto", "label"] == "known" and rows.loc["Porto", "n_correct"] == 2
    assert rows.loc["Lyon", "label"] is None and rows.loc["Lyon", "n_correct"] == 1
    assert rows.loc["Zqxville", "label"] == "unknown" and rows.loc["Zqxville", "n_correct"] == 0
    assert rows.loc["Porto", "correct"] == {"country": True, "river": True, "founded": False}
    assert rows.loc["Porto", "greedy_correct"]["country"] is True
    assert set(rows.loc["Porto", "greedy"]) == set(ATTRS)
    assert all(rows.loc[n, "n_attributes"] == 3 and rows.loc[n, "samples"] == 3 for n in NAMES)
    assert rows.loc["Zqxville", "sample_hits"] == dict.fromkeys(ATTRS, 0)
    # the invented city is unknown without a generation
    assert rows.loc["Vellmora", "label"] == "unknown"
    assert rows.loc["Vellmora", "origin"] == "invented" and rows.loc["Vellmora", "greedy"] == {}
    records = read_records(store)
    assert len(records) == 3 * 3 * (1 + 3)  # real cities × attributes × (greedy + samples)
    assert "Vellmora" not in {r["config"]["entity"] for r in records}
    # the stored greedy answer is the prompt's plain greedy continuation
    porto = [
        r
        for r in records
        if r["config"]["entity"] == "Porto"
        and r["config"]["attribute"] == "country"
        and r["config"]["decoding"] == "greedy"
    ]
    assert [r["text"] for r in porto] == [rows.loc["Porto", "greedy"]["country"]]
    assert porto[0]["config"]["prompt"]["response"] == "The city Porto is in"


def test_a_rerun_generates_nothing_and_gives_the_same_labels(scenario, tiny, monkeypatch):
    entities, store, labels = scenario
    lines = store.read_text(encoding="utf-8")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generate was called on a finished run")

    monkeypatch.setattr(sweeps, "generate", refuse)
    again = label(tiny, entities, store)
    pd.testing.assert_frame_equal(again, labels)
    assert store.read_text(encoding="utf-8") == lines


def test_an_attribute_is_correct_through_its_samples(scenario, tiny, tmp_path, monkeypatch):
    """Accept one sampled answer (not the greedy one) of Zqxville's country: with 3 samples,
    a share of 0.3 needs 1 correct sample, 0.5 needs 2. Editing accepted answers only
    re-judges the stored answers."""
    entities, store, _ = scenario
    records = read_records(store)
    mine = [
        r
        for r in records
        if r["config"]["entity"] == "Zqxville" and r["config"]["attribute"] == "country"
    ]
    greedy = next(r["text"] for r in mine if r["config"]["decoding"] == "greedy")
    texts = [r["text"] for r in mine if r["config"]["decoding"] == "sample"]
    pick = next(
        t
        for t in texts
        if not is_correct(greedy, [first_sentence(t)], "text")
        and sum(is_correct(u, [first_sentence(t)], "text") for u in texts) == 1
    )
    answers = {
        name: {a: list(e.answers[a]) for a in ATTRS}
        for name, e in ((e.name, e) for e in entities.real())
    }
    answers["Zqxville"]["country"] = [first_sentence(pick)]
    answers["Zqxville"]["river"] = echo(tiny, "Zqxville", "river")
    edited = write_entities(tmp_path / "edited.json", answers)
    monkeypatch.setattr(sweeps, "generate", None)  # nothing new may be generated
    row = label(tiny, edited, store).set_index("name").loc["Zqxville"]
    assert row["greedy_correct"]["country"] is False and row["sample_hits"]["country"] == 1
    assert row["correct"]["country"] is True and row["label"] == "known"
    strict = label(tiny, edited, store, min_correct_samples=0.5).set_index("name").loc["Zqxville"]
    assert strict["correct"]["country"] is False and strict["label"] is None


def test_other_seeds_decodings_and_models_make_new_units(scenario, tiny, tiny_dir, tmp_path):
    entities, shared, _ = scenario
    store = tmp_path / "store.jsonl"
    store.write_bytes(shared.read_bytes())  # the scenario's units, Porto's among them
    porto = entities.select(per_type=1)  # Porto and the invented city: 3 attributes
    before = len(read_records(store))
    label(tiny, porto, store)
    assert len(read_records(store)) == before  # all there already
    label(tiny, porto, store, seed=1)
    assert len(read_records(store)) == before + 3 * 3  # new samples, greedy reused
    label(tiny, porto, store, seed=1, temperature=0.7)
    assert len(read_records(store)) == before + 6 * 3
    label(tiny, porto, store, max_new_tokens=MAX_NEW - 1)
    assert len(read_records(store)) == before + 10 * 3  # greedy and samples
    other = interp.load_model(str(tiny_dir), device="cpu")
    with torch.no_grad():
        other.hf.lm_head.weight.mul_(1.5)  # other weights: another fingerprint
    assert other.fingerprint() != tiny.fingerprint()
    labels = label(other, porto, store)
    assert len(read_records(store)) == before + 14 * 3
    assert set(labels["fingerprint"]) == {other.fingerprint()}
    sampled = [r for r in read_records(store) if r["config"]["decoding"] == "sample"]
    assert {r["config"]["seed"] for r in sampled} == {0, 1}


def test_samples_do_not_depend_on_the_batch_size(scenario, tiny, tmp_path):
    """Porto alone, one row per generate call, against the scenario's batches of 4."""
    entities, store, labels = scenario
    alone = label(tiny, entities.select(per_type=1), tmp_path / "alone.jsonl", batch_size=1)
    pd.testing.assert_frame_equal(alone.iloc[:1], labels.iloc[:1])
    ours = {r["key"]: r["text"] for r in read_records(tmp_path / "alone.jsonl")}
    theirs = {r["key"]: r["text"] for r in read_records(store)}
    assert len(ours) == 3 * 4 and ours == {key: theirs[key] for key in ours}
    assert len(set(ours.values())) > 3  # samples differ from each other: not one seed for all


def test_the_table_saves_and_loads(scenario, tmp_path):
    _, _, labels = scenario
    for name in ("labels.jsonl", "labels.csv"):
        path = save_labels_table(labels, tmp_path / "tiny" / name)
        back = load_labels(path)
        assert back["label"].tolist() == labels["label"].tolist()  # None stays None
        for column in ("name", "origin", "n_correct", "greedy", "correct", "sample_hits"):
            assert back[column].tolist() == labels[column].tolist(), (name, column)
        assert back["fingerprint"].tolist() == labels["fingerprint"].tolist()
    pd.testing.assert_frame_equal(load_labels(labels), labels)


def test_bad_input_is_one_clear_error(scenario, tiny, tmp_path):
    entities, store, labels = scenario
    empty = EntitySet(entities.types, (), "empty.json")
    with pytest.raises(ValueError, match=r"empty\.json is empty"):
        label(tiny, empty, tmp_path / "s.jsonl")
    with pytest.raises(ValueError, match=r"samples must be a whole number >= 0.*got -1"):
        label(tiny, entities, tmp_path / "s.jsonl", samples=-1)
    with pytest.raises(ValueError, match="temperature 0 cannot draw 3 samples"):
        label(tiny, entities, tmp_path / "s.jsonl", temperature=0)
    with pytest.raises(ValueError, match=r"min_correct_samples .* got 3"):
        label(tiny, entities, tmp_path / "s.jsonl", min_correct_samples=3)
    porto = entities.real()[0]
    extra = {**porto.answers, "mayor": ("Rui Moreira",)}
    odd = EntitySet(
        entities.types,
        (type(porto)(porto.type, porto.name, "real", porto.fame, extra),),
        "odd.json",
    )
    with pytest.raises(ValueError, match="attribute 'mayor', which type 'city' does not have"):
        label(tiny, odd, tmp_path / "s.jsonl")
    assert not (tmp_path / "s.jsonl").exists()  # nothing ran
    with pytest.raises(ValueError, match="is a run store, not a labels table"):
        load_labels(store)
    with pytest.raises(ValueError, match=r"must end in \.jsonl or \.csv"):
        save_labels_table(labels, tmp_path / "labels.txt")
    with pytest.raises(ValueError, match="lacks the columns"):
        load_labels(labels.drop(columns=["label"]))
