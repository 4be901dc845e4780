"""Peak memory of a capture over 100 vs 1,000 examples (goal: less than 10% growth).

Each size runs in a fresh process that loads the model, warms it with one forward pass (the
safetensors weights are memory-mapped and only become resident when first read), and captures
the persona-vectors trio (response mean, prompt mean, last prompt token) of resid_post at all
30 blocks, the heaviest common workload. Peak resident memory (ru_maxrss) is read at the end.

The returned tensors necessarily grow with the data (3 × n × 30 × 576 float32); we report them
separately. What the capture itself holds (peak − warm model − result) is the working memory,
which is bounded by the batch and should not grow with n.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from benchmarks.common import record

WORKLOADS = {
    "trio_30_layers": {"response": "response:mean", "prompt": "prompt:mean", "last": "last_prompt"},
    "response_mean_30_layers": {"response": "response:mean"},
}


def examples(n: int) -> list[dict[str, object]]:
    topics = ["rivers", "bridges", "volcanoes", "owls", "compilers", "bread", "chess", "tides"]
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": f"Tell me one fact about {topics[i % 8]} (question {i}).",
                },
                {
                    "role": "assistant",
                    "content": f"Here is fact number {i} about {topics[i % 8]}: "
                    "it is more interesting than most people expect, and worth a closer look.",
                },
            ]
        }
        for i in range(n)
    ]


def child(workload: str, n: int) -> None:
    import torch

    import interp

    model = interp.load_model("smollm2-135m-instruct", device="cpu")
    reduce = WORKLOADS[workload]
    interp.capture(model, examples(16), reduce, layers="all", batch_size=16, progress=False)  # warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    acts = interp.capture(model, examples(n), reduce, layers="all", batch_size=16, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result_mb = sum(t.numel() * t.element_size() for t in acts.data.values()) / 2**20
    print(
        json.dumps(
            {
                "n": n,
                "peak_mb": peak / 1024,
                "warm_model_mb": before / 1024,
                "result_mb": result_mb,
                "threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    report = {}
    for workload in WORKLOADS:
        runs = {}
        for n in (100, 1000):
            command = [sys.executable, "-m", "benchmarks.capture_memory", workload, str(n)]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            r = runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
            r["working_mb"] = r["peak_mb"] - r["warm_model_mb"] - r["result_mb"]
            print(
                f"{workload} n={n:5d}: peak RSS {r['peak_mb']:.0f} MB = warm model "
                f"{r['warm_model_mb']:.0f} + result {r['result_mb']:.1f} "
                f"+ working {r['working_mb']:.1f}"
            )
        small, large = runs[100], runs[1000]
        growth = large["peak_mb"] / small["peak_mb"] - 1
        minus_result = (large["peak_mb"] - large["result_mb"]) / (
            small["peak_mb"] - small["result_mb"]
        ) - 1
        print(
            f"{workload}: peak growth 100 -> 1000 {growth:+.1%}; excluding the returned tensors "
            f"{minus_result:+.1%}; working memory "
            f"{small['working_mb']:.0f} -> {large['working_mb']:.0f} MB"
        )
        report[workload] = {
            "reductions": WORKLOADS[workload],
            "runs": runs,
            "peak_growth": growth,
            "peak_growth_excluding_result": minus_result,
        }
    record("capture_memory", {"workloads": report})


if __name__ == "__main__":
    if len(sys.argv) > 2:
        child(sys.argv[1], int(sys.argv[2]))
    else:
        main()
