"""Figures: the house style and export (`style`), and the core data path's figures (`plots`).

Each research module draws its own figures with this style, always from saved results.
"""

from interp.figures.style import PALETTE, chromium_path, save_figure, style

__all__ = ["PALETTE", "chromium_path", "save_figure", "style"]
