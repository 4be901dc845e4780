"""SAEs that ship with the package, trained by `experiments/train_saes.py` (see its metrics)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "data" / "saes"
