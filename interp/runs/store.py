"""The run store: append-only JSON lines, one per finished unit of work, keyed by its config.

A unit is whatever a long run produces one of (a generation, a scored row, a judge call). Its
key is a hash of the JSON of its config, so a run started again with the same arguments finds
what is already done and computes only the rest. Lines are flushed and fsync'ed as they are
written; a process killed mid-write leaves at most one partial last line, which the next open
drops (it was never a finished unit). Nothing finished is lost and nothing is written twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def unit_key(config: Mapping[str, Any]) -> str:
    """Stable short hash of a unit's config (key order does not matter)."""
    payload = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class RunStore:
    """Append-only JSONL file of `{"key", "config", ...result}` records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._done = {record["key"] for record in self.records()}

    def _repair(self) -> None:
        """Drop a partial last line left by a killed writer."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1  # 0 when the only line is partial
            handle.truncate(cut)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise ValueError(
                            f"{self.path}:{number} is not a JSON record; the results file "
                            "was edited or is not an interp run store"
                        ) from None
        return out

    def done(self, key: str) -> bool:
        return key in self._done

    def todo(self, configs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Indices of the configs not yet finished, in order; a repeated config counts once."""
        seen: set[str] = set()
        out = []
        for i, config in enumerate(configs):
            key = unit_key(config)
            if key not in self._done and key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def append(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> str:
        """Record one finished unit durably; a unit already recorded is not written again."""
        key = unit_key(config)
        if key in self._done:
            return key
        line = json.dumps({"key": key, "config": config, **result}, ensure_ascii=False, default=str)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._done.add(key)
        return key

    def frame(self) -> pd.DataFrame:
        return load_frame(self.path)


def load_frame(path: str | Path) -> pd.DataFrame:
    """Load a run store as a DataFrame; config fields become `config.<name>` columns."""
    store_path = Path(path)
    if not store_path.exists():
        raise FileNotFoundError(f"no results file at {store_path}")
    records = RunStore(store_path).records()
    return pd.json_normalize(records, sep=".")
