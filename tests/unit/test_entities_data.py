"""Entity data: the shipped facts load whole, and a malformed file is one line naming the fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.entities.data import load_entities

TYPES = {
    "city": {
        "noun": "city",
        "attributes": {
            "country": {
                "kind": "text",
                "question": "Which country is {entity} in?",
                "prefix": "{entity} is in",
            },
            "founded": {
                "kind": "year",
                "question": "When was {entity} founded?",
                "prefix": "{entity} was founded in",
            },
        },
    }
}


def write(tmp_path: Path, entities: list, types: dict | None = None) -> Path:
    path = tmp_path / "entities.json"
    path.write_text(json.dumps({"types": types or TYPES, "entities": entities}))
    return path


PARIS = {
    "type": "city",
    "name": "Paris",
    "origin": "real",
    "fame": "high",
    "attributes": {"country": ["France"], "founded": [-250]},
}


def test_shipped_entities_have_four_types_of_mixed_fame_and_invented_names():
    data = load_entities()
    assert sorted(data.types) == ["book", "city", "movie", "person"]
    for name, kind in data.types.items():
        assert len(kind.attributes) == 3
        real = [e for e in data.of_type(name) if e.origin == "real"]
        invented = [e for e in data.of_type(name) if e.origin == "invented"]
        assert len(real) == (100 if name == "city" else 60) and len(invented) == 15
        assert {e.fame for e in real} == {"high", "medium", "low"}
        assert all(set(e.answers) == {a.name for a in kind.attributes} for e in real)
        assert all(not e.answers for e in invented)
    paris = next(e for e in data.entities if e.name == "Paris")
    assert "France" in paris.answers["country"]
    sub = data.select(["city"], per_type=3)
    assert [e.origin for e in sub.entities] == ["real"] * 3 + ["invented"] * 3


def test_a_valid_file_reads_back(tmp_path):
    data = load_entities(write(tmp_path, [PARIS]))
    (paris,) = data.entities
    assert paris.answers == {"country": ("France",), "founded": (-250,)}
    assert data.types["city"].attribute("country").ask("Paris") == "Which country is Paris in?"


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({k: v for k, v in PARIS.items() if k != "name"}, r"entity 0 has no 'name' field"),
        ({**PARIS, "type": "town"}, r"'Paris'.*unknown type 'town'; types: city"),
        ({**PARIS, "origin": "fake"}, r"origin 'fake' is not 'real' or 'invented'"),
        (
            {**PARIS, "attributes": {"country": ["France"]}},
            r"'Paris'.*no answers for attribute 'founded'",
        ),
        (
            {**PARIS, "attributes": {"country": ["France"], "founded": ["250 BC"]}},
            r"founded answers \['250 BC'\] must all be <class 'int'>",
        ),
        ({**PARIS, "name": 'The "City"'}, r"double quote"),
    ],
)
def test_malformed_entities_name_the_entity_and_the_field(tmp_path, entity, message):
    with pytest.raises(ValueError, match=message):
        load_entities(write(tmp_path, [entity]))


def test_malformed_types_and_files(tmp_path):
    bad = {"city": {"noun": "city", "attributes": {"country": {"kind": "text", "question": "?"}}}}
    with pytest.raises(ValueError, match=r"attribute 'country' has no 'prefix' field"):
        load_entities(write(tmp_path, [PARIS], bad))
    no_slot = json.loads(json.dumps(TYPES))
    no_slot["city"]["attributes"]["country"]["question"] = "Which country?"
    with pytest.raises(ValueError, match=r"question 'Which country\?' has no \{entity\}"):
        load_entities(write(tmp_path, [PARIS], no_slot))
    with pytest.raises(ValueError, match=r"repeats the name 'paris'"):
        load_entities(write(tmp_path, [PARIS, {**PARIS, "name": "paris"}]))
    with pytest.raises(ValueError, match=r"lists no entities"):
        load_entities(write(tmp_path, []))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json is not valid JSON"):
        load_entities(broken)
    with pytest.raises(ValueError, match=r"unknown entity type 'town'"):
        load_entities(write(tmp_path, [PARIS])).select(["town"])
