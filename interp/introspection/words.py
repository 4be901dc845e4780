"""The word lists of the concept-injection protocol (Lindsey 2025), shipped as project data.

`interp/data/introspection/words.json` holds the published lists as facts: the 50 main
concepts and the 100 baseline words whose mean is subtracted from every concept's activation
(papers.md §2.2), plus any further lists the file carries (category lists, sentences, control
words). `word_list(name)` reads one; an unknown name lists the ones there are.

Repeats: a list that indexes trials (the concept words of a grid, the no-questions, the words
drawn into pairs) must name each entry once, case-insensitively (`checked_words(...,
unique=True)`): a repeated word would make one stored unit graded twice, or two concepts with
one vector. The published baseline list is kept as published, although it names "Butterflies"
twice: its mean is only subtracted from every concept, so the repeat weighs that one word
twice in the mean and indexes nothing (`extract_concepts` checks it without `unique`).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from interp.io import data_path

WORDS_FILE = "introspection/words.json"


@cache
def _lists() -> dict[str, Any]:
    path = data_path(WORDS_FILE)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected one JSON object of named word lists")
    return raw


def list_names() -> list[str]:
    """The names of the lists the data file carries (`concepts`, `baseline`, …)."""
    return sorted(k for k, v in _lists().items() if isinstance(v, list))


def word_list(name: str) -> tuple[str, ...]:
    """One shipped list, in its published order (e.g. "concepts", "baseline")."""
    value = _lists().get(name)
    if not isinstance(value, list):
        raise ValueError(
            f"no word list {name!r} in interp/data/{WORDS_FILE}; lists: {', '.join(list_names())}"
        )
    return tuple(str(w) for w in value)


def checked_words(words: object, what: str, *, unique: bool = False) -> tuple[str, ...]:
    """`words` as a tuple of non-empty strings, or an error that names the bad entry; with
    `unique`, a word given twice (case-insensitively) is an error that names it."""
    if isinstance(words, str) or not hasattr(words, "__iter__"):
        raise ValueError(f"{what} must be a list of words, got {words!r}")
    out = tuple(words)
    if not out:
        raise ValueError(f"{what} is empty; give at least one word")
    for i, word in enumerate(out):
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"{what}[{i}] is {word!r}; every entry must be a non-empty word")
    if unique:
        seen: dict[str, int] = {}
        for i, word in enumerate(out):
            first = seen.setdefault(word.strip().lower(), i)
            if first != i:
                raise ValueError(
                    f"{what} names {word!r} twice ({what}[{first}] {out[first]!r} and "
                    f"{what}[{i}], case-insensitively); give each entry once"
                )
    return out
