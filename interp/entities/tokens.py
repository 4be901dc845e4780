"""The scoring prompt and where the entity sits in it: last entity token, next token, tokenization.

Ferrando et al. read the residual stream at the last token of the entity name. On a small
model, tokenization alone separates famous from obscure names (a famous city is one token, an
obscure or invented one several word fragments), so every entity also records:

- `n_tokens`: how many tokens its name takes in the prompt;
- `word_start`: whether its last token starts a word (the first token of the name, or a token
  that begins with a space) rather than ending inside one;
- the position of the first token after the name, which is the same word (" is") for every
  entity, so a difference there cannot come from the name's last token itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from interp.batching import Encoded, encode
from interp.batching import as_example as _as_example
from interp.entities.data import Entity, EntityType
from interp.models import Model

TEMPLATE = "The {noun} {name} is"


def scoring_prompt(entity: Entity, types: dict[str, EntityType]) -> str:
    return TEMPLATE.format(noun=types[entity.type].noun, name=entity.name)


@dataclass(frozen=True)
class EntityTokens:
    last: int  # index of the last token of the name
    after: int  # index of the first token after the name
    n_tokens: int
    word_start: bool
    last_text: str


def locate(encoded: Encoded, name: str, model: Model) -> EntityTokens:
    """Where `name` ends in the encoded prompt (its first occurrence) and what follows it."""
    first = encoded.find(name, "start")
    last = encoded.find(name, "end")
    if last + 1 >= len(encoded.ids):
        raise ValueError(f"nothing follows {name!r} in {encoded.text!r}; the prompt must go on")
    text = str(model.tokenizer.decode([encoded.ids[last]]))
    return EntityTokens(
        last=last,
        after=last + 1,
        n_tokens=last - first + 1,
        word_start=last == first or text[:1].isspace(),
        last_text=text,
    )


def locate_all(
    model: Model, entities: Sequence[Entity], types: dict[str, EntityType]
) -> tuple[list[str], list[EntityTokens]]:
    """Scoring prompts for `entities` and the entity tokens in each."""
    prompts = [scoring_prompt(e, types) for e in entities]
    found = [
        locate(encode(model, _as_example(p)), e.name, model)
        for p, e in zip(prompts, entities, strict=True)
    ]
    return prompts, found
