"""``torch.autograd.gradcheck`` on small float64 cases for every implementation that runs here."""

from __future__ import annotations

import pytest
import torch

from lrbench import local_relation
from lrbench.inputs import Shape, make_inputs
from tests.impls import INTERPRETED, runnable_on_cpu, supports

CASES = [
    Shape(B=1, C=4, H=4, W=5, k=3, m=2, stride=1),
    Shape(B=2, C=5, H=5, W=4, k=3, m=2, stride=2),
    Shape(B=1, C=3, H=2, W=3, k=5, m=3, stride=1),
    Shape(B=1, C=2, H=3, W=3, k=1, m=1, stride=3),
]


@pytest.mark.parametrize("phi", ["sqdiff", "absdiff", "mult"])
@pytest.mark.parametrize("shape", CASES, ids=Shape.label)
@pytest.mark.parametrize("impl", [i for i in runnable_on_cpu(include_reference=True)
                                  if i not in INTERPRETED])
def test_gradcheck(impl, shape, phi):
    if not supports(impl, torch.float64):
        pytest.skip(f"{impl} does not support float64")
    t = make_inputs(shape, dtype=torch.float64, seed=7, requires_grad=True)

    def f(x, query, key, prior):
        return local_relation(x, query, key, prior, kernel_size=shape.k, stride=shape.stride,
                              phi=phi, impl=impl)

    assert torch.autograd.gradcheck(f, t.args(),
                                    eps=1e-6, atol=1e-5)
