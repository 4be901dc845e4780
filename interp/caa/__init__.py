"""Contrastive activation addition (Rimsky et al. 2024) as a recipe over the core data path.

`recipe` holds the data loading, vector extraction and A/B sweep; `figures` draws its curves.
"""

from interp.caa.recipe import (
    BEHAVIOURS,
    ABItem,
    ab_sweep,
    contrast_examples,
    load_behaviour,
    split,
    vector,
)

__all__ = [
    "BEHAVIOURS",
    "ABItem",
    "ab_sweep",
    "contrast_examples",
    "load_behaviour",
    "split",
    "vector",
]
