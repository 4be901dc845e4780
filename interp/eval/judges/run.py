"""Judge many items through a run store: one record per (judge, rubric, item), resumable.

`judge_all` keys each unit by the judge's identity (backend, model, method, rubric digest,
settings), the rubric's digest and the item's content digest. Judging the same items again
reads the store and calls no backend; a run that stops part-way (an API error, a kill) keeps
every finished batch and the next call scores only the rest. Scores from another judge,
another rubric or an edited item never match a key, so they are never reused.

Each record holds `score` (0-100 or null), `no_score`, `mass`, `raw` and the item itself, so
`scores_frame(path)` (or `RunStore(path).frame()`) loads them as a DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from interp.eval.judges.base import Judge, JudgeItem, Score
from interp.eval.judges.rubrics import Rubric, resolve
from interp.progress import bar as progress_bar
from interp.runs.store import RunStore, load_frame, unit_key


def unit_config(identity: dict[str, Any], rubric: Rubric, item: JudgeItem) -> dict[str, Any]:
    """The store key's content for one judged item."""
    return {"kind": "judge", "judge": identity, "rubric": rubric.digest(), "item": item.digest()}


def _record(score: Score, item: JudgeItem, rubric: Rubric) -> dict[str, Any]:
    return {
        "score": score.value,
        "no_score": score.no_score,
        "mass": score.mass,
        "raw": score.raw,
        "rubric_name": rubric.name,
        "item": item.to_dict(),
    }


def _score_of(record: dict[str, Any]) -> Score:
    return Score(record["score"], record["no_score"], record["mass"], record["raw"])


def judge_all(
    judge: Judge,
    items: Sequence[JudgeItem],
    rubric: Rubric | str | Path,
    store: RunStore | str | Path,
    *,
    batch_size: int = 32,
    progress: bool | None = None,
) -> list[Score]:
    """Score every item with `judge`, reusing what `store` holds; one Score per item, in order.

    Items not yet in the store go to `judge.score` `batch_size` at a time, and each batch is
    recorded as soon as it returns (so an interruption loses at most one batch). A repeated
    item is scored once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for i, item in enumerate(items):
        if not isinstance(item, JudgeItem):
            raise ValueError(
                f"item {i} is a {type(item).__name__}, not a JudgeItem; build items with "
                "JudgeItem(question, answer, fields)"
            )
    rubric = resolve(rubric)
    runs = store if isinstance(store, RunStore) else RunStore(store)
    identity = judge.identity(rubric).to_dict()
    configs = [unit_config(identity, rubric, item) for item in items]
    todo = runs.todo(configs)
    with progress_bar(len(items), "judge", "item", progress, initial=len(items) - len(todo)) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            batch = [items[i] for i in chunk]
            scores = judge.score(batch, rubric)
            if len(scores) != len(batch):
                raise ValueError(
                    f"judge {identity['backend']}:{identity['model']} returned {len(scores)} "
                    f"scores for {len(batch)} items; a judge must return one Score per item"
                )
            for i, score in zip(chunk, scores, strict=True):
                runs.append(configs[i], _record(score, items[i], rubric))
            bar.update(len(chunk))
    wanted = {unit_key(config) for config in configs}
    found = {r["key"]: r for r in runs.records() if r["key"] in wanted}
    return [_score_of(found[unit_key(config)]) for config in configs]


def scores_frame(path: str | Path) -> pd.DataFrame:
    """The judge records of a store as a DataFrame: score, no_score, mass, raw, item and keys."""
    frame = load_frame(path)
    if "config.kind" in frame.columns:
        frame = frame[frame["config.kind"] == "judge"].reset_index(drop=True)
    return frame
