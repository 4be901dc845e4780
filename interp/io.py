"""Files: safetensors with JSON metadata, atomic writes, and paths kept inside a chosen root.

Tensors are only ever stored as safetensors (no pickle, so loading a file cannot run code).
Metadata travels in the safetensors header under the key "interp" as one JSON object. A file
that is not a readable safetensors file (truncated, random bytes, a pickle) or whose metadata is
not one JSON object gives a ValueError naming the file. `output_file` / `output_dir` check an
output path before any work, so a file where a directory is expected (or the reverse) is one
clear error instead of a traceback at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

META_KEY = "interp"


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write tensors and metadata to `path` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(meta, sort_keys=True, default=str)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(contiguous, tmp, metadata=header)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _unreadable(path: str | Path, err: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable safetensors file ({err}); it is truncated, damaged or in "
        "another format (interp never loads pickles): give a file written by interp"
    )


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read only the metadata of a safetensors file written by `save_tensors`."""
    try:
        with safe_open(str(existing_file(path)), framework="pt") as handle:
            header = handle.metadata() or {}
    except SafetensorError as err:
        raise _unreadable(path, err) from None
    if META_KEY not in header:
        raise ValueError(
            f"{path} is a safetensors file without interp metadata; it was not written by interp"
        )
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: the interp metadata in the header is not valid JSON ({err.msg}); the file "
            "was edited or damaged: re-create it"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{path}: the interp metadata is a JSON {type(meta).__name__}, not an object; "
            "the file was edited or damaged: re-create it"
        )
    return meta


def load_tensors(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors and metadata from a file written by `save_tensors`."""
    meta = read_meta(path)
    tensors = {}
    try:
        with safe_open(str(existing_file(path)), framework="pt", device=str(device)) as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                tensors[key] = handle.get_tensor(key)
    except SafetensorError as err:
        raise _unreadable(path, err) from None
    return tensors, meta


def existing_file(path: str | Path) -> Path:
    """`path` if it is an existing file, else a clear error."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of `path` that is a file (so nothing can be made below it)."""
    for parent in path.parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def output_file(path: str | Path, what: str = "output") -> Path:
    """Check that a file can be written at `path` (not a directory, no file in its way)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is an existing directory; give a file path")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ValueError(
            f"{what} {path} cannot be written: {blocker} is a file, not a directory; "
            "choose another path"
        )
    return path


def output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Check that `path` is, or can be made, a directory (not an existing file)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is an existing file; give a directory path")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ValueError(
            f"{what} {path} cannot be made: {blocker} is a file, not a directory; "
            "choose another path"
        )
    return path


def inside(root: str | Path, *parts: str) -> Path:
    """Join `parts` under `root`, refusing any result that escapes `root` (e.g. via '..')."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise ValueError(
            f"path {Path(*parts)} would leave the output directory {base}; "
            "use a plain relative name"
        )
    return target


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; errors name the file and line. Blank lines are skipped."""
    rows = []
    with existing_file(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                    f"{err.start + 1}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not valid JSON ({err.msg}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}:{number}: expected a JSON object, got {type(row).__name__}"
                )
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} has no rows; the input is empty")
    return rows


def data_path(name: str) -> Path:
    """Path of a data file shipped in `interp/data`."""
    path = Path(__file__).parent / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"no shipped data file {name!r} in {path.parent}")
    return path
