"""Every implementation against the float64 reference: outputs and the gradients of all four inputs.

Parametrized over the registry; cases cover SPEC section 1's edge cases (borders, strides,
images smaller than the kernel, C not divisible by m, G=1 and G=C, B=1, layouts, every phi).
"""

from __future__ import annotations

import zlib

import pytest
import torch

from lrbench.check import check_against_reference
from lrbench.inputs import Shape
from tests.impls import INTERPRETED, runnable_on_cpu, supports

PHIS = ("sqdiff", "absdiff", "mult")
IMPLS = runnable_on_cpu(needs_backward=False)  # the check compares gradients where they exist

# k in {1, 3, 5, 7, 9} x stride in {1, 2, 3} on an odd, non-square image.
SWEEP = [Shape(B=2, C=12, H=11, W=9, k=k, m=4, stride=s) for k in (1, 3, 5, 7, 9) for s in (1, 2, 3)]

EDGES = {
    "image-smaller-than-kernel": Shape(B=2, C=8, H=3, W=2, k=7, m=4, stride=1),
    "image-smaller-than-kernel-s2": Shape(B=1, C=6, H=4, W=5, k=9, m=2, stride=2),
    "C100-m8": Shape(B=2, C=100, H=6, W=7, k=3, m=8, stride=1),
    "C100-m8-s2": Shape(B=1, C=100, H=7, W=6, k=5, m=8, stride=2),
    "G1": Shape(B=2, C=10, H=5, W=6, k=3, m=10, stride=1),
    "G-equals-C": Shape(B=2, C=7, H=6, W=5, k=5, m=1, stride=2),
    "B1": Shape(B=1, C=16, H=8, W=8, k=7, m=8, stride=1),
    "non-square-tall": Shape(B=2, C=9, H=13, W=4, k=5, m=3, stride=3),
    "one-pixel": Shape(B=2, C=4, H=1, W=1, k=3, m=2, stride=1),
}

# Light cases for implementations under Triton's (slow) CPU interpreter, whose time goes with the
# programs (B x maps x pixel tiles) times k * k: a batch of 2 once; C % m != 0 (a last block of 4
# channels) in 3 maps, stride 2; an image smaller than the kernel in one batch.
LIGHT = [
    Shape(B=2, C=12, H=7, W=6, k=3, m=4, stride=1),
    Shape(B=1, C=20, H=5, W=6, k=5, m=8, stride=2),
    Shape(B=1, C=6, H=3, W=2, k=7, m=2, stride=1),
    Shape(B=1, C=4, H=4, W=5, k=1, m=2, stride=1),
]


def _assert_matches(impl, shape, dtype, phi, layout="contiguous"):
    if not supports(impl, dtype):
        pytest.skip(f"{impl} does not support {dtype}")
    result = check_against_reference(impl, shape, dtype=dtype, phi=phi, layout=layout,
                                     seed=zlib.crc32(f"{shape.label()}{phi}".encode()) % 10_000)
    assert result.ok, f"{impl} {shape.label()} {phi} {dtype}: {result.failures}"


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", SWEEP, ids=Shape.label)
@pytest.mark.parametrize("impl", [i for i in IMPLS if i not in INTERPRETED])
def test_kernel_stride_sweep_float64(impl, shape, phi):
    _assert_matches(impl, shape, torch.float64, phi)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", list(EDGES.values()), ids=list(EDGES))
@pytest.mark.parametrize("impl", [i for i in IMPLS if i not in INTERPRETED])
def test_edge_cases_float64(impl, shape, phi):
    _assert_matches(impl, shape, torch.float64, phi)


@pytest.mark.parametrize("layout", ["channels_last", "noncontiguous"])
@pytest.mark.parametrize("impl", IMPLS)
def test_layouts(impl, layout):
    shape = Shape(B=2, C=12, H=6, W=5, k=3, m=4, stride=2)
    dtype = torch.float64 if supports(impl, torch.float64) else torch.float32
    _assert_matches(impl, shape, dtype, "sqdiff", layout)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", SWEEP[::4] + list(EDGES.values())[:4], ids=Shape.label)
@pytest.mark.parametrize("impl", [i for i in IMPLS if i not in INTERPRETED])
def test_float32_within_tolerance(impl, shape, phi):
    _assert_matches(impl, shape, torch.float32, phi)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", LIGHT, ids=Shape.label)
@pytest.mark.parametrize("impl", IMPLS)
def test_light_cases_float32(impl, shape, phi):
    _assert_matches(impl, shape, torch.float32, phi)


def test_check_catches_a_wrong_result():
    """The gate itself can fail: a perturbed implementation is reported, with the tensor named."""
    from lrbench import registry

    unfold = registry.get("unfold")
    wrong = type(unfold)(**{**unfold.__dict__, "name": "wrong_for_test",
                            "fn": lambda *a: unfold.fn(*a) * 1.001})
    with registry.registered(wrong):
        result = check_against_reference("wrong_for_test", Shape(1, 4, 5, 5, k=3, m=2),
                                         dtype=torch.float64)
    assert not result.ok
    assert any(f.startswith("y:") for f in result.failures)
