"""Figures in one house style, built from saved results and exported to HTML and static files.

Every figure function takes a path to saved results (never in-memory state), so a paper figure
can be redrawn without re-running a model. `save_figure` always writes HTML; PNG/SVG/PDF need a
Chromium for kaleido (Debian: `apt-get install chromium`, or set BROWSER_PATH to a Chrome
binary) and are skipped with a one-line hint when none is found.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from interp.io import inside

# Okabe–Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
FONT = "Inter, Helvetica Neue, Helvetica, Arial, sans-serif"
STATIC_FORMATS = ("png", "svg", "pdf")


def style(
    fig: go.Figure, title: str, x_title: str, y_title: str, subtitle: str | None = None
) -> go.Figure:
    """Apply the house style: white background, readable fonts, palette, labelled axes."""
    heading: dict[str, object] = {"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 20}}
    if subtitle:
        heading["subtitle"] = {"text": subtitle, "font": {"size": 14, "color": "#555"}}
    fig.update_layout(
        template="simple_white",
        title=heading,
        font={"family": FONT, "size": 15, "color": "#222"},
        colorway=PALETTE,
        legend={"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"},
        margin={"l": 80, "r": 30, "t": 100, "b": 130},
        width=900,
        height=600,
    )
    axis = {"showgrid": True, "gridcolor": "#eee", "ticks": "outside", "title_font": {"size": 15}}
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, **axis)
    return fig


def chromium_path() -> str | None:
    """The browser kaleido will use, or None when static export is unavailable."""
    given = os.environ.get("BROWSER_PATH")
    if given and Path(given).exists():
        return given
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def save_figure(
    fig: go.Figure, out_dir: str | Path, name: str, formats: Sequence[str] = ("html", "png")
) -> list[Path]:
    """Write `fig` as `out_dir/name.<format>`; returns the files written."""
    unknown = set(formats) - {"html", *STATIC_FORMATS}
    if unknown:
        raise ValueError(f"unknown figure formats {sorted(unknown)}; use html, png, svg or pdf")
    written = []
    if "html" in formats:
        html = inside(out_dir, f"{name}.html")
        html.parent.mkdir(parents=True, exist_ok=True)
        # One shared plotly.min.js beside the pages keeps each page small and viewable offline.
        script = html.parent / "plotly.min.js"
        if not script.exists():
            script.write_text(get_plotlyjs(), encoding="utf-8")
        fig.write_html(html, include_plotlyjs="directory")
        written.append(html)
    static = [inside(out_dir, f"{name}.{fmt}") for fmt in formats if fmt in STATIC_FORMATS]
    if not static:
        return written
    browser = chromium_path()
    if browser is None:
        print(
            f"[interp] wrote {name}.html only: static export (PNG/SVG/PDF) needs a Chromium. "
            "Install one (Debian/Ubuntu: sudo apt-get install chromium) or set BROWSER_PATH.",
            file=sys.stderr,
        )
        return written
    os.environ.setdefault("BROWSER_PATH", browser)
    # the layout's own size (kaleido otherwise renders every figure at its 700 × 500 default)
    size = {"width": fig.layout.width or 900, "height": fig.layout.height or 600}
    pio.write_images(fig=[fig] * len(static), file=static, scale=2, **size)
    return written + static
