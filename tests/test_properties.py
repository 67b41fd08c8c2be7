"""Property tests of the op (hypothesis): constants, translation, and borders."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lrbench import local_relation
from lrbench.inputs import Inputs, Shape, make_inputs
from tests.impls import INTERPRETED, runnable_on_cpu, supports

IMPLS = [i for i in runnable_on_cpu(include_reference=True, needs_backward=False)
         if i not in INTERPRETED]
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


@st.composite
def shapes(draw, min_size=1):
    k = draw(st.sampled_from([1, 3, 5, 7]))
    m = draw(st.integers(1, 4))
    C = draw(st.integers(1, 3)) * m - draw(st.integers(0, m - 1))
    return Shape(B=draw(st.integers(1, 2)), C=max(C, 1), H=draw(st.integers(min_size, 9)),
                 W=draw(st.integers(min_size, 9)), k=k, m=m, stride=draw(st.integers(1, 3)))


def _dtype(impl):
    return torch.float64 if supports(impl, torch.float64) else torch.float32


def _op(t, shape, impl, phi="sqdiff"):
    return local_relation(*t, kernel_size=shape.k,
                          stride=shape.stride, phi=phi, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
@SETTINGS
@given(shape=shapes(), phi=st.sampled_from(["sqdiff", "absdiff", "mult"]),
       value=st.floats(-5, 5), seed=st.integers(0, 1000))
def test_constant_input_gives_the_same_constant(impl, shape, phi, value, seed):
    t = make_inputs(shape, dtype=_dtype(impl), seed=seed)
    t = t.replace(x=torch.full_like(t.x, value))
    y = _op(t, shape, impl, phi)
    torch.testing.assert_close(y, torch.full_like(y, value), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@SETTINGS
@given(shape=shapes(min_size=5), ty=st.integers(0, 2), tx=st.integers(0, 2), seed=st.integers(0, 1000))
def test_interior_outputs_are_translation_equivariant(impl, shape, ty, tx, seed):
    """Shifting the input by whole strides shifts the interior outputs and changes nothing else."""
    s, r = shape.stride, (shape.k - 1) // 2
    big = Shape(B=shape.B, C=shape.C, H=shape.H + ty * s, W=shape.W + tx * s, k=shape.k,
                m=shape.m, stride=s)
    t = make_inputs(big, dtype=_dtype(impl), seed=seed)

    def crop(oy, ox):  # the (H, W) window of the big image at input offset (oy*s, ox*s)
        H, W, Ho, Wo = shape.H, shape.W, shape.Ho, shape.Wo
        return Inputs(
            x=t.x[..., oy * s : oy * s + H, ox * s : ox * s + W],
            query=t.query[..., oy : oy + Ho, ox : ox + Wo],
            key=t.key[..., oy * s : oy * s + H, ox * s : ox * s + W],
            prior=t.prior,
            shape=shape,
        )

    y0, y1 = _op(crop(0, 0), shape, impl), _op(crop(ty, tx), shape, impl)
    # Output pixel (i, j) of y1 sits where (i+ty, j+tx) of y0 does; compare where both windows
    # are entirely inside their images.
    interior = [(i, j) for i in range(shape.Ho) for j in range(shape.Wo)
                if r <= i * s and (i + ty) * s + r <= shape.H - 1 and i * s + r <= shape.H - 1
                and r <= j * s and (j + tx) * s + r <= shape.W - 1 and j * s + r <= shape.W - 1]
    assume(interior)
    for i, j in interior:
        torch.testing.assert_close(y1[..., i, j], y0[..., i + ty, j + tx], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@SETTINGS
@given(shape=shapes(min_size=2), seed=st.integers(0, 1000), noise=st.floats(-100, 100))
def test_border_output_ignores_values_outside_the_image(impl, shape, seed, noise):
    """The top-left output depends only on its in-image neighbours: everything beyond them (which
    a zero-padded implementation would mix in) can be cropped away or changed without effect."""
    r = (shape.k - 1) // 2
    t = make_inputs(shape, dtype=_dtype(impl), seed=seed)
    y = _op(t, shape, impl)
    h, w = min(shape.H, r + 1), min(shape.W, r + 1)  # the corner's in-image neighbourhood
    changed = t.map(torch.clone)
    for tensor in (changed.x, changed.key):
        tensor[..., h:, :] = noise
        tensor[..., :, w:] = noise
    changed.query[..., 1:, :] = noise
    changed.query[..., :, 1:] = noise
    torch.testing.assert_close(_op(changed, shape, impl)[..., 0, 0], y[..., 0, 0],
                               atol=1e-6, rtol=1e-6)
    small = Shape(B=shape.B, C=shape.C, H=h, W=w, k=shape.k, m=shape.m, stride=shape.stride)
    cropped = Inputs(x=t.x[..., :h, :w], query=t.query[..., :small.Ho, :small.Wo],
                     key=t.key[..., :h, :w], prior=t.prior, shape=small)
    torch.testing.assert_close(_op(cropped, small, impl)[..., 0, 0], y[..., 0, 0],
                               atol=1e-6, rtol=1e-6)
