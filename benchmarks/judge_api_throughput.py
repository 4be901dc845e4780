"""The API part of `benchmarks.judge_throughput`: the API judge at concurrency 1 and 4.

Run it with `python -m benchmarks.judge_throughput api` (needs llama-cpp-python, the dev
extra). The server is llama-cpp-python's `llama_cpp.server` on 127.0.0.1 serving the embedded
SmolLM2 GGUF (Q4_1) with 2 threads (tests/llamacpp.py starts and stops it). The judge scores
the benchmark's items with its rubric by the logprob method, one request per item with
`max_tokens=1` (logprob-0-9: the probe finds that SmolLM2 splits numbers; it runs before the
timing). Concurrency 1 and 4 alternate, medians of `repeats` after one warm-up round, and the
scores must not depend on concurrency.

llama-cpp-python's server runs one request at a time (a lock around the model), so
concurrency only overlaps the HTTP round trips with the model's work; a server that batches
requests (vLLM, SGLang, llama.cpp's own `llama-server --parallel N`) gains more.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import interleaved
from interp.embedded import EMBEDDED
from interp.eval.judges.api import ApiJudge
from interp.eval.judges.base import JudgeItem, Score
from interp.eval.judges.rubrics import Rubric
from tests.llamacpp import MODEL_ALIAS, llama_server

CONCURRENCY = (1, 4)


def api_part(items: Sequence[JudgeItem], rubric: Rubric, repeats: int = 3) -> dict[str, Any]:
    """Items per second of the API judge against a local llama.cpp server, concurrency 1 and 4."""
    for name in ("INTERP_JUDGE_API_KEY", "OPENAI_API_KEY"):  # the test server takes no key
        os.environ.pop(name, None)
    data = list(items)
    out: dict[int, list[Score]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        gguf = EMBEDDED["smollm2-135m-instruct"].gguf_path(Path(scratch))
        with llama_server(gguf, n_threads=2) as url:
            judges = {
                c: ApiJudge(MODEL_ALIAS, base_url=url, concurrency=c, min_mass=0.0)
                for c in CONCURRENCY
            }

            def runner(c: int) -> Callable[[], None]:
                def run() -> None:
                    out[c] = judges[c].score(data, rubric)

                return run

            times = interleaved({f"c{c}": runner(c) for c in CONCURRENCY}, repeats, warmup=1)
            method = judges[1].identity(rubric).method
    rates = {c: len(data) / times[f"c{c}"] for c in CONCURRENCY}
    same = [s.value for s in out[1]] == [s.value for s in out[4]]
    result = {
        "server": "llama-cpp-python llama_cpp.server (one request at a time), SmolLM2 Q4_1, "
        "2 threads, 127.0.0.1",
        "method": method,
        "rubric": rubric.name,
        "items": len(data),
        "repeats": repeats,
        **{f"concurrency_{c}_s": times[f"c{c}"] for c in CONCURRENCY},
        **{f"concurrency_{c}_items_per_s": rates[c] for c in CONCURRENCY},
        "ratio_c4_over_c1": rates[4] / rates[1],
        "scores_identical_across_concurrency": same,
    }
    print(
        f"api judge ({method}, {len(data)} items, llama.cpp server): concurrency 1 "
        f"{rates[1]:.2f} items/s, concurrency 4 {rates[4]:.2f} items/s, ratio "
        f"{rates[4] / rates[1]:.2f}; scores identical across concurrency: {same}"
    )
    return result
