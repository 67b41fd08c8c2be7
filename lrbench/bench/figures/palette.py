"""One colour per implementation and one marker per pass, in every figure the suite draws.

Built-in names (the registry's implementations, their compiled variants, the peers, the 3x3
convolution, the networks' rows) have fixed colours. Any other name, a plugin's say, gets a colour
from :data:`RESERVE` chosen by a CRC-32 of the name: the same in every figure, every run and every
process (Python's ``hash`` of a string changes between processes), and never one of the built-in
colours. Two plugins can share a reserve colour (1 in ``len(RESERVE)``); their labels tell them apart.
"""

from __future__ import annotations

import zlib

# Matplotlib's tab10/tab20 colours, each name its own; a compiled variant gets the lighter shade of
# its eager implementation.
BUILTIN: dict[str, str] = {
    "reference": "#7f7f7f",
    "reference@inductor": "#c7c7c7",
    "unfold": "#1f77b4",
    "unfold@inductor": "#aec7e8",
    "im2col_matmul": "#ff7f0e",
    "im2col_matmul@inductor": "#ffbb78",
    "fused_cpu": "#2ca02c",
    "fused_triton": "#d62728",
    "fused_triton_det": "#ff9896",
    "flex_attention": "#9467bd",
    "flex_attention@inductor": "#c5b0d5",
    "natten": "#8c564b",
    "conv3x3": "#222222",  # ResNet-50's 3x3 convolution, the layer's yardstick
    "resnet50": "#222222",  # the network built from it
    "floor": "#bcbd22",  # LR-Net-50 with the op replaced by a free stand-in
}
# For names not in BUILTIN: none of these is a built-in colour (checked by the tests).
RESERVE = ("#17becf", "#e377c2", "#005f73", "#ae2012", "#ee9b00", "#6a4c93", "#3a86ff",
           "#588157", "#bc6c25", "#003049", "#ff006e", "#8ac926")
# One marker per pass; a pass not listed gets "x".
MARKERS: dict[str, str] = {"fwd": "o", "bwd": "s", "fwd_bwd": "^", "train": "D"}
LINESTYLES: dict[str, str] = {"fwd": "-", "bwd": ":", "fwd_bwd": "--", "train": "-."}


def colour(name: str) -> str:
    """The colour of an implementation (or peer, or network row) called ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty implementation name, got {name!r}")
    if name in BUILTIN:
        return BUILTIN[name]
    return RESERVE[zlib.crc32(name.encode()) % len(RESERVE)]


def marker(pass_: str) -> str:
    """The marker of a pass (``fwd`` a circle, ``fwd_bwd`` a triangle, ...)."""
    return MARKERS.get(pass_, "x")


def linestyle(pass_: str) -> str:
    return LINESTYLES.get(pass_, "-")
