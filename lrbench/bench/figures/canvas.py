"""Figures as ``matplotlib.figure.Figure`` objects, never through pyplot: drawing leaves the user's
backend and pyplot's figure list alone (a notebook keeps its inline backend). Saved as PNG through
:func:`lrbench.files.atomic_write`, with the caption line at the bottom."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from lrbench.files import atomic_write

DPI = 110
CAPTION_INCHES = 0.16  # room kept under the axes for each line of the caption
CHARS_PER_INCH = 17  # of the caption's 6.5 pt type: where it wraps


def new(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height))


def png(fig: Figure, caption: str = "") -> bytes:
    """The figure as PNG bytes, with ``caption`` in small type along its bottom edge."""
    if caption:
        lines = textwrap.wrap(caption, width=int(fig.get_figwidth() * CHARS_PER_INCH))
        fig.text(0.005, 0.008, "\n".join(lines), fontsize=6.5, color="#444444", ha="left",
                 va="bottom")
        fig.tight_layout(rect=(0, CAPTION_INCHES * len(lines) / fig.get_figheight(), 1, 1))
    else:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save(fig: Figure, path: str | Path, caption: str = "") -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically; returns the path."""
    return atomic_write(path, png(fig, caption))
