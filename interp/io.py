"""Files: safetensors with JSON metadata, atomic writes, and paths kept inside a chosen root.

Tensors are only ever stored as safetensors (no pickle, so loading a file cannot run code).
Metadata travels in the safetensors header under the key "interp" as one JSON object.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
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


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read only the metadata of a safetensors file written by `save_tensors`."""
    with safe_open(str(_existing(path)), framework="pt") as handle:
        header = handle.metadata() or {}
    if META_KEY not in header:
        raise ValueError(
            f"{path} is a safetensors file without interp metadata; it was not written by interp"
        )
    meta: dict[str, Any] = json.loads(header[META_KEY])
    return meta


def load_tensors(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors and metadata from a file written by `save_tensors`."""
    meta = read_meta(path)
    tensors = {}
    with safe_open(str(_existing(path)), framework="pt", device=str(device)) as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a Mapping)
            tensors[key] = handle.get_tensor(key)
    return tensors, meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
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
    with _existing(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
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
