"""Entity data: types, attributes, question templates and entities (Ferrando et al. 2025, §3.1).

The shipped file `interp/data/entities/entities.json` holds facts: four entity types (city,
person, movie, book), each with three attributes and, per attribute, a user question and the
start of an answer the model continues (the paper's "assistant prefix"); real entities of mixed
fame (60 per type, and 40 more low-fame cities, because SmolLM2 places even small towns on the
right continent and language and so rarely gets all three attributes of a city wrong), with the
accepted answers for every attribute, and 15 invented names per type as an extra control (they
have no attributes: the model cannot know them).

`load_entities(path=None)` reads and checks a file of that shape; any missing or malformed
field is one ValueError naming the entity (or type) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from interp.io import data_path, existing_file

ENTITIES_FILE = "entities/entities.json"
Kind = Literal["text", "year"]
Origin = Literal["real", "invented"]


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: Kind
    question: str  # user question, "{entity}" placeholder
    prefix: str  # start of the assistant's answer that the model continues

    def ask(self, entity: str) -> str:
        return self.question.replace("{entity}", entity)

    def answer_start(self, entity: str) -> str:
        return self.prefix.replace("{entity}", entity)


@dataclass(frozen=True)
class EntityType:
    name: str
    noun: str  # as written in prompts: "The {noun} \"{entity}\""
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute:
        for attr in self.attributes:
            if attr.name == name:
                return attr
        known = ", ".join(a.name for a in self.attributes)
        raise KeyError(f"type {self.name!r} has no attribute {name!r}; it has: {known}")


@dataclass(frozen=True)
class Entity:
    type: str
    name: str
    origin: Origin
    fame: str
    answers: dict[str, tuple[str | int, ...]]  # attribute -> accepted answers

    @property
    def key(self) -> str:
        return f"{self.type}:{self.name}"


@dataclass(frozen=True)
class EntitySet:
    types: dict[str, EntityType]
    entities: tuple[Entity, ...]
    source: str

    def of_type(self, name: str) -> list[Entity]:
        return [e for e in self.entities if e.type == name]

    def real(self) -> list[Entity]:
        return [e for e in self.entities if e.origin == "real"]

    def select(self, types: Sequence[str] | None = None, per_type: int | None = None) -> EntitySet:
        """A subset: only `types`, and at most `per_type` real and invented entities of each."""
        names = list(types) if types else list(self.types)
        for name in names:
            if name not in self.types:
                raise ValueError(f"unknown entity type {name!r}; types: {', '.join(self.types)}")
        kept: list[Entity] = []
        for name in names:
            for origin in ("real", "invented"):
                group = [e for e in self.of_type(name) if e.origin == origin]
                kept += group[:per_type] if per_type is not None else group
        return EntitySet({n: self.types[n] for n in names}, tuple(kept), self.source)


def _field(record: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise ValueError(f"{where} has no {name!r} field; add it (see {ENTITIES_FILE})")
    value = record[name]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{where}: field {name!r} is {value!r}; expected a non-empty {kind}")
    return value


def _type(name: str, raw: Any, where: str) -> EntityType:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: type {name!r} must be an object, got {raw!r}")
    noun = _field(raw, "noun", f"{where} type {name!r}", str)
    attrs = []
    for attr_name, spec in _field(raw, "attributes", f"{where} type {name!r}", dict).items():
        at = f"{where} type {name!r} attribute {attr_name!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at} must be an object, got {spec!r}")
        kind = _field(spec, "kind", at, str)
        if kind not in ("text", "year"):
            raise ValueError(f"{at}: kind {kind!r} is not 'text' or 'year'")
        question, prefix = _field(spec, "question", at, str), _field(spec, "prefix", at, str)
        for label, text in (("question", question), ("prefix", prefix)):
            if "{entity}" not in text:
                raise ValueError(f"{at}: {label} {text!r} has no {{entity}} placeholder")
        attrs.append(Attribute(attr_name, kind, question, prefix))
    if not attrs:
        raise ValueError(f"{where} type {name!r} has no attributes; give at least one")
    return EntityType(name, noun, tuple(attrs))


def _entity(raw: Any, index: int, types: dict[str, EntityType], where: str) -> Entity:
    at = f"{where} entity {index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{at} must be an object, got {raw!r}")
    name = _field(raw, "name", at, str)
    at = f"{where} entity {index} ({name!r})"
    type_name = _field(raw, "type", at, str)
    if type_name not in types:
        raise ValueError(f"{at}: unknown type {type_name!r}; types: {', '.join(types)}")
    origin = _field(raw, "origin", at, str)
    if origin not in ("real", "invented"):
        raise ValueError(f"{at}: origin {origin!r} is not 'real' or 'invented'")
    if '"' in name:
        raise ValueError(f"{at}: names may not contain a double quote (prompts quote them)")
    answers: dict[str, tuple[str | int, ...]] = {}
    raw_answers = raw.get("attributes", {})
    if not isinstance(raw_answers, dict):
        raise ValueError(f"{at}: 'attributes' must be an object, got {raw_answers!r}")
    if origin == "real":
        for attr in types[type_name].attributes:
            values = raw_answers.get(attr.name)
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"{at} has no answers for attribute {attr.name!r}; a real entity lists the "
                    "accepted answers of every attribute of its type"
                )
            wanted = int if attr.kind == "year" else str
            if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
                raise ValueError(f"{at}: {attr.name} answers {values!r} must all be {wanted}")
            answers[attr.name] = tuple(values)
    return Entity(type_name, name, origin, str(raw.get("fame", "")), answers)


def load_entities(path: str | Path | None = None) -> EntitySet:
    """Read an entity file (default: the shipped one) and check every field."""
    file = data_path(ENTITIES_FILE) if path is None else existing_file(path)
    try:
        raw = json.loads(Path(file).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err}); fix the file") from None
    where = str(file)
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must hold one JSON object with 'types' and 'entities'")
    types = {
        name: _type(name, spec, where) for name, spec in _field(raw, "types", where, dict).items()
    }
    listed = _field(raw, "entities", where, list)
    entities = tuple(_entity(item, i, types, where) for i, item in enumerate(listed))
    seen: dict[str, int] = {}
    for i, e in enumerate(entities):
        low = e.name.lower()
        if low in seen:
            raise ValueError(
                f"{where}: entity {i} repeats the name {e.name!r} (entity {seen[low]})"
            )
        seen[low] = i
    if not entities:
        raise ValueError(f"{where} lists no entities; add some")
    return EntitySet(types, entities, where)
