"""Data screening by projection difference ΔP (Persona Vectors §6, papers.md §1.9).

For a training sample (prompt x_i, response y_i), the model's own response y'_i to the same
prompt is generated (greedy by default, resumable), and

    ΔP_i = (a_ℓ(x_i, y_i) − a_ℓ(x_i, y'_i)) · v̂_ℓ

where a_ℓ is the response-token mean of resid_post at block ℓ and v̂ the unit persona vector.
A dataset's ΔP is the mean over its samples. Samples are ranked by ΔP (most trait-shifting
first); a sample-level ΔP that separates a trait-eliciting dataset from a normal one is measured
by AUROC with a stratified bootstrap interval (`interp.eval.stats.auroc`).

A sample is `{"prompt": str | chat, "response": str}` (an `"id"` is kept if present); a chat
prompt is used as is, a string prompt becomes one user message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from interp.batching import Example
from interp.capture import RESPONSE_MEAN, capture
from interp.eval.stats import Estimate, auroc
from interp.io import inside, output_dir
from interp.models import Model
from interp.runs.sweeps import Cell, sweep_records
from interp.vectors import DirectionSet


def _chat(prompt: Any, index: int) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        return prompt
    raise ValueError(
        f"sample {index}: prompt must be a string or a chat (list of messages), got "
        f"{type(prompt).__name__}"
    )


def _check(samples: Sequence[dict[str, Any]], name: str) -> None:
    if not samples:
        raise ValueError(f"dataset {name!r} is empty; give at least one prompt/response sample")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict) or "prompt" not in sample or "response" not in sample:
            raise ValueError(
                f"dataset {name!r} sample {i} needs 'prompt' and 'response' fields, got "
                f"{sorted(sample) if isinstance(sample, dict) else type(sample).__name__}"
            )
        if not isinstance(sample["response"], str) or not sample["response"].strip():
            raise ValueError(f"dataset {name!r} sample {i} has an empty response")


def projection_difference(
    model: Model,
    samples: Sequence[dict[str, Any]],
    vectors: DirectionSet,
    layer: int,
    out: str | Path,
    *,
    name: str = "data",
    max_new_tokens: int = 96,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool | None = None,
) -> pd.DataFrame:
    """ΔP per sample (and both projections); the model's own responses go in a run store."""
    _check(samples, name)
    root = output_dir(out, "screening output directory")
    layer = model.layer(layer)
    chats = [_chat(s["prompt"], i) for i, s in enumerate(samples)]
    cells = [Cell(chat, (), {"kind": "persona-screen-own"}) for chat in chats]
    own = sweep_records(
        model,
        cells,
        inside(root, "own_responses.jsonl"),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    examples = [Example(c, s["response"]) for c, s in zip(chats, samples, strict=True)]
    examples += [Example(c, r["text"]) for c, r in zip(chats, own, strict=True)]
    acts = capture(
        model,
        examples,
        {"mean": RESPONSE_MEAN},
        layers=[layer],
        sites=vectors.meta.site,
        batch_size=batch_size,
        progress=progress,
    )
    v = vectors.at([layer]).vectors[0].float()
    unit = v / v.norm()
    proj = (acts["mean"][:, 0].float() @ unit).tolist()
    n = len(samples)
    rows = []
    for i, sample in enumerate(samples):
        rows.append(
            {
                "dataset": name,
                "id": sample.get("id", str(i)),
                "projection_train": proj[i],
                "projection_own": proj[n + i],
                "delta_p": proj[i] - proj[n + i],
                "own_response": own[i]["text"],
                "own_empty": not own[i]["text"].strip(),
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_json(
        inside(root, f"delta_p_{name}.jsonl"), orient="records", lines=True, force_ascii=False
    )
    return frame


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples by ΔP, largest (most trait-shifting) first."""
    return frame.sort_values("delta_p", ascending=False).reset_index(drop=True)


def separation(eliciting: pd.DataFrame, normal: pd.DataFrame, seed: int = 0) -> Estimate:
    """AUROC of sample-level ΔP: trait-eliciting samples (positive) vs normal ones."""
    scores = [*eliciting["delta_p"].tolist(), *normal["delta_p"].tolist()]
    labels = [1] * len(eliciting) + [0] * len(normal)
    return auroc(labels, scores, seed=seed)
