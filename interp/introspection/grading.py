"""Grading detection trials: four YES/NO criteria, by rules or by a judge (Lindsey 2025
§"Injected thoughts", appendix grader prompts; papers.md §2.4).

The criteria (`CRITERIA`, one `Grade` per reply):
- `coherent`: the reply is readable language, not garbled or a loop (the paper's Coherence);
- `affirmative`: the reply claims to notice an injected or unusual thought (Affirmative
  response);
- `identified`: affirmative, and the thought is named as the concept (its word, a form of it or
  a close relative), with the claim made before or together with the first mention; a reply
  whose first word is the concept does not count, nor does "I detect a {word}" read as a
  physical object (Affirmative response followed by correct identification);
- `thinking`: the reply names or is about the concept, whether or not it claims a detection
  (Thinking about word; here also the "influence" signal, so a mention counts).
Control trials have no concept: `identified` and `thinking` are False and only `coherent` and
`affirmative` are graded. So that influence (`thinking` on injected trials) has an uninjected
baseline, `grade_trials` also grades each control reply's `thinking` against a concept paired
with it (`baseline_concept`, `baseline_thinking`; see `baseline_concepts`): common words are
forms of some concepts ("information", "memory", "peace"), and the baseline shows how often a
reply names the concept with no injection at all.

Two graders implement `Grader`:
- `RuleGrader`: transparent rules (`interp.introspection.rules`): affirmation patterns with
  negation, word forms plus MiniLM relatedness, the order rule, a coherence screen. Cheap and
  deterministic; nothing is stored.
- `JudgeGrader`: any `interp.eval.judges.base.Judge` with the four shipped YES/NO rubrics
  (`interp/data/rubrics/introspection-*.json`). The published graders reason aloud and end with
  YES or NO; the project's judges read one number from log-probabilities, so each rubric asks for
  0 (NO) to `scale_max` (YES), which the judge reads as 0-100 (about P(YES) × 100 for a judge that
  answers only 0 or the top); a score >= `THRESHOLD` (50) is YES and no score is NO. Every
  judgement goes through `judge_all`, so it is stored and resumable, keyed by the judge's identity,
  the rubric and the item.

`grade_trials` turns `run_trials` records into a table; `grader_agreement` compares graders with
each other and with hand labels (agreement rate and Cohen's kappa per criterion).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from interp.eval import stats
from interp.eval.judges.base import Judge, JudgeItem
from interp.eval.judges.classifier import EMBEDDING_MODEL
from interp.eval.judges.rubrics import Rubric, resolve
from interp.eval.judges.run import judge_all
from interp.introspection import rules
from interp.introspection.trials import QUESTION
from interp.runs.store import RunStore, canonical

CRITERIA = ("coherent", "affirmative", "identified", "thinking")
WORD_CRITERIA = ("identified", "thinking")  # need a concept; False on control trials
RUBRICS = {
    "coherent": "introspection-coherence",
    "affirmative": "introspection-affirmative",
    "identified": "introspection-identified",
    "thinking": "introspection-thinking",
}
THRESHOLD = 50.0
TRIAL_COLUMNS = (
    "experiment",
    "scale",
    "fraction",
    "layer",
    "strength",
    "trial",
    "concept",
    "sample",
)
BASELINE_COLUMNS = ("baseline_concept", "baseline_thinking")
BASELINE_CELL = ("experiment", "scale", "fraction", "layer", "strength")


@dataclass(frozen=True)
class Grade:
    """The four YES/NO criteria for one reply (see the module docstring)."""

    coherent: bool
    affirmative: bool
    identified: bool
    thinking: bool

    def to_dict(self) -> dict[str, bool]:
        return {c: bool(getattr(self, c)) for c in CRITERIA}


@runtime_checkable
class Grader(Protocol):
    """Grades replies to the detection question; `identity` names everything that changes it."""

    identity: Mapping[str, Any]

    def grade_all(
        self,
        replies: Sequence[str],
        words: Sequence[str | None],
        store: RunStore | str | Path | None = None,
    ) -> list[Grade]: ...


def grader_digest(grader: Grader) -> str:
    """Short content hash of a grader's identity (the `grader` column of `grade_trials`)."""
    payload = json.dumps(canonical(dict(grader.identity)), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def checked_replies(replies: object, words: object) -> tuple[list[str], list[str | None]]:
    """`replies` and `words` as lists of equal length, or an error naming the bad value.

    The graders' methods take `Sequence[object]` so that a wrong entry reaches this check
    (and its one-line message) rather than a run-time type checker's."""
    if isinstance(replies, str) or not isinstance(replies, Sequence):
        raise ValueError(f"replies must be a list of strings, got {replies!r}")
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise ValueError(f"words must be a list (a concept, or None per control), got {words!r}")
    if len(replies) != len(words):
        raise ValueError(
            f"got {len(replies)} replies but {len(words)} words; give one word (None for a "
            "control trial) per reply"
        )
    for i, reply in enumerate(replies):
        if not isinstance(reply, str):
            raise ValueError(f"reply {i} is {reply!r} ({type(reply).__name__}), not a string")
    for i, word in enumerate(words):
        if word is not None and (not isinstance(word, str) or not word.strip()):
            raise ValueError(
                f"word {i} is {word!r}; give the concept as a non-empty string, or None for a "
                "control trial"
            )
    return [str(r) for r in replies], [None if w is None else str(w) for w in words]


class RuleGrader:
    """Transparent rules (`interp.introspection.rules`; thresholds documented there).

    Args:
        related_cosine: MiniLM cosine from which a reply token counts as a close relative of
            the concept (calibrated; see `rules.RELATED_COSINE`).
        embedder: texts -> unit embeddings; default all-MiniLM-L6-v2 through the classifier
            judge's loader. Another embedder is named in the identity by its qualified name.
    """

    def __init__(
        self,
        *,
        related_cosine: float = rules.RELATED_COSINE,
        embedder: rules.Embedder | None = None,
    ) -> None:
        if not 0.0 < related_cosine <= 1.0:
            raise ValueError(f"related_cosine must be in (0, 1], got {related_cosine!r}")
        chosen = embedder if embedder is not None else rules.minilm
        self.mentions = rules.Mentions(related_cosine, chosen)
        name = EMBEDDING_MODEL if embedder is None else getattr(embedder, "__qualname__", "custom")
        self.identity: Mapping[str, Any] = {
            "kind": "rule",
            "version": rules.RULES_VERSION,
            "embedding": name,
            "related_cosine": related_cosine,
            "coherence": {
                "min_words": rules.MIN_WORDS,
                "min_letters": rules.MIN_LETTERS,
                "min_known": rules.MIN_KNOWN,
                "max_repetition": rules.MAX_REPETITION,
                "max_word_share": rules.MAX_WORD_SHARE,
            },
        }

    def grade(self, reply: object, word: object) -> Grade:
        """One reply's grade (`word` None for a control trial)."""
        ((text,), (concept,)) = checked_replies([reply], [word])
        found = rules.claims(text)
        mentions = self.mentions.find(text, concept) if concept is not None else []
        return Grade(
            coherent=rules.coherent(text, concept),
            affirmative=bool(found),
            identified=rules.identified(text, found, mentions),
            thinking=bool(mentions),
        )

    def _prepared(
        self, replies: Sequence[object], words: Sequence[object]
    ) -> tuple[list[str], list[str | None]]:
        """The checked replies and words, with the mention matcher primed on the pairs that
        have a word (one embedding batch for all of them)."""
        texts, concepts = checked_replies(replies, words)
        pairs = [(r, w) for r, w in zip(texts, concepts, strict=True) if w is not None]
        self.mentions.prepare([r for r, _ in pairs], [w for _, w in pairs])
        return texts, concepts

    def grade_all(
        self,
        replies: Sequence[object],
        words: Sequence[object],
        store: RunStore | str | Path | None = None,
    ) -> list[Grade]:
        """One Grade per reply (`store` is accepted for the protocol and not used)."""
        texts, concepts = self._prepared(replies, words)
        return [self.grade(r, w) for r, w in zip(texts, concepts, strict=True)]

    def thinking_all(
        self,
        replies: Sequence[object],
        words: Sequence[object],
        store: RunStore | str | Path | None = None,
    ) -> list[bool]:
        """`thinking` alone for each (reply, concept) pair (the influence baseline)."""
        texts, concepts = self._prepared(replies, words)
        return [
            w is not None and bool(self.mentions.find(r, w))
            for r, w in zip(texts, concepts, strict=True)
        ]

    def explain(self, reply: object, word: object) -> dict[str, Any]:
        """What each rule found in `reply` (claims, mentions, coherence parts) and the grade."""
        ((text,), (concept,)) = checked_replies([reply], [word])
        found = rules.evidence(text, concept, self.mentions)
        return {**found, **self.grade(text, concept).to_dict()}


class JudgeGrader:
    """Four YES/NO rubrics asked of any `Judge`, through the run store (module docstring).

    Args:
        judge: any object with the `Judge` protocol (API, local or a test's fake).
        rubrics: criterion -> rubric (object, built-in name or JSON path); default `RUBRICS`.
        question: the trial question shown to the judge (default: the detection question).
        threshold: a score (0-100) at or above which the answer is YES.
        batch_size: items per judge call.
    """

    def __init__(
        self,
        judge: Judge,
        *,
        rubrics: Mapping[str, Rubric | str | Path] | None = None,
        question: str = QUESTION,
        threshold: float = THRESHOLD,
        batch_size: int = 16,
        progress: bool | None = None,
    ) -> None:
        given = dict(RUBRICS if rubrics is None else rubrics)
        if set(given) != set(CRITERIA):
            raise ValueError(
                f"JudgeGrader needs one rubric per criterion {list(CRITERIA)}, got {sorted(given)}"
            )
        if not 0.0 <= threshold <= 100.0:
            raise ValueError(f"threshold is a 0-100 score, got {threshold!r}")
        self.judge = judge
        self.rubrics = {c: resolve(given[c]) for c in CRITERIA}
        for criterion in WORD_CRITERIA:
            if "word" not in self.rubrics[criterion].slots:
                raise ValueError(
                    f"the {criterion} rubric {self.rubrics[criterion].name!r} has no {{word}} "
                    "slot, so the judge would not know the concept; add it to the template"
                )
        self.question = question
        self.threshold = float(threshold)
        self.batch_size = batch_size
        self.progress = progress
        self.identity: Mapping[str, Any] = {
            "kind": "judge",
            "version": 1,
            "judges": {c: judge.identity(r).to_dict() for c, r in self.rubrics.items()},
            "rubrics": {c: r.digest() for c, r in self.rubrics.items()},
            "question": question,
            "threshold": self.threshold,
        }

    def items(
        self, criterion: str, replies: Sequence[str], words: Sequence[str | None]
    ) -> list[tuple[int, JudgeItem]]:
        """(reply index, item) for each reply the criterion's rubric is asked about."""
        needs_word = criterion in WORD_CRITERIA
        out = []
        for i, (reply, word) in enumerate(zip(replies, words, strict=True)):
            if needs_word and word is None:
                continue
            fields = {"word": word.lower()} if needs_word and word is not None else {}
            out.append((i, JudgeItem(self.question, reply, fields)))
        return out

    def grade_all(
        self,
        replies: Sequence[object],
        words: Sequence[object],
        store: RunStore | str | Path | None = None,
    ) -> list[Grade]:
        """One Grade per reply; judgements are read from / written to `store` (a temporary
        store when None). `identified` also needs the affirmative verdict."""
        texts, concepts = checked_replies(replies, words)
        if store is None:
            with tempfile.TemporaryDirectory() as folder:
                return self._grade(texts, concepts, RunStore(Path(folder) / "grades.jsonl"))
        runs = store if isinstance(store, RunStore) else RunStore(store)
        return self._grade(texts, concepts, runs)

    def thinking_all(
        self,
        replies: Sequence[object],
        words: Sequence[object],
        store: RunStore | str | Path | None = None,
    ) -> list[bool]:
        """`thinking` alone for each (reply, concept) pair (the influence baseline): only the
        thinking rubric is asked, through the store like `grade_all`."""
        texts, concepts = checked_replies(replies, words)
        if store is None:
            with tempfile.TemporaryDirectory() as folder:
                return self._thinking(texts, concepts, RunStore(Path(folder) / "grades.jsonl"))
        return self._thinking(
            texts, concepts, store if isinstance(store, RunStore) else RunStore(store)
        )

    def _thinking(self, replies: list[str], words: list[str | None], store: RunStore) -> list[bool]:
        out = [False] * len(replies)
        pairs = self.items("thinking", replies, words)
        if pairs:
            scores = judge_all(
                self.judge,
                [item for _, item in pairs],
                self.rubrics["thinking"],
                store,
                batch_size=self.batch_size,
                progress=self.progress,
            )
            for (i, _), score in zip(pairs, scores, strict=True):
                out[i] = score.value is not None and score.value >= self.threshold
        return out

    def _grade(self, replies: list[str], words: list[str | None], store: RunStore) -> list[Grade]:
        verdicts = {c: [False] * len(replies) for c in CRITERIA}
        for criterion in CRITERIA:
            pairs = self.items(criterion, replies, words)
            if not pairs:
                continue
            scores = judge_all(
                self.judge,
                [item for _, item in pairs],
                self.rubrics[criterion],
                store,
                batch_size=self.batch_size,
                progress=self.progress,
            )
            for (i, _), score in zip(pairs, scores, strict=True):
                verdicts[criterion][i] = score.value is not None and score.value >= self.threshold
        return [
            Grade(
                coherent=verdicts["coherent"][i],
                affirmative=verdicts["affirmative"][i],
                identified=verdicts["identified"][i] and verdicts["affirmative"][i],
                thinking=verdicts["thinking"][i],
            )
            for i in range(len(replies))
        ]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def baseline_concepts(rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The concept each control row is paired with for the influence baseline (None for
    injected rows, and for a control whose cell has no injected trial).

    A cell is (`BASELINE_CELL`: experiment, scale, fraction, layer, strength). Its controls are
    numbered by `sample` 0..n-1 (and a cell has as many controls as concepts by default), so
    control sample i is paired with the i-th of the cell's injected concepts in sorted order
    (i modulo their number; a control without a sample number counts as sample 0)."""

    def cell(row: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(repr(row.get(c)) for c in BASELINE_CELL)

    concepts: dict[tuple[str, ...], set[str]] = {}
    for row in rows:
        if row.get("trial") != "control" and row.get("concept") is not None:
            concepts.setdefault(cell(row), set()).add(str(row["concept"]))
    out: list[str | None] = []
    for row in rows:
        own = sorted(concepts.get(cell(row), ())) if row.get("trial") == "control" else []
        sample = row.get("sample")
        index = int(sample) if isinstance(sample, (int, float)) and sample == sample else 0
        out.append(own[index % len(own)] if own else None)
    return out


def grade_trials(
    records: Sequence[Mapping[str, Any]],
    grader: Grader,
    store: RunStore | str | Path | None = None,
) -> pd.DataFrame:
    """One row per trial record (as `run_trials` returns them): `key`, the trial's config fields
    (`TRIAL_COLUMNS` always, None where a record has none, then its other plain config
    fields), `text`, the four CRITERIA, `grader` (the identity digest), then the influence
    baseline (`BASELINE_COLUMNS`): on a control row, `baseline_concept` (the concept paired
    with it by `baseline_concepts`) and `baseline_thinking` (the grader's `thinking` for the
    reply against that concept); both missing (None, or NaN as pandas stores it) on injected
    rows and on a control whose cell has no injected trial. A grader with a
    `thinking_all(replies, words, store)` method (both shipped graders) grades only `thinking`
    for the baseline pairs (a judge asks only its thinking rubric, through the same store);
    any other `Grader` grades them with `grade_all`."""
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        config = record.get("config") if isinstance(record, Mapping) else None
        if not isinstance(config, Mapping) or not isinstance(record.get("text"), str):
            raise ValueError(
                f"trial record {i} is not a run_trials record (it needs a 'config' mapping and "
                f"a 'text' string): {str(record)[:120]!r}"
            )
        concept = config.get("concept")
        if config.get("trial") == "control" and concept is not None:
            raise ValueError(f"trial record {i} is a control trial with concept {concept!r}")
        row: dict[str, Any] = {"key": record.get("key")}
        row.update({column: config.get(column) for column in TRIAL_COLUMNS})
        row.update({k: v for k, v in config.items() if k not in row and _scalar(v)})
        row["text"] = record["text"]
        rows.append(row)
    paired = baseline_concepts(rows)
    extra = [(i, word) for i, word in enumerate(paired) if word is not None]
    grades = grader.grade_all([r["text"] for r in rows], [r["concept"] for r in rows], store)
    texts, words = [rows[i]["text"] for i, _ in extra], [word for _, word in extra]
    thinking = getattr(grader, "thinking_all", None)
    if not extra:
        baseline: list[bool] = []
    elif callable(thinking):
        baseline = [bool(t) for t in thinking(texts, words, store)]
    else:
        baseline = [g.thinking for g in grader.grade_all(texts, words, store)]
    digest = grader_digest(grader)
    for row, grade, word in zip(rows, grades, paired, strict=True):
        row.update(grade.to_dict())
        row["grader"] = digest
        row["baseline_concept"], row["baseline_thinking"] = word, None
    for (i, _), value in zip(extra, baseline, strict=True):
        rows[i]["baseline_thinking"] = value
    fixed = ["key", *TRIAL_COLUMNS, "text", *CRITERIA, "grader", *BASELINE_COLUMNS]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=fixed)
    rest = [c for c in frame.columns if c not in fixed]
    return frame[["key", *TRIAL_COLUMNS, *rest, "text", *CRITERIA, "grader", *BASELINE_COLUMNS]]


LABEL_FIELDS = ("text", "word", *CRITERIA, "source")


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    """Hand labels: JSON lines with `text`, `word` (None for a control), the four CRITERIA as
    booleans and `source`; errors name the line."""
    path = Path(path)
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not JSON ({err})") from None
        missing = [f for f in LABEL_FIELDS if not isinstance(row, dict) or f not in row]
        if missing:
            raise ValueError(f"{path}:{number} lacks {missing}")
        for criterion in CRITERIA:
            if not isinstance(row[criterion], bool):
                raise ValueError(f"{path}:{number}: {criterion} is {row[criterion]!r}, not a bool")
        if row["word"] is None and (row["identified"] or row["thinking"]):
            raise ValueError(f"{path}:{number}: a control reply cannot be identified or thinking")
        if row["identified"] and not row["affirmative"]:
            raise ValueError(f"{path}:{number}: identified without affirmative")
        out.append(row)
    return out


def grader_agreement(
    labels: str | Path | Sequence[Mapping[str, Any]],
    graders: Mapping[str, Grader],
    store: RunStore | str | Path | None = None,
) -> pd.DataFrame:
    """Per criterion and rater pair: agreement rate and Cohen's kappa with a bootstrap 95% CI.

    Pairs are every grader against the hand labels ("hand"), then every pair of graders.
    `identified` and `thinking` are compared on the replies that have a concept only (on
    controls they are False by construction, which would inflate agreement).
    """
    rows = load_labels(labels) if isinstance(labels, (str, Path)) else [dict(r) for r in labels]
    if not graders:
        raise ValueError("grader_agreement needs at least one grader, e.g. {'rule': RuleGrader()}")
    texts = [r["text"] for r in rows]
    words = [r["word"] for r in rows]
    verdicts: dict[str, list[dict[str, bool]]] = {
        "hand": [{c: r[c] for c in CRITERIA} for r in rows]
    }
    for name, grader in graders.items():
        if name == "hand":
            raise ValueError("'hand' names the hand labels; call the grader something else")
        verdicts[name] = [g.to_dict() for g in grader.grade_all(texts, words, store)]
    names = list(graders)
    pairs = [("hand", n) for n in names] + list(itertools.combinations(names, 2))
    out = []
    for criterion in CRITERIA:
        keep = [i for i, w in enumerate(words) if w is not None or criterion not in WORD_CRITERIA]
        for a, b in pairs:
            x = np.array([verdicts[a][i][criterion] for i in keep], dtype=np.float64)
            y = np.array([verdicts[b][i][criterion] for i in keep], dtype=np.float64)
            kappa = stats.kappa(100 * x, 100 * y, threshold=THRESHOLD)
            out.append(
                {
                    "criterion": criterion,
                    "a": a,
                    "b": b,
                    "n": len(keep),
                    "yes_a": int(x.sum()),
                    "yes_b": int(y.sum()),
                    "agreement": float((x == y).mean()) if len(keep) else float("nan"),
                    "kappa": kappa.value,
                    "kappa_low": kappa.low,
                    "kappa_high": kappa.high,
                }
            )
    return pd.DataFrame(out)
