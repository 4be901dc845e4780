"""Rubrics are data: a template with validated slots, a score scale, and a content digest.

A rubric file is JSON (`interp/data/rubrics/*.json` ships the built-in ones):

    {"name": "coherence", "description": "...", "scale_max": 100,
     "template": "... {question} ... {answer} ... from 0 to {scale_max} ..."}

Slots are `{name}` fields. `{question}` and `{answer}` come from the item, `{scale_max}` from
the scale the judge reads numbers on (100, or 10 when a tokenizer splits numbers into digits;
the judge maps the number back to 0-100), and any other slot from the item's `fields` or from
`fill(...)` (e.g. a trait's name and description). A slot that stays unfilled is an error
that names it.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from interp.eval.judges.base import JudgeItem
from interp.io import data_path

ITEM_SLOTS = ("question", "answer")
SCALE_SLOT = "scale_max"


def _slots(template: str) -> tuple[str, ...]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(
            f"rubric template is malformed ({err}); escape literal braces as {{{{ }}}}"
        ) from None
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"rubric slot {{{name}}} is not a plain name; use e.g. {{trait}}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Rubric:
    """A judging prompt: `template` with slots, scored on 0..`scale_max`."""

    name: str
    template: str
    scale_max: int = 100
    description: str = ""
    values: Mapping[str, str] = field(default_factory=dict)  # slots filled by `fill`

    def __post_init__(self) -> None:
        if self.scale_max not in (2, 10, 100):
            raise ValueError(
                f"rubric {self.name!r}: scale_max must be 2, 10 or 100, not {self.scale_max}"
            )
        slots = _slots(self.template)
        for needed in ITEM_SLOTS:
            if needed not in slots:
                raise ValueError(
                    f"rubric {self.name!r} has no {{{needed}}} slot, so the judge "
                    "would not see the item; add it to the template"
                )
        unknown = set(self.values) - set(slots)
        if unknown:
            raise ValueError(
                f"rubric {self.name!r} has no slot named {sorted(unknown)}; "
                f"its slots: {list(slots)}"
            )

    @property
    def slots(self) -> tuple[str, ...]:
        return _slots(self.template)

    def fill(self, **values: str) -> Rubric:
        """A copy with some slots fixed (e.g. `trait=..., description=...`)."""
        return replace(self, values={**self.values, **values})

    def render(self, item: JudgeItem, scale_max: int | None = None) -> str:
        """The prompt for `item`; every slot must be filled, or the error names the missing one."""
        given: dict[str, Any] = {
            **self.values,
            **item.fields,
            "question": item.question,
            "answer": item.answer,
        }
        given[SCALE_SLOT] = scale_max if scale_max is not None else self.scale_max
        missing = [slot for slot in self.slots if slot not in given]
        if missing:
            raise ValueError(
                f"rubric {self.name!r} needs {missing}; pass them with rubric.fill(...) "
                "or in each item's fields"
            )
        return self.template.format(**given)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "scale_max": self.scale_max,
            "template": self.template,
            "values": dict(self.values),
        }

    def digest(self) -> str:
        """Content hash of everything that changes the prompt (template, scale, filled slots)."""
        payload = json.dumps(
            {k: v for k, v in self.to_dict().items() if k != "description"},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path) -> Rubric:
        """Read a rubric JSON file; errors name the file and the field."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no rubric file at {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a JSON rubric file ({err})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a rubric file holds one JSON object")
        for key in ("name", "template"):
            if not isinstance(raw.get(key), str):
                raise ValueError(f"{path}: field {key!r} must be a string")
        extra = set(raw) - {"name", "description", "scale_max", "template", "values"}
        if extra:
            raise ValueError(f"{path}: unknown field(s) {sorted(extra)}")
        scale = raw.get("scale_max", 100)
        if not isinstance(scale, int) or isinstance(scale, bool):
            raise ValueError(f"{path}: field 'scale_max' must be an integer (2, 10 or 100)")
        try:
            return cls(
                raw["name"],
                raw["template"],
                scale,
                str(raw.get("description", "")),
                dict(raw.get("values", {})),
            )
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def builtin(name: str) -> Rubric:
    """A rubric shipped in `interp/data/rubrics/` by name (e.g. "trait", "coherence")."""
    folder = data_path("rubrics")
    path = folder / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.json"))
        raise ValueError(f"no built-in rubric {name!r}; available: {', '.join(available)}")
    return Rubric.load(path)


def resolve(spec: str | Path | Rubric) -> Rubric:
    """A Rubric from an object, a built-in name, or a JSON file path."""
    if isinstance(spec, Rubric):
        return spec
    text = str(spec)
    if text.endswith(".json") or Path(text).exists():
        return Rubric.load(text)
    return builtin(text)
