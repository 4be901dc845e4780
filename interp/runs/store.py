"""The run store: append-only JSON lines, one per finished unit of work, keyed by its config.

A unit is whatever a long run produces one of (a generation, a scored row, a judge call). Its
key is a hash of the JSON of its config, which holds everything that produced it, so a run
started again with the same arguments finds what is already done and computes only the rest.
Numbers are keyed by value (`canonical`): 4 and 4.0 are one unit, -0.0 is 0.

Concurrency (several processes may read and write one store):

- Writers take an exclusive lock on `<store>.lock` (`filelock`, an OS lock the kernel drops
  when a process dies) around every append. Under the lock a writer cuts a partial last line
  left by a killed writer, reads the keys others appended since its last look, skips a unit
  already recorded, then appends the line and fsyncs. So two writers never duplicate a unit,
  and `kill -9` at any moment loses at most the unit being written.
- Readers (`records`, `load_frame`) take no lock and never modify the file: a last line without
  its newline is read when it is a whole record; otherwise it is a unit still being written (or
  cut short by a kill), skipped with a warning that says so.

The file stays plain JSONL: one `{"key", "config", ...result}` object per line, greppable.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock


def unit_key(config: Mapping[str, Any]) -> str:
    """Stable short hash of a unit's config (key order does not matter).

    Numbers are keyed by their value, not their spelling: 4, 4.0 and numpy's 4 are one key,
    and -0.0 is 0 (see `canonical`), so a coefficient list written [0, 2] or [0.0, 2.0]
    finds the same units. Bools stay bools (True is not 1) and strings stay strings.
    """
    payload = json.dumps(canonical(config), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def canonical(value: Any) -> Any:
    """`value` with every number in its one keyed form: an integral value as an int (exact
    below 2**53), -0.0 as 0, other reals as float; dicts, lists and tuples recursively."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:
            return int(number)  # also turns -0.0 into 0
        return number
    if isinstance(value, Mapping):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def _parse(
    path: Path, data: bytes, first_line: int, *, warn: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Records of the complete lines in `data`, and how many bytes they span.

    A last line without its newline is a whole record when it parses as one (a file written
    by another tool, or a writer killed between the record and its newline): it is read and
    its bytes counted. Otherwise it is a unit still being written, or cut short by a kill, and
    is skipped; with `warn` (the user-facing readers) a warning says so.
    """
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    tail = data[end:]
    tail_record = _tail_record(tail)
    if tail_record is not None:
        end = len(data)
    out = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        record = _record(path, number, line)
        out.append(record)
    if tail_record is not None:
        out.append(tail_record)
    elif tail.strip() and warn:
        warnings.warn(
            f"{path}:{first_line + len(lines)}: skipped an unfinished last line "
            f"({len(tail)} bytes, no newline, not a whole JSON record): a unit still being "
            "written or cut short by a kill; the next writer removes it",
            stacklevel=3,
        )
    return out, end


def _record(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(
            f"{path}:{number} is not a JSON record; the results file was edited or is not "
            "an interp run store (move it away or fix that line)"
        ) from None
    if not isinstance(record, dict) or "key" not in record:
        raise ValueError(
            f"{path}:{number} is not a run-store record (no 'key'); the file is not an "
            "interp run store"
        )
    return record


def _tail_record(tail: bytes) -> dict[str, Any] | None:
    """The record on a last line that lacks its newline, if it is a whole one."""
    if not tail.strip():
        return None
    try:
        record = json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "key" in record else None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All finished records of the store at `path`, without locking or modifying it."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"results path {path} is a directory; give the .jsonl file inside it")
    records, _ = _parse(path, path.read_bytes(), 1, warn=True)
    return records


class RunStore:
    """Append-only JSONL file of `{"key", "config", ...result}` records (see module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ValueError(
                f"results path {self.path} is a directory; give a file path for the run store"
            )
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._done: set[str] = set()
        self._offset = 0  # bytes of the file already read into `_done`
        self._lines = 0  # complete lines read so far (for error messages)
        self._refresh()

    def _refresh(self) -> None:
        """Read keys appended since the last look (by this or another process)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        records, used = _parse(self.path, data, self._lines + 1)
        self._done.update(record["key"] for record in records)
        self._offset += used
        self._lines += data[:used].count(b"\n")

    def _repair(self) -> None:
        """Cut a partial last line left by a killed writer, or end a whole record that lacks
        its newline with one (call with the lock held)."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with self.path.open("rb+") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            # Only the tail can be partial: search back from the end for the last newline.
            pos, cut = size, 0
            while pos > 0:
                step = min(1 << 16, pos)
                pos -= step
                handle.seek(pos)
                found = handle.read(step).rfind(b"\n")
                if found >= 0:
                    cut = pos + found + 1
                    break
            handle.seek(cut)
            if _tail_record(handle.read()) is not None:
                handle.seek(size)
                handle.write(b"\n")  # a whole record lacking its newline: keep it, end it
            else:
                handle.truncate(cut)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[dict[str, Any]]:
        """All finished records (read-only; see `read_records`)."""
        return read_records(self.path)

    def done(self, key: str) -> bool:
        """Whether the unit with `key` is recorded (by any process, as of now)."""
        self._refresh()
        return key in self._done

    def todo(self, configs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Indices of the configs not yet finished, in order; a repeated config counts once."""
        self._refresh()
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
        if "key" in result or "config" in result:
            raise ValueError(
                f"result fields {sorted({'key', 'config'} & set(result))} are reserved by the "
                "run store; rename them"
            )
        line = json.dumps({"key": key, "config": config, **result}, ensure_ascii=False, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_path):
            if self.path.exists():
                self._repair()
                if self.path.stat().st_size < self._offset:  # the file was replaced
                    self._done, self._offset, self._lines = set(), 0, 0
                self._refresh()
            if key in self._done:  # another process recorded it meanwhile
                return key
            with self.path.open("ab") as handle:
                handle.write((line + "\n").encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            self._refresh()
        return key

    def frame(self) -> pd.DataFrame:
        """The records as a DataFrame (see `load_frame`)."""
        return load_frame(self.path)


def load_frame(path: str | Path) -> pd.DataFrame:
    """Load a run store as a DataFrame; config fields become `config.<name>` columns."""
    store_path = Path(path)
    if not store_path.exists():
        raise FileNotFoundError(f"no results file at {store_path}")
    return pd.json_normalize(read_records(store_path), sep=".")
