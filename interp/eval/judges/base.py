"""The judge interface: items in, one score from 0 to 100 (or "no score") per item out.

A judge reads a batch of `JudgeItem`s (a question, an answer and any extra fields a rubric
needs), fills a `Rubric` for each, and returns a `Score` per item. `Score.value` is None when
the judge gave no usable number: a refusal, a reply that is not a number, or (logprob method)
too little probability on number tokens. Every judge names itself with a `JudgeIdentity`
(backend, model, method, rubric digest); results are stored under that identity, so scores
from two judges or two rubrics never mix (`interp.eval.judges.run.judge_all`).

Backends: `api` (any OpenAI-compatible server), `local` (a model `load_model` loads), and
`classifier` (an offline trait classifier). A judge on a small model is not a wise judge: the
tests check that the method is implemented right, not that the scores are good.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Backend = Literal["api", "local", "classifier"]
# How a number was read:
#   logprob-0-100  one token, expected value over integer tokens 0..100 (multi-digit vocab)
#   logprob-0-9    one token on a 0-9 rubric scale, mapped to 0-100 (digit-splitting vocab:
#                  "10" would be two tokens, and its first digit would read as 1)
#   logprob        one token on a rubric whose whole scale is single tokens (e.g. 0-2)
#   digits-exact   exact expected value over digit sequences 0..100 (local judge only)
#   text           the number parsed from a generated reply (no logprobs available)
#   classifier     probability of the trait from an offline classifier, × 100
#   offline-coherence  fluency under the unsteered model × (1 − repetition), no LLM judge
Method = Literal[
    "logprob-0-100",
    "logprob-0-9",
    "logprob",
    "digits-exact",
    "text",
    "classifier",
    "offline-coherence",
]
NoScore = Literal["refusal", "low_mass", "unparsed", "error"]

MIN_NUMBER_MASS = 0.25  # papers.md §1.3: no score when Σp(number tokens) < 0.25


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: a question, the answer to it, and extra rubric fields."""

    question: str
    answer: str
    fields: Mapping[str, str] = field(default_factory=dict)  # e.g. {"concept": "..."}

    def __post_init__(self) -> None:
        for name, value in (("question", self.question), ("answer", self.answer)):
            if not isinstance(value, str):
                raise ValueError(
                    f"judge item {name} must be a string, got {value!r} ({type(value).__name__})"
                )
        for key, value in self.fields.items():
            if not isinstance(value, str):
                raise ValueError(
                    f"judge item field {key!r} must be a string, got {value!r} "
                    f"({type(value).__name__})"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "fields": dict(self.fields)}

    def digest(self) -> str:
        """Content hash of the item (its identity in the score store)."""
        payload = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Score:
    """A judge's verdict on one item: `value` in [0, 100], or None with a `no_score` reason."""

    value: float | None
    no_score: NoScore | None = None
    mass: float | None = None  # logprob methods: total probability on valid number tokens
    raw: str = ""  # the top token or the reply text (truncated), for inspection

    def __post_init__(self) -> None:
        if self.value is None and self.no_score is None:
            raise ValueError("a Score without a value needs a no_score reason")
        if self.value is not None and not 0.0 <= self.value <= 100.0:
            raise ValueError(f"score {self.value} is outside [0, 100]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgeIdentity:
    """Everything about a judge that changes its scores (never a key or an endpoint secret)."""

    backend: Backend
    model: str  # API model name, local model fingerprint, or classifier digest
    method: Method
    rubric: str  # Rubric.digest()
    settings: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"top_logprobs": 20}

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "method": self.method,
            "rubric": self.rubric,
            "settings": dict(self.settings),
        }


@runtime_checkable  # so annotations `judge: Judge` can be checked at run time (beartype)
class Judge(Protocol):
    """What every judge backend provides."""

    def identity(self, rubric: Any) -> JudgeIdentity:
        """The identity under which this judge's scores with `rubric` are stored."""
        ...

    def score(self, items: Sequence[JudgeItem], rubric: Any) -> list[Score]:
        """One Score per item, in order (batched and concurrent as the backend allows)."""
        ...
