"""Is a model's answer about an entity attribute correct? (Ferrando et al. 2025, §3.1)

The model continues an assistant prefix ("The director of the movie "Jaws" is"); `is_correct`
judges that continuation, not the prefix, which holds the entity's name and could contain an
accepted answer itself ("Mexico City is in the country of" + "Mexico").

Only the answer's first line and first sentence count (`first_sentence`): a model that goes on
to list every country, or asks itself the question again, is judged on what it said first.
Sentence ends are ".", "!" or "?" before a space or the end, except after an initial or a
usual abbreviation ("J. K. Rowling", "St. Petersburg", "Washington, D.C.").

- text: both sides are normalised (`normalize`: case folded, accents stripped, apostrophes
  dropped, other punctuation made a space). An accepted answer is found if it occurs as whole
  words in the answer, or if its best-matching window of the answer's words (as many words
  as the accepted answer, one fewer or one more) has a similarity of at least 90 out of 100
  (`partial_ratio`: difflib's ratio, the measure thefuzz's partial ratio uses, aligned on
  word boundaries). One character off in a 10-letter name passes; "Austria" for
  "Australia" or "Iran" for "Iraq" does not. Whole-word containment is lenient by design
  (as in the paper's code): "Guinea" is found in "Papua New Guinea". A sentence that
  enumerates `LIST_ITEMS` (4) or more items separated by commas, semicolons, slashes or "or"
  ("Spain, France, Portugal, or Italy") is a guess at many: only its first item counts.
  Shorter ones are read whole ("Austin, Texas, United States").
- year: the first number of 3 or 4 digits in the answer must lie within `year_tolerance` of
  an accepted year ("the 1990s" reads as 1990).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Literal

FUZZY_THRESHOLD = 90
# letters that NFKD does not split into a base letter and a combining accent
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ı": "i", "þ": "th"})
_APOSTROPHES = re.compile(r"['’`ʼ]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_LEAD = " \t\r\n:;,-–—*\"'“”‘’`>#"
_END = re.compile(r"[.!?](?=\s|$)")
_TITLES = ("st", "mt", "ft", "dr", "mr", "mrs", "ms", "jr", "sr", "prof", "gen", "col", "lt")
_OTHER = ("sgt", "rev", "fr", "vs", "etc", "no", "vol", "ca", "approx", "co", "inc", "ltd")
_MONTHS = ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
_ABBREVIATIONS = frozenset(_TITLES + _OTHER + _MONTHS)
_LIST_SEPARATORS = re.compile(r"[,;/]|\bor\b", re.IGNORECASE)
LIST_ITEMS = 4
_YEAR = re.compile(r"(?<!\d)(\d{3,4})(?!\d)")


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents and apostrophes dropped,
    every other run of punctuation or space made one space."""
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    plain = _APOSTROPHES.sub("", plain)
    return _NOT_WORD.sub(" ", plain).strip()


def first_sentence(answer: str) -> str:
    """The answer up to its first line break or sentence end (leading spaces, colons,
    dashes, quotes and list markers skipped)."""
    text = answer.lstrip(_LEAD)
    text = text.split("\n", 1)[0]
    for end in _END.finditer(text):
        words = text[: end.start()].split()
        last = words[-1].lstrip("(\"'“‘") if words else ""
        if text[end.start()] == "." and _abbreviation(last):
            continue
        return text[: end.start()]
    return text


def _abbreviation(word: str) -> bool:
    """Whether a period after `word` marks an abbreviation rather than a sentence end."""
    if len(word) == 1 and word.isalpha():  # an initial: "J. K. Rowling"
        return True
    if "." in word and all(len(part) <= 2 for part in word.split(".")):  # "D.C", "U.S"
        return True
    return word.lower() in _ABBREVIATIONS


def partial_ratio(needle: str, haystack: str) -> float:
    """Best similarity (0-100) of normalised `needle` against a window of `haystack`'s words
    of as many words as `needle`, one fewer or one more (difflib ratio × 100)."""
    target, words = normalize(needle), normalize(haystack).split()
    if not target or not words:
        return 0.0
    n = len(target.split())
    best = 0.0
    for size in {max(1, n - 1), n, n + 1}:
        for start in range(max(1, len(words) - size + 1)):
            window = " ".join(words[start : start + size])
            score = SequenceMatcher(None, target, window, autojunk=False).ratio() * 100
            best = max(best, score)
    return best


def _text_correct(answer: str, accepted: Sequence[str | int]) -> bool:
    items = [item for item in _LIST_SEPARATORS.split(answer) if normalize(item)]
    if len(items) >= LIST_ITEMS:  # an enumeration: only its first item is the answer
        answer = items[0]
    said = normalize(answer)
    if not said:
        return False
    padded = f" {said} "
    for value in accepted:
        wanted = normalize(str(value))
        if not wanted:
            continue
        if f" {wanted} " in padded or partial_ratio(wanted, said) >= FUZZY_THRESHOLD:
            return True
    return False


def first_year(answer: str) -> int | None:
    """The first number of 3 or 4 digits in `answer`, or None."""
    found = _YEAR.search(answer)
    return int(found.group(1)) if found else None


def _year_correct(answer: str, accepted: Sequence[str | int], tolerance: int) -> bool:
    said = first_year(answer)
    if said is None:
        return False
    for value in accepted:
        try:
            year = int(str(value).strip())
        except ValueError:
            raise ValueError(
                f"accepted year {value!r} is not a whole number; write years as integers "
                "(e.g. 1994) in the entity file"
            ) from None
        if abs(said - year) <= tolerance:
            return True
    return False


def is_correct(
    answer_text: str,
    accepted: Sequence[str | int],
    kind: Literal["text", "year"],
    *,
    year_tolerance: int = 2,
) -> bool:
    """Whether the first sentence of `answer_text` (the model's continuation of the
    assistant prefix) gives one of the `accepted` answers (see the module docstring)."""
    if isinstance(accepted, (str, bytes)):
        raise ValueError(
            f"accepted must be a list of answers, not the string {accepted!r}; pass [{accepted!r}]"
        )
    tolerance = year_tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"year_tolerance must be a whole number >= 0, got {year_tolerance!r}")
    sentence = first_sentence(answer_text)
    if kind == "text":
        return _text_correct(sentence, accepted)
    if kind == "year":
        return _year_correct(sentence, accepted, year_tolerance)
    raise ValueError(f"answer kind {kind!r} is not 'text' or 'year'")
