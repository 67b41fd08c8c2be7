"""The part of a large case that the float64 reference checks: corners, edges, interior, all channels.

At shapes too large for the float64 reference (its autograd keeps ``k*k`` float64 copies of the
values), the implementation still runs the whole case; the reference runs on crops of it. The
op is local: output pixel ``(i, j)`` reads input rows ``i*s - r .. i*s + r`` (``r = (k-1)/2``) and
the same columns. So:

- Output rows are taken in three spans: the first ``band`` rows (their windows cross the top
  border), ``band`` rows around ``Ho // 2`` (interior), the last ``band`` rows (bottom border);
  ``band = ceil(r / s) + 1`` is every row whose window is clipped plus one that is not.
  Overlapping spans merge. Columns alike. Their products are the windows: 4 corners, 4 edges and
  the interior when the image is large enough, fewer, merged ones when it is not.
- Every window keeps all ``C`` channels (so every channel block of ``m`` channels and its weight
  map) and the first and last image of the batch.
- The implementation's incoming gradient is zero outside the windows, so each gradient is a sum
  over the windows' output pixels only; the reference runs on each window's crop (the window's
  input rows and columns with their ``r``-pixel halo, clipped at the image, and the crop starting
  on a multiple of the stride) and its gradients are added into full-size tensors. The whole
  output gradient tensors are compared (zero where nothing flows), the output only in the windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lrbench.inputs import Inputs, Shape
from lrbench.spec import output_size


@dataclass(frozen=True)
class Window:
    """Output rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of the case."""

    rows: tuple[int, int]
    cols: tuple[int, int]


def spans(size: int, band: int) -> list[tuple[int, int]]:
    """Start, middle and end spans of ``band`` indices out of ``range(size)``, overlaps merged."""
    middle = max(0, size // 2 - band // 2)
    wanted = sorted({i for lo in (0, middle, size - band) for i in range(max(0, lo), min(size, lo + band))})
    runs: list[tuple[int, int]] = []
    for i in wanted:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def band(shape: Shape) -> int:
    """Output rows per span: those whose window is clipped by a border, and one more."""
    r = (shape.k - 1) // 2
    return -(-r // shape.stride) + 1


def windows(shape: Shape) -> list[Window]:
    """The windows of ``shape`` the reference checks (corners, edges, interior)."""
    b = band(shape)
    return [Window(rows, cols) for rows in spans(shape.Ho, b) for cols in spans(shape.Wo, b)]


def batch_items(shape: Shape) -> list[int]:
    """The images of the batch the reference checks: the first and the last."""
    return sorted({0, shape.B - 1}) if shape.B else []


def covered_pixels(shape: Shape) -> int:
    """Output pixels of one image inside the windows."""
    return sum((w.rows[1] - w.rows[0]) * (w.cols[1] - w.cols[0]) for w in windows(shape))


def grad_mask(shape: Shape) -> torch.Tensor:
    """``(B, 1, Ho, Wo)`` float64: 1 at the checked images' window pixels, 0 elsewhere."""
    mask = torch.zeros(shape.B, 1, shape.Ho, shape.Wo, dtype=torch.float64)
    for window in windows(shape):
        for b in batch_items(shape):
            mask[b, :, slice(*window.rows), slice(*window.cols)] = 1
    return mask


def _input_span(out: tuple[int, int], size: int, k: int, s: int) -> tuple[int, int]:
    """Input indices a crop needs for outputs ``out``: the halo, clipped, started on the stride."""
    r = (k - 1) // 2
    start = max(0, out[0] * s - r) // s * s
    return start, min(size, (out[1] - 1) * s + r + 1)


@dataclass(frozen=True)
class Crop:
    """One window's inputs and where its results go in the full case."""

    inputs: Inputs  # float64, batch items of :func:`batch_items`, the window with its halo
    rows: tuple[int, int]  # input rows of the full case it holds
    cols: tuple[int, int]
    out_rows: tuple[int, int]  # output rows of the full case its output holds
    out_cols: tuple[int, int]
    window: Window


def crop(inputs: Inputs, window: Window) -> Crop:
    """The inputs the reference needs for ``window`` (all channels, the batch items checked)."""
    shape, s, k = inputs.shape, inputs.shape.stride, inputs.shape.k
    rows = _input_span(window.rows, shape.H, k, s)
    cols = _input_span(window.cols, shape.W, k, s)
    sub = Shape(B=len(batch_items(shape)), C=shape.C, H=rows[1] - rows[0], W=cols[1] - cols[0],
                k=k, m=shape.m, stride=s)
    out_rows = (rows[0] // s, rows[0] // s + output_size(sub.H, s))
    out_cols = (cols[0] // s, cols[0] // s + output_size(sub.W, s))
    b = batch_items(shape)
    part = Inputs(x=inputs.x[b, :, slice(*rows), slice(*cols)],
                  query=inputs.query[b, :, slice(*out_rows), slice(*out_cols)],
                  key=inputs.key[b, :, slice(*rows), slice(*cols)],
                  prior=inputs.prior, shape=sub)
    return Crop(part, rows, cols, out_rows, out_cols, window)
