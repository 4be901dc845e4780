"""Intentional control: "think about X" vs "don't think about X" (Lindsey 2025 §"Intentional
control of internal states"; papers.md §2.7).

Can a model raise a concept's representation when asked to think about it while it writes
something unrelated? The user asks for a sentence to be written while thinking (or not
thinking) about a word, in this project's words following the published structure, and the
assistant's turn is prefilled with the sentence itself:

    user:      Write "{sentence}" As you write the sentence, think about {word}. Do not write
               anything else.                       (`dont`: "… do not think about {word} …")
    assistant: {sentence}                           (prefilled; nothing is generated)

The measure is, at every block, the cosine between the mean activation over the assistant's
sentence tokens (the response tokens: a `response:mean` capture, at the concept vectors' site)
and the word's concept vector. The baseline is the same cosine with the concept vectors of
the 100 published control words (`word_list("control_words")`), which must be extracted
against the same baseline words as the concepts (`extract_concepts(model,
words=word_list("control_words"))`), so both carry the same baseline subtraction. Activations
are not centred: the cosines of one prompt with its word and with the control words share the
activation, so the comparison is like for like.

More conditions (the paper's incentive variants, e.g. rewarded / punished) are more entries
of `templates`, each with `{sentence}` and `{word}` slots.

`run_intent` stores one record per prompt (its cosine with the word at each block and with
each control word at each block), keyed by the model, the prompt's tokens and the vectors'
values, so a rerun captures only the missing prompts. `summarize_intent` gives the traces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import Example, encode_all
from interp.capture import capture
from interp.introspection.concepts import ConceptVectors
from interp.introspection.thoughts_text import experiment_records, make_pairs, put
from interp.models import Model
from interp.runs.store import RunStore, unit_key

THINK = (
    'Write "{sentence}" As you write the sentence, think about {word}. Do not write anything else.'
)
DONT = (
    'Write "{sentence}" As you write the sentence, do not think about {word}. Do not write '
    "anything else."
)
TEMPLATES: dict[str, str] = {"think": THINK, "dont": DONT}
REDUCTION = "response:mean"
SPREAD = 0.95  # the share of control words inside the baseline band


@dataclass(frozen=True)
class IntentPrompt:
    """One prompt: a condition's instruction for (sentence, word), the sentence prefilled."""

    condition: str
    pair: int
    sentence: str
    word: str

    def example(self, templates: Mapping[str, str]) -> Example:
        text = templates[self.condition].format(sentence=self.sentence, word=self.word.lower())
        return Example([{"role": "user", "content": text}], self.sentence)


def intent_prompts(
    pairs: Sequence[tuple[str, str]], templates: Mapping[str, str] = TEMPLATES
) -> list[IntentPrompt]:
    """Every pair under every condition of `templates`."""
    if not templates:
        raise ValueError("no conditions given; e.g. templates=intent.TEMPLATES")
    for name, template in templates.items():
        if "{sentence}" not in template or "{word}" not in template:
            raise ValueError(
                f"condition {name!r} must have {{sentence}} and {{word}} slots, got {template!r}"
            )
    if not pairs:
        raise ValueError("no (sentence, word) pairs given; give at least one")
    return [
        IntentPrompt(condition, p, sentence, word)
        for p, (sentence, word) in enumerate(pairs)
        for condition in templates
    ]


def cosines(
    acts: Float[Tensor, "prompt layer d_model"], vectors: Float[Tensor, "prompt layer d_model"]
) -> Float[Tensor, "prompt layer"]:
    """Cosine of each prompt's activation with its own vector, per layer."""
    return torch.nn.functional.cosine_similarity(acts.float(), vectors.float(), dim=-1)


def control_cosines(
    acts: Float[Tensor, "prompt layer d_model"], controls: Float[Tensor, "word layer d_model"]
) -> Float[Tensor, "prompt layer word"]:
    """Cosine of each prompt's activation with every control vector, per layer."""
    a = torch.nn.functional.normalize(acts.float(), dim=-1)
    c = torch.nn.functional.normalize(controls.float(), dim=-1)
    return torch.einsum("pld,wld->plw", a, c)


def _check_sets(model: Model, concepts: ConceptVectors, controls: ConceptVectors) -> None:
    concepts.check(model)
    controls.check(model)
    if concepts.layers != controls.layers or concepts.meta.site != controls.meta.site:
        raise ValueError(
            f"the control-word vectors cover {controls.meta.site} blocks {list(controls.layers)}, "
            f"the concepts {concepts.meta.site} blocks {list(concepts.layers)}; extract both "
            "at the same blocks and site"
        )
    # the same baseline words captured in another batch differ by float noise relative to
    # the activations' size (large on Gemma), so the bound scales with them
    size = float(concepts.baseline.abs().max())
    if concepts.meta.data_hash != controls.meta.data_hash or not torch.allclose(
        concepts.baseline, controls.baseline, rtol=1e-4, atol=1e-4 * size
    ):
        raise ValueError(
            "the control-word vectors were made against other baseline words than the concepts; "
            "extract both with the same baseline (extract_concepts(model, words=control_words))"
        )


def _digest(vectors: ConceptVectors) -> str:
    payload = vectors.vectors.float().contiguous().numpy().tobytes()
    return hashlib.sha256(payload + repr(vectors.words).encode()).hexdigest()[:16]


def run_intent(
    model: Model,
    concepts: ConceptVectors,
    controls: ConceptVectors,
    store: RunStore | str | Path,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    n_pairs: int = 50,
    templates: Mapping[str, str] = TEMPLATES,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Capture every prompt not yet in `store` in one batched capture and store its cosines;
    returns one record per prompt (condition × pair), in order.

    `pairs` are (sentence, word) with the word in `concepts` (default: `make_pairs`).
    """
    _check_sets(model, concepts, controls)
    chosen = make_pairs(concepts.words, n=n_pairs, seed=seed) if pairs is None else list(pairs)
    prompts = intent_prompts(chosen, templates)
    for prompt in prompts:
        concepts.index(prompt.word)
    runs = store if isinstance(store, RunStore) else RunStore(store)
    examples = [p.example(templates) for p in prompts]
    encoded = encode_all(model, examples)
    layers = list(concepts.layers)
    identity = {
        "experiment": "intent",
        "fingerprint": model.fingerprint(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "site": concepts.meta.site,
        "layers": layers,
        "reduction": REDUCTION,
        "controls": _digest(controls),
    }
    configs = []
    for prompt, example, row in zip(prompts, examples, encoded, strict=True):
        directions, _ = concepts.direction(prompt.word)
        configs.append(
            {
                **identity,
                "condition": prompt.condition,
                "pair": prompt.pair,
                "sentence": prompt.sentence,
                "concept": prompt.word,
                "vector": directions.digest_at(layers),
                "prompt": {
                    "prompt": list(example.prompt),
                    "response": example.response,
                    "tokens": row.digest()[:20],
                },
            }
        )
    todo = runs.todo(configs)
    if todo:
        acts = capture(
            model,
            [examples[i] for i in todo],
            {"sentence": REDUCTION},
            layers=layers,
            sites=concepts.meta.site,
            batch_size=batch_size,
            progress=progress,
        )["sentence"]
        targets = torch.stack([concepts.vectors[concepts.index(prompts[i].word)] for i in todo])
        own = cosines(acts, targets)
        others = control_cosines(acts, controls.vectors)
        for j, i in enumerate(todo):
            runs.append(
                configs[i],
                {
                    "model": model.name,
                    "cos": [round(v, 7) for v in own[j].tolist()],
                    "control_cos": [[round(v, 7) for v in row] for row in others[j].tolist()],
                    "control_words": list(controls.words),
                },
            )
    keys = [unit_key(c) for c in configs]
    found = {r["key"]: r for r in runs.records() if r.get("key") in set(keys)}
    return [found[k] for k in keys]


def summarize_intent(
    records: Sequence[Mapping[str, Any]], *, spread: float = SPREAD
) -> pd.DataFrame:
    """One row per block: for each condition c, `c` (mean cosine with the word over prompts),
    `c_low`/`c_high` (bootstrap 95% CI) and `c_n`; `gap` = first − second condition, paired
    by (sentence, word) pair, with its CI; the control-word baseline `baseline` (mean over
    prompts and control words), `baseline_sd` (spread over control words of their mean over
    prompts) and `baseline_low`/`baseline_high` (the central `spread` share of those means).
    Records of two runs (another seed, pair set, template, control set …) are refused
    (`experiment_records`)."""
    chosen = experiment_records(records, "intent", ("condition", "pair"))
    if not 0 < spread < 1:
        raise ValueError(f"spread must be a share in (0, 1), e.g. 0.95; got {spread}")
    layer_sets = {tuple(r["config"]["layers"]) for r in chosen}
    if len(layer_sets) != 1:
        raise ValueError(
            f"the records cover different blocks ({sorted(layer_sets)}); summarize one run"
        )
    (layers,) = layer_sets
    conditions = list(dict.fromkeys(str(r["config"]["condition"]) for r in chosen))
    cos: dict[str, dict[int, np.ndarray]] = {c: {} for c in conditions}  # pair -> [layer]
    for r in chosen:
        cos[str(r["config"]["condition"])][r["config"]["pair"]] = np.asarray(r["cos"])
    controls = np.asarray([r["control_cos"] for r in chosen])  # prompt, layer, word
    per_word = controls.mean(axis=0)  # layer, word
    tail = (1 - spread) / 2 * 100
    rows = []
    for li, layer in enumerate(layers):
        row: dict[str, Any] = {"layer": layer}
        for c in conditions:
            put(row, c, [float(v[li]) for v in cos[c].values()])
            row[f"{c}_n"] = len(cos[c])
        if len(conditions) >= 2:
            first, second = cos[conditions[0]], cos[conditions[1]]
            shared = sorted(set(first) & set(second))
            put(row, "gap", [float(first[p][li] - second[p][li]) for p in shared])
        words = per_word[li]
        row["baseline"] = float(words.mean())
        row["baseline_sd"] = float(words.std(ddof=1)) if words.size > 1 else float("nan")
        low, high = np.percentile(words, [tail, 100 - tail])
        row["baseline_low"], row["baseline_high"] = float(low), float(high)
        rows.append(row)
    return pd.DataFrame(rows)
