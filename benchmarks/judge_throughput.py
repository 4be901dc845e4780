"""Judge throughput: items judged per second, and the scores must not change with batching.

Local part (goal: batched ≥ 6× the items/s of a batch-1 loop, with identical scores): the
local judge on the default embedded model (SmolLM2, `method="auto"`, which is digits-exact
since SmolLM2 splits numbers into digits) scores the same items once in batches of 16 and once
item by item (`score([item])` in a loop, batch_size 1), interleaved, medians of 3. The
coherence rubric; `min_mass=0` so that every item gets an expected value to
compare (SmolLM2 puts little probability on numbers: the mass is recorded too).

The API part (the API judge at concurrency 1 and 4 against a local llama.cpp server) plugs in
as a second entry of `PARTS`; each part's results are merged into the same JSON file, so the
parts can be run apart: `python -m benchmarks.judge_throughput [local] [local-0-9] [api]`
(`local-0-9`: the same with the one-token logprob-0-9 method, which has no number trie).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

import interp
from benchmarks.common import RESULTS, interleaved, record
from interp.eval.judges.base import JudgeItem, Score
from interp.eval.judges.local import LocalJudge
from interp.eval.judges.rubrics import builtin

NAME = "judge_throughput"
QUESTIONS = [
    "What is the capital of France?",
    "Give me one tip for sleeping better.",
    "How many legs does a spider have?",
    "Write a haiku about rain.",
    "What does a compiler do?",
    "Is it safe to look at the sun?",
    "Suggest a name for a grey cat.",
    "Explain photosynthesis briefly.",
    "Why is the sky blue?",
    "How do I boil an egg?",
    "What is 12 times 12?",
    "Name a famous painting.",
]
ANSWERS = [
    "Here is a short, clear answer to your question, with one useful detail added at the end.",
    "Well, it depends, and the the answer is is maybe, because of the sky and also cats, I think.",
    "banana window seventeen blue blue blue the the of of of",
    "I'm sorry, but I can't help with that request.",
]


def items() -> list[JudgeItem]:
    """40 items: questions with a good, a confused, a broken and a refusing answer."""
    return [JudgeItem(q, a) for q in QUESTIONS[:10] for a in ANSWERS]


def _max_diffs(a: list[Score], b: list[Score]) -> dict[str, float]:
    value = max(
        abs(x.value - y.value)
        for x, y in zip(a, b, strict=True)
        if x.value is not None and y.value is not None
    )
    mass = max(
        abs(x.mass - y.mass) / max(y.mass, 1e-30)
        for x, y in zip(a, b, strict=True)
        if x.mass is not None and y.mass is not None
    )
    same_none = all((x.value is None) == (y.value is None) for x, y in zip(a, b, strict=True))
    return {"max_abs_score_diff": value, "max_rel_mass_diff": mass, "same_no_score": same_none}


def local_part(method: str = "auto", batch_size: int = 16, repeats: int = 3) -> dict[str, Any]:
    model = interp.load_model(device="cpu")
    data = items()
    rubric = builtin("coherence")
    batched = LocalJudge(model, method=method, batch_size=batch_size, min_mass=0.0)  # type: ignore[arg-type]
    single = LocalJudge(model, method=method, batch_size=1, min_mass=0.0)  # type: ignore[arg-type]
    out: dict[str, list[Score]] = {}

    def run_batched() -> None:
        out["batched"] = batched.score(data, rubric)

    def run_single() -> None:
        out["single"] = [single.score([item], rubric)[0] for item in data]

    batched.score(data[:2], rubric)  # warm up on two items (a full warm-up round costs minutes)
    single.score(data[:1], rubric)
    times = interleaved({"batched": run_batched, "batch1_loop": run_single}, repeats, warmup=0)
    diffs = _max_diffs(out["batched"], out["single"])
    masses = [s.mass for s in out["batched"] if s.mass is not None]
    result = {
        "model": model.name,
        "method": batched.method,
        "rubric": rubric.name,
        "items": len(data),
        "batch_size": batch_size,
        "repeats": repeats,
        "batched_s": times["batched"],
        "batch1_loop_s": times["batch1_loop"],
        "batched_items_per_s": len(data) / times["batched"],
        "batch1_items_per_s": len(data) / times["batch1_loop"],
        "ratio": times["batch1_loop"] / times["batched"],
        **diffs,
        "number_mass_median": statistics.median(masses),
        "items_at_or_over_0.25_mass": sum(m >= 0.25 for m in masses),
    }
    print(
        f"local judge ({result['method']}, {len(data)} items): batched "
        f"{result['batched_items_per_s']:.2f} items/s, batch-1 loop "
        f"{result['batch1_items_per_s']:.2f} items/s, ratio {result['ratio']:.2f} "
        f"(goal 6); max |score diff| {diffs['max_abs_score_diff']:.2e}, "
        f"max rel mass diff {diffs['max_rel_mass_diff']:.2e}"
    )
    return result


def api_part() -> dict[str, Any]:
    from benchmarks.judge_api_throughput import api_part as run_api  # needs llama-cpp-python

    return run_api(items(), builtin("coherence"))


PARTS: dict[str, Callable[[], dict[str, Any]]] = {
    "local": local_part,
    "local-0-9": lambda: local_part("logprob-0-9"),
    "api": api_part,
}


def main(argv: list[str]) -> None:
    chosen = argv or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    path = RESULTS / f"{NAME}.json"
    previous = json.loads(path.read_text()).get("parts", {}) if path.exists() else {}
    parts = {**previous, **{name: PARTS[name]() for name in chosen}}
    record(NAME, {"parts": parts})


if __name__ == "__main__":
    main(sys.argv[1:])
