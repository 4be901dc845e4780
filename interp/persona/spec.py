"""Trait specs: everything that defines one persona trait, as a checked JSON file.

A spec file (`interp/data/persona/traits/<name>.json` ships the built-in ones; the README there
describes the format) holds:

    {"name": "evil", "adjective": "evil", "antonym": "helpful", "description": "...",
     "instructions": [{"pos": "...", "neg": "..."}, ...],          # >= 5 pairs
     "extraction_questions": ["..."], "evaluation_questions": ["..."],  # >= 10 each, disjoint
     "rubric": "trait",             # a built-in rubric name, or {name, template, scale_max,
                                    # description}; {trait} and {description} are filled here
     "monitor": {"system_prompts": ["..."],                         # >= 8, most suppressing first
                 "many_shot": [{"question": "...", "answer": "..."}]},  # >= 20
     "source": "..."}

`load_spec` reads a built-in name or a path and checks every field. Each error is a
`SpecError` whose message names the file, the field path (e.g. `instructions[3].neg`) and the
fix. Questions are compared after folding case and whitespace.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.eval.judges.rubrics import ITEM_SLOTS, SCALE_SLOT, Rubric, builtin
from interp.io import data_path

TRAITS_DIR = "persona/traits"
MIN_INSTRUCTIONS = 5
MIN_QUESTIONS = 10
MIN_SYSTEM_PROMPTS = 8
MIN_MANY_SHOT = 20
POLARITIES = ("pos", "neg")
FIELDS = (
    "name",
    "adjective",
    "antonym",
    "description",
    "instructions",
    "extraction_questions",
    "evaluation_questions",
    "rubric",
    "monitor",
    "source",
)
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
RubricRef = str | tuple[tuple[str, str | int], ...]  # a built-in name, or inline fields


class SpecError(ValueError):
    """A trait spec that cannot be used; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class InstructionPair:
    """One instruction that elicits the trait (`pos`) and one that suppresses it (`neg`)."""

    pos: str
    neg: str


@dataclass(frozen=True)
class Shot:
    """One many-shot example: a question and an answer that shows the trait strongly."""

    question: str
    answer: str


def article(word: str) -> str:
    """'an' before a vowel letter, else 'a'."""
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"


def fold(text: str) -> str:
    """The form questions are compared in: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class TraitSpec:
    """One trait's data. Build it with `load_spec` or `parse_spec`, which check every field."""

    name: str
    adjective: str
    antonym: str
    description: str
    instructions: tuple[InstructionPair, ...]
    extraction_questions: tuple[str, ...]
    evaluation_questions: tuple[str, ...]
    rubric_ref: RubricRef
    monitor_prompts: tuple[str, ...]  # graded: most trait-suppressing first
    many_shot: tuple[Shot, ...]
    source: str

    def system_prompt(self, polarity: str, index: int) -> str:
        """`You are a/an <adjective or antonym> assistant. <instruction>` for pair `index`."""
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be 'pos' or 'neg', not {polarity!r}")
        if not 0 <= index < len(self.instructions):
            raise IndexError(
                f"trait {self.name!r} has instruction pairs 0..{len(self.instructions) - 1}, "
                f"not {index}"
            )
        pair = self.instructions[index]
        if polarity == "pos":
            who, instruction = self.adjective, pair.pos
        else:
            who, instruction = self.antonym, pair.neg
        return f"You are {article(who)} {who} assistant. {instruction}"

    def rubric(self) -> Rubric:
        """The judge rubric with {trait} and {description} filled from this spec."""
        return _rubric(self.rubric_ref, self.name, self.description)

    def to_dict(self) -> dict[str, Any]:
        """The spec in the file format (`parse_spec(spec.to_dict()) == spec`)."""
        return {
            "name": self.name,
            "adjective": self.adjective,
            "antonym": self.antonym,
            "description": self.description,
            "instructions": [{"pos": p.pos, "neg": p.neg} for p in self.instructions],
            "extraction_questions": list(self.extraction_questions),
            "evaluation_questions": list(self.evaluation_questions),
            "rubric": self.rubric_ref
            if isinstance(self.rubric_ref, str)
            else dict(self.rubric_ref),
            "monitor": {
                "system_prompts": list(self.monitor_prompts),
                "many_shot": [{"question": s.question, "answer": s.answer} for s in self.many_shot],
            },
            "source": self.source,
        }

    def digest(self) -> str:
        """Content hash (16 hex digits) of every field but `source`, for result keys."""
        payload = {k: v for k, v in self.to_dict().items() if k != "source"}
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rubric(ref: RubricRef, trait: str, description: str) -> Rubric:
    if isinstance(ref, str):
        base = builtin(ref)
    else:
        fields = dict(ref)
        base = Rubric(
            str(fields["name"]),
            str(fields["template"]),
            int(fields.get("scale_max", 100)),
            str(fields.get("description", "")),
        )
    given = {"trait": trait, "description": description}
    rubric = base.fill(**{k: v for k, v in given.items() if k in base.slots})
    left = [
        s for s in rubric.slots if s not in rubric.values and s not in (*ITEM_SLOTS, SCALE_SLOT)
    ]
    if left:
        raise ValueError(
            f"rubric {rubric.name!r} leaves {left} unfilled; a trait rubric may use only "
            "{trait}, {description}, {question}, {answer} and {scale_max}"
        )
    return rubric


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class _Reader:
    """Checks one spec's fields; every failure is a SpecError naming the file and field."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, where: str, problem: str, fix: str) -> SpecError:
        return SpecError(f"{self.label}: {where + ': ' if where else ''}{problem}; {fix}")

    def obj(
        self, value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        allowed = [*required, *optional]
        if not isinstance(value, dict):
            raise self.fail(
                where, f"expected an object, got {_kind(value)}", f"write {{{', '.join(allowed)}}}"
            )
        unknown = [k for k in value if k not in allowed]
        if unknown:
            hints = [
                f"{_at(where, k)!r} (did you mean {close[0]!r}?)"
                if (close := difflib.get_close_matches(k, allowed, n=1))
                else repr(_at(where, k))
                for k in unknown
            ]
            raise self.fail(
                "",
                f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}",
                f"fix the spelling or remove it; the fields here are {', '.join(allowed)}",
            )
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(
                where,
                f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
                "add it (the format is in interp/data/persona/README.md)",
            )
        return value

    def text(self, value: Any, where: str, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_kind(value)}", f"write {what}")
        if not value.strip():
            raise self.fail(where, "empty string", f"write {what}")
        return value.strip()

    def array(self, value: Any, where: str, minimum: int, what: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, got {_kind(value)}", f"list {what}")
        if len(value) < minimum:
            raise self.fail(
                where,
                f"{len(value)} found, at least {minimum} needed",
                f"add {minimum - len(value)} more {what}",
            )
        return value

    def unique(self, texts: Sequence[str], where: str, suffix: str = "") -> None:
        seen: dict[str, int] = {}
        for i, text in enumerate(texts):
            first = seen.setdefault(fold(text), i)
            if first != i:
                raise self.fail(
                    f"{where}[{i}]{suffix}",
                    f"repeats {where}[{first}]{suffix} ({_short(text)})",
                    "remove or reword one of them",
                )

    def disjoint(self, a: Sequence[str], name_a: str, b: Sequence[str], name_b: str) -> None:
        folded = {fold(t) for t in b}
        shared = [t for t in a if fold(t) in folded]
        if shared:
            raise self.fail(
                "",
                f"{name_a} and {name_b} share {len(shared)} question"
                f"{'s' if len(shared) > 1 else ''}: {', '.join(_short(t) for t in shared)}",
                "each question belongs to one set",
            )

    def questions(self, value: Any, where: str) -> tuple[str, ...]:
        items = self.array(value, where, MIN_QUESTIONS, "questions")
        texts = [self.text(q, _at(where, i), "the question") for i, q in enumerate(items)]
        self.unique(texts, where)
        return tuple(texts)

    def instructions(self, value: Any) -> tuple[InstructionPair, ...]:
        where = "instructions"
        items = self.array(value, where, MIN_INSTRUCTIONS, "instruction pairs")
        pairs = []
        for i, item in enumerate(items):
            at = _at(where, i)
            raw = self.obj(item, at, ("pos", "neg"))
            pos = self.text(
                raw["pos"], _at(at, "pos"), "the positive (trait-eliciting) instruction"
            )
            neg = self.text(raw["neg"], _at(at, "neg"), "the negative instruction")
            if fold(pos) == fold(neg):
                raise self.fail(
                    at,
                    "pos and neg are the same text",
                    "the neg instruction must ask for the opposite",
                )
            pairs.append(InstructionPair(pos, neg))
        self.unique([p.pos for p in pairs], where, ".pos")
        self.unique([p.neg for p in pairs], where, ".neg")
        return tuple(pairs)

    def rubric(self, value: Any) -> RubricRef:
        if isinstance(value, str):
            return self.text(value, "rubric", "a built-in rubric name, e.g. 'trait'")
        raw = self.obj(value, "rubric", ("name", "template"), ("scale_max", "description"))
        fields: dict[str, str | int] = {
            key: self.text(raw[key], _at("rubric", key), f"the rubric's {key}")
            for key in ("name", "template")
        }
        if "description" in raw:
            if not isinstance(raw["description"], str):
                raise self.fail("rubric.description", "expected a string", "write a string")
            fields["description"] = raw["description"]
        if "scale_max" in raw:
            scale = raw["scale_max"]
            if isinstance(scale, bool) or not isinstance(scale, int):
                raise self.fail(
                    "rubric.scale_max", f"expected an integer, got {_kind(scale)}", "write 100"
                )
            fields["scale_max"] = scale
        return tuple(fields.items())

    def many_shot(self, value: Any) -> tuple[Shot, ...]:
        where = "monitor.many_shot"
        items = self.array(value, where, MIN_MANY_SHOT, "examples")
        shots = []
        for i, item in enumerate(items):
            at = _at(where, i)
            raw = self.obj(item, at, ("question", "answer"))
            shots.append(
                Shot(
                    self.text(raw["question"], _at(at, "question"), "the question"),
                    self.text(raw["answer"], _at(at, "answer"), "an answer that shows the trait"),
                )
            )
        self.unique([s.question for s in shots], where, ".question")
        return tuple(shots)


def parse_spec(data: Any, label: str = "<spec>") -> TraitSpec:
    """A checked TraitSpec from the parsed JSON of a spec file; errors start with `label`."""
    read = _Reader(label)
    raw = read.obj(data, "", FIELDS)
    name = read.text(raw["name"], "name", "the trait's identifier, e.g. 'evil'")
    if not NAME.fullmatch(name):
        raise read.fail("name", f"{name!r} is not an identifier", "use a-z, 0-9 and '-' only")
    adjective = read.text(raw["adjective"], "adjective", "the adjective, e.g. 'evil'")
    antonym = read.text(raw["antonym"], "antonym", "the opposite adjective, or 'helpful'")
    if fold(antonym) == fold(adjective):
        raise read.fail("antonym", "same as adjective", "write the opposite, or 'helpful'")
    description = read.text(raw["description"], "description", "what the trait means")
    instructions = read.instructions(raw["instructions"])
    extraction = read.questions(raw["extraction_questions"], "extraction_questions")
    evaluation = read.questions(raw["evaluation_questions"], "evaluation_questions")
    read.disjoint(extraction, "extraction_questions", evaluation, "evaluation_questions")
    rubric_ref = read.rubric(raw["rubric"])
    try:
        _rubric(rubric_ref, name, description)
    except ValueError as err:
        raise read.fail(
            "rubric", str(err), "name a built-in rubric or fix the inline template"
        ) from None
    monitor = read.obj(raw["monitor"], "monitor", ("system_prompts", "many_shot"))
    prompts_at = "monitor.system_prompts"
    items = read.array(monitor["system_prompts"], prompts_at, MIN_SYSTEM_PROMPTS, "system prompts")
    prompts = tuple(
        read.text(p, _at(prompts_at, i), "a system prompt") for i, p in enumerate(items)
    )
    read.unique(prompts, prompts_at)
    shots = read.many_shot(monitor["many_shot"])
    read.disjoint(
        [s.question for s in shots],
        "monitor.many_shot questions",
        evaluation,
        "evaluation_questions",
    )
    return TraitSpec(
        name=name,
        adjective=adjective,
        antonym=antonym,
        description=description,
        instructions=instructions,
        extraction_questions=extraction,
        evaluation_questions=evaluation,
        rubric_ref=rubric_ref,
        monitor_prompts=prompts,
        many_shot=shots,
        source=read.text(raw["source"], "source", "where the wording comes from"),
    )


def _traits_dir() -> Path:
    return data_path(TRAITS_DIR)


def builtin_traits() -> tuple[str, ...]:
    """Names of the trait specs shipped in `interp/data/persona/traits/`."""
    return tuple(sorted(p.stem for p in _traits_dir().glob("*.json")))


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load_spec(path_or_name: str | Path) -> TraitSpec:
    """A built-in trait by name (see `builtin_traits`) or a spec JSON file, checked."""
    names = ", ".join(builtin_traits())
    text = str(path_or_name)
    if isinstance(path_or_name, str) and text in builtin_traits():
        path, label, stem = _traits_dir() / f"{text}.json", f"{text}.json", text
    else:
        path, label, stem = Path(path_or_name), text, None
        if path.is_dir():
            raise SpecError(f"{path} is a directory; give a spec JSON file or a built-in: {names}")
        if not path.is_file():
            what = f"no built-in trait {text!r} and no" if NAME.fullmatch(text) else "no"
            raise SpecError(
                f"{what} trait spec file at {path}; give a JSON file or a built-in trait: {names}"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError as err:
        raise SpecError(f"{label}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise SpecError(
            f"{label}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}); "
            "fix the syntax (a trailing comma or a missing quote is common)"
        ) from None
    except _DuplicateKey as err:
        raise SpecError(
            f"{label}: field {err.args[0]!r} appears twice in one object; keep one"
        ) from None
    spec = parse_spec(data, label)
    if stem is not None and spec.name != stem:
        raise SpecError(f"{label}: name: {spec.name!r} differs from the file name; use {stem!r}")
    return spec
