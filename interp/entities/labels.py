"""Known / unknown entity labels from the model's own answers (Ferrando et al. 2025, §3.1).

For every real entity and every attribute of its type the model is asked the attribute's
question in a chat (user turn `Attribute.ask(name)`) and continues the assistant prefix
(`Attribute.answer_start(name)`): once greedily and `samples` times at `temperature`. Each
continuation is judged by `interp.entities.matching.is_correct` against the entity's accepted
answers.

- An attribute is correct if the greedy answer is correct, or if at least
  `min_correct_samples` (a share, 0.3 by default) of the sampled answers are: the paper's
  code takes 3 of 10 samples; with 5 samples 0.3 needs ceil(1.5) = 2.
- An entity is `known` with 2 or more correct attributes, `unknown` with none, and
  ambiguous (label None, discarded downstream) in between (paper §3.1).
- Invented entities are labelled `unknown` without asking: the model cannot know them.
  Their `origin` column ("invented") lets analyses keep them apart from real unknowns.

Every generation is one unit of an `interp.runs.sweeps` sweep in the run store at
`store_path`, keyed by the model fingerprint and dtype, the entity type, name and attribute,
the prompt (as given and by its token ids), and the decoding (greedy or the temperature, the
seed, `max_new_tokens`, stop strings). A rerun with the same arguments reads the store and
generates nothing; another model, seed or decoding computes new units. Units are appended per
batch, so an interrupted run loses at most one batch. Greedy units are keyed with seed 0
whatever `seed` is given (greedy decoding does not use it), so runs that differ only in
their seed share them. Each sample is drawn with a seed derived from its unit's config, so a
resumed or re-batched run samples the same text.

The returned table has one row per entity; `save_labels_table` writes it (JSONL or CSV) and
`load_labels` reads it back, so callers can cache labels per model, e.g. at
`results/entities/<model>/labels.jsonl` beside the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from interp.batching import Example
from interp.entities.data import Attribute, Entity, EntitySet
from interp.entities.matching import is_correct
from interp.models import Model
from interp.runs.store import RunStore
from interp.runs.sweeps import Cell, sweep_records

EXPERIMENT = "entity_labels"
KNOWN_MIN_ATTRIBUTES = 2  # paper: known if >= 2 attributes are correct
COLUMNS = (
    "type",
    "name",
    "origin",
    "fame",
    "n_correct",
    "n_attributes",
    "label",
    "greedy",  # attribute -> greedy answer (the continuation of the prefix)
    "greedy_correct",  # attribute -> whether the greedy answer is correct
    "sample_hits",  # attribute -> how many sampled answers are correct
    "correct",  # attribute -> whether the attribute counts as correct
    "samples",  # sampled answers per attribute
    "model",
    "fingerprint",
)
DICT_COLUMNS = ("greedy", "greedy_correct", "sample_hits", "correct")


def attribute_prompt(attribute: Attribute, entity: str) -> Example:
    """The chat that asks `attribute` of `entity`, with the assistant prefix to continue."""
    chat = [{"role": "user", "content": attribute.ask(entity)}]
    return Example(prompt=chat, response=attribute.answer_start(entity))


def _check_settings(
    entities: EntitySet, samples: int, temperature: float | int, min_correct_samples: float | int
) -> None:
    if not entities.entities:
        raise ValueError(
            f"the entity set from {entities.source} is empty; give entities to label "
            "(load_entities(), or select() with types that have entities)"
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(
            f"samples must be a whole number >= 0 (0 = greedy only; the paper uses 10), "
            f"got {samples!r}"
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number > 0 (e.g. 1.0), got {temperature!r}")
    if samples > 0 and not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature {temperature!r} cannot draw {samples} samples: at 0 (greedy) they "
            "would all be the greedy answer; give a temperature > 0 (e.g. 1.0) or samples=0"
        )
    share = min_correct_samples
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(
            f"min_correct_samples is the share of sampled answers that must be correct, in "
            f"(0, 1]; got {share!r} (the paper's 3 of 10 is 0.3)"
        )
    seen: set[tuple[str, str]] = set()
    for i, entity in enumerate(entities.entities):
        if (entity.type, entity.name) in seen:
            raise ValueError(
                f"entity {i} repeats {entity.type} {entity.name!r}; give each entity once"
            )
        seen.add((entity.type, entity.name))
        kind = entities.types.get(entity.type)
        if kind is None:
            raise ValueError(
                f"entity {i} ({entity.name!r}) has type {entity.type!r}, which the set does not "
                f"define (types: {', '.join(entities.types) or 'none'}); add the type or drop it"
            )
        if entity.origin != "real":
            continue
        names = [a.name for a in kind.attributes]
        for attr in entity.answers:
            if attr not in names:
                raise ValueError(
                    f"entity {entity.name!r} has answers for attribute {attr!r}, which type "
                    f"{entity.type!r} does not have (it has: {', '.join(names)}); rename or "
                    "drop it in the entity file"
                )
        for attr in names:
            if not entity.answers.get(attr):
                raise ValueError(
                    f"entity {entity.name!r} has no accepted answers for attribute {attr!r} of "
                    f"type {entity.type!r}; add them to the entity file"
                )


def _cells(entities: EntitySet, sampled: int) -> tuple[list[Cell], list[Cell]]:
    """Greedy cells and sampled cells (`sampled` per attribute) of every real entity."""
    greedy, samples = [], []
    for entity in entities.real():
        for attr in entities.types[entity.type].attributes:
            prompt = attribute_prompt(attr, entity.name)
            where = {
                "experiment": EXPERIMENT,
                "entity_type": entity.type,
                "entity": entity.name,
                "attribute": attr.name,
            }
            greedy.append(Cell(prompt, (), {**where, "decoding": "greedy"}))
            for k in range(sampled):
                samples.append(Cell(prompt, (), {**where, "decoding": "sample", "sample": k}))
    return greedy, samples


def _answers(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """(type, entity, attribute) -> the answers of those records, in order."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for record in records:
        config = record["config"]
        where = (config["entity_type"], config["entity"], config["attribute"])
        out.setdefault(where, []).append(str(record["text"]))
    return out


def _row(
    entity: Entity,
    entities: EntitySet,
    greedy: dict[tuple[str, str, str], list[str]],
    sampled: dict[tuple[str, str, str], list[str]],
    samples: int,
    needed: int,
    identity: dict[str, str],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "type": entity.type,
        "name": entity.name,
        "origin": entity.origin,
        "fame": entity.fame,
    }
    if entity.origin != "real":
        return {
            **row,
            "n_correct": 0,
            "n_attributes": 0,
            "label": "unknown",
            **{column: {} for column in DICT_COLUMNS},
            "samples": 0,
            **identity,
        }
    texts: dict[str, str] = {}
    greedy_ok: dict[str, bool] = {}
    hits: dict[str, int] = {}
    correct: dict[str, bool] = {}
    for attr in entities.types[entity.type].attributes:
        where = (entity.type, entity.name, attr.name)
        accepted = entity.answers[attr.name]
        (text,) = greedy[where]
        texts[attr.name] = text
        greedy_ok[attr.name] = is_correct(text, accepted, attr.kind)
        hits[attr.name] = sum(is_correct(t, accepted, attr.kind) for t in sampled.get(where, []))
        correct[attr.name] = greedy_ok[attr.name] or (samples > 0 and hits[attr.name] >= needed)
    n_correct = sum(correct.values())
    label = "known" if n_correct >= KNOWN_MIN_ATTRIBUTES else "unknown" if n_correct == 0 else None
    return {
        **row,
        "n_correct": n_correct,
        "n_attributes": len(correct),
        "label": label,
        "greedy": texts,
        "greedy_correct": greedy_ok,
        "sample_hits": hits,
        "correct": correct,
        "samples": samples,
        **identity,
    }


def label_entities(
    model: Model,
    entities: EntitySet,
    store_path: str | Path | RunStore,
    *,
    samples: int = 5,
    temperature: float | int = 1.0,
    max_new_tokens: int = 24,
    seed: int = 0,
    batch_size: int = 32,
    min_correct_samples: float | int = 0.3,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Label every entity known / unknown / ambiguous (None) from the model's answers.

    Generates what the store at `store_path` does not hold yet (greedy, then `samples`
    samples per attribute at `temperature`), then judges every answer. Returns one row per
    entity, in the set's order, with the columns in `COLUMNS`: type, name, origin, fame,
    n_correct, n_attributes, label ("known", "unknown" or None), and per attribute (dicts
    keyed by attribute name) the greedy answer, whether it is correct, how many samples are
    correct and whether the attribute counts as correct; then samples, model, fingerprint.
    """
    _check_settings(entities, samples, temperature, min_correct_samples)
    store = store_path if isinstance(store_path, RunStore) else RunStore(store_path)
    greedy_cells, sample_cells = _cells(entities, samples)
    settings: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "progress": progress,
    }
    greedy: dict[tuple[str, str, str], list[str]] = {}
    sampled: dict[tuple[str, str, str], list[str]] = {}
    if greedy_cells:  # none when the set holds only invented entities
        greedy = _answers(
            sweep_records(model, greedy_cells, store, temperature=0.0, seed=0, **settings)
        )
    if sample_cells:
        sampled = _answers(
            sweep_records(
                model, sample_cells, store, temperature=float(temperature), seed=seed, **settings
            )
        )
    needed = math.ceil(min_correct_samples * samples - 1e-9)
    identity = {"model": model.name, "fingerprint": model.fingerprint()}
    rows = [
        _row(entity, entities, greedy, sampled, samples, needed, identity)
        for entity in entities.entities
    ]
    return _normalised(pd.DataFrame(rows, columns=list(COLUMNS)))


def save_labels_table(labels: pd.DataFrame, path: str | Path) -> Path:
    """Write a `label_entities` table as JSON lines (.jsonl) or CSV (.csv; the per-attribute
    dict columns as JSON text). Returns the path."""
    out = Path(path)
    _check_table(labels, str(out))
    if out.suffix not in (".jsonl", ".csv"):
        raise ValueError(f"labels table {out} must end in .jsonl or .csv; rename it")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = labels[list(COLUMNS)]
    if out.suffix == ".jsonl":
        lines = [
            json.dumps(_plain(record), ensure_ascii=False)
            for record in frame.to_dict(orient="records")
        ]
        out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    else:
        frame = frame.copy()
        for column in DICT_COLUMNS:
            frame[column] = [json.dumps(value, ensure_ascii=False) for value in frame[column]]
        frame.to_csv(out, index=False)
    return out


def load_labels(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A labels table saved by `save_labels_table` (.jsonl or .csv), or a frame to check.

    The label column holds "known", "unknown" or None (ambiguous); the per-attribute columns
    hold dicts again.
    """
    if isinstance(source, pd.DataFrame):
        _check_table(source, "the labels frame")
        return _normalised(source.copy())
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"no labels table at {path}; run label_entities and save_labels_table first"
        )
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(
                    f"{path}:{number} is not JSON; the labels table was edited (write it again "
                    "with save_labels_table)"
                ) from None
        if records and "key" in records[0] and "config" in records[0]:
            raise ValueError(
                f"{path} is a run store, not a labels table; call label_entities with it as "
                "store_path (it reads the stored answers and generates nothing new), then "
                "save_labels_table"
            )
        frame = pd.DataFrame(records)
    elif path.suffix == ".csv":
        text_columns = ("type", "name", "origin", "fame", "label", "model", "fingerprint")
        frame = pd.read_csv(path, keep_default_na=False, dtype=dict.fromkeys(text_columns, str))
        for column in DICT_COLUMNS:
            if column in frame:
                frame[column] = [json.loads(value) for value in frame[column]]
    else:
        raise ValueError(f"labels table {path} must end in .jsonl or .csv")
    _check_table(frame, str(path))
    return _normalised(frame)


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the label column "known" / "unknown" / None (CSV and JSON give NaN or "")."""
    labels = [value if value in ("known", "unknown") else None for value in frame["label"]]
    # object dtype: a string column would turn None into NaN
    frame["label"] = pd.Series(labels, index=frame.index, dtype=object)
    return frame[list(COLUMNS)].reset_index(drop=True)


def _check_table(frame: pd.DataFrame, where: str) -> None:
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{where} is not a labels table: it lacks the columns {missing}; make it with "
            "label_entities"
        )


def _plain(value: Any) -> Any:
    """`value` with numpy scalars made Python ones (for json.dumps)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
