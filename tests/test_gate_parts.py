"""Never its own oracle: at large shapes the float64 reference checks corners, edges, interior and
every channel block of the case (lrbench/accuracy/parts.py) while the implementation runs it all."""

from __future__ import annotations

import pytest
import torch

from lrbench import Implementation, registry
from lrbench.accuracy import parts
from lrbench.check import check_against_reference
from lrbench.inputs import Shape
from lrbench.op import local_relation

SHAPES = [Shape(2, 16, 14, 14, k=7, m=8), Shape(3, 10, 13, 17, k=5, m=4, stride=2),
          Shape(1, 6, 20, 9, k=3, m=2, stride=3), Shape(2, 8, 5, 5, k=7, m=4)]


@pytest.mark.parametrize("shape", SHAPES, ids=Shape.label)
def test_a_correct_implementation_passes_the_part_check_with_gradients_summed_over_windows(shape):
    result = check_against_reference("unfold", shape, dtype=torch.float64, part=True)
    assert result.ok, result.failures
    assert set(result.over_limit) == {"y", "x", "query", "key", "prior"}
    assert "corners, edges, interior" in result.oracle


def test_windows_cover_corners_edges_interior_and_the_clipped_rows():
    shape = Shape(1, 4, 40, 30, k=7, m=2, stride=2)  # Ho 20, Wo 15, band ceil(3/2) + 1 = 3
    rows = parts.spans(shape.Ho, parts.band(shape))
    assert rows == [(0, 3), (9, 12), (17, 20)]
    assert len(parts.windows(shape)) == 9
    assert parts.spans(5, 3) == [(0, 5)]  # overlapping spans merge


def _wrong_at(b: int, c: int, i: int, j: int) -> Implementation:
    def fn(x, query, key, prior, kernel_size, stride, phi):
        y = local_relation(x, query, key, prior, kernel_size=kernel_size, stride=stride, phi=phi,
                           impl="reference")
        bump = torch.zeros_like(y)
        bump[b, c, i, j] = 0.01
        return y + bump

    return Implementation(name="wrong_at_one_pixel", fn=fn, summary="one output off",
                          devices=("cpu",), dtypes=(torch.float32,))


@pytest.mark.parametrize("where", ["corner", "edge", "interior"])
def test_a_bug_in_one_pixel_of_the_last_channel_block_is_caught(where):
    shape = SHAPES[0]  # Ho = Wo = 14: spans (0, 4), (5, 9), (10, 14)
    i, j = {"corner": (13, 0), "edge": (0, 7), "interior": (7, 7)}[where]
    with registry.registered(_wrong_at(shape.B - 1, shape.C - 1, i, j)):
        result = check_against_reference("wrong_at_one_pixel", shape, part=True)
    assert [f.split(":")[0] for f in result.failures] == ["y"]
