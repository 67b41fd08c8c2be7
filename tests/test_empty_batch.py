"""A batch of 0: an empty output of the right shape and zero gradients, for every implementation.

torch's own layers accept an empty batch (a data loader's last batch can be empty after
filtering); ``local_relation`` handles it once, at its entry, so no kernel sees B = 0.
"""

from __future__ import annotations

import pytest
import torch

from lrbench import LocalRelation2d, Shape, local_relation, make_inputs
from tests.impls import runnable_on_cpu

SHAPES = [Shape(B=0, C=8, H=6, W=5, k=3, m=4, stride=1), Shape(B=0, C=5, H=7, W=7, k=5, m=2, stride=2)]


@pytest.mark.parametrize("shape", SHAPES, ids=Shape.label)
@pytest.mark.parametrize("impl", [*runnable_on_cpu(include_reference=True), None])
def test_empty_batch_forward_and_backward(impl, shape):
    t = make_inputs(shape, dtype=torch.float32, requires_grad=True)
    x, query, key, prior = t
    y = local_relation(x, query, key, prior, kernel_size=shape.k, stride=shape.stride, impl=impl)
    assert y.shape == (0, shape.C, shape.Ho, shape.Wo) and y.dtype == x.dtype
    y.sum().backward()
    for tensor in (x, query, key, prior):
        assert tensor.grad is not None and tensor.grad.shape == tensor.shape
    assert torch.equal(prior.grad, torch.zeros_like(prior))  # a sum over no samples


def test_empty_batch_still_checks_the_implementation_name():
    t = make_inputs(SHAPES[0])
    with pytest.raises(ValueError, match="nonexistent"):
        local_relation(*t, kernel_size=3, impl="nonexistent")


@pytest.mark.parametrize("stride", [1, 2])
def test_layer_with_an_empty_batch(stride):
    layer = LocalRelation2d(16, kernel_size=3, stride=stride, m=4)
    x = torch.randn(0, 16, 9, 8, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 16, (9 - 1) // stride + 1, (8 - 1) // stride + 1)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())
