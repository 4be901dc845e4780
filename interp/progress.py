"""Progress bars for long runs: shown on a terminal by default, silent in logs and tests."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


def bar(total: int, desc: str, unit: str, progress: bool | None, initial: int = 0) -> Any:
    """A tqdm bar; `progress=None` shows it only when stderr is a terminal."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=None if progress is None else not progress,
    )
