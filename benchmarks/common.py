"""Shared helpers for benchmark scripts: timing, machine facts, plain-HF baselines, records.

Every script measures interp against a baseline *in the same process and run*, interleaving
repetitions so that machine noise hits both alike, and reports medians and their ratio.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall time (s) of each function, run in alternation after `warmup` rounds."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def plain_hf(source: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """An independent, un-bridged HF model (default attention) loaded from the same directory."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    return model.to(device).eval()


def record(name: str, payload: dict[str, Any]) -> Path:
    """Write results to benchmarks/results/<name>.json (with machine facts and the command)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"machine": machine(), "command": f"python -m benchmarks.{name}", **payload}
    path.write_text(json.dumps(body, indent=2) + "\n")
    print(f"-> {path}")
    return path
