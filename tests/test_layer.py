"""``LocalRelation2d``: parameter count, the prior, implementation switching, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrbench import LocalRelation2d, set_implementation
from lrbench.layer import offset_grid, parameter_count
from tests.impls import INTERPRETED, runnable_on_cpu


@pytest.mark.parametrize("prior", ["mlp", "direct", "none"])
@pytest.mark.parametrize(("C", "k", "m"), [(64, 7, 8), (100, 7, 8), (10, 3, 4), (5, 1, 1)])
def test_parameter_count_matches_the_formula(C, k, m, prior):
    layer = LocalRelation2d(C, kernel_size=k, m=m, prior=prior)
    G = math.ceil(C / m)
    expected = 2 * C * G + C * C + {"mlp": G * G + 4 * G, "direct": G * k * k, "none": 0}[prior]
    assert sum(p.numel() for p in layer.parameters()) == expected == parameter_count(C, k, m, prior)


def test_offset_grid_is_fixed_and_not_learned():
    layer = LocalRelation2d(16, kernel_size=5, m=4)
    grid = layer.prior.grid
    assert grid.shape == (2, 5, 5)
    torch.testing.assert_close(grid[0, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(grid[1, 0, :], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.equal(grid, LocalRelation2d(16, kernel_size=5, m=4).prior.grid)
    assert all(p is not grid for p in layer.parameters())
    assert torch.equal(offset_grid(1), torch.zeros(2, 1, 1))


@pytest.mark.parametrize("prior", ["mlp", "direct", "none"])
@pytest.mark.parametrize("stride", [1, 2])
def test_switching_implementation_keeps_outputs_and_state_dict(prior, stride):
    torch.manual_seed(0)
    model = nn.Sequential(LocalRelation2d(20, kernel_size=5, stride=stride, m=8, prior=prior),
                          nn.ReLU(), LocalRelation2d(20, kernel_size=3, m=4, prior=prior))
    x = torch.randn(2, 20, 9, 8)
    keys = set(model.state_dict())
    outputs = {}
    for name in [i for i in runnable_on_cpu(include_reference=True) if i not in INTERPRETED]:
        assert set_implementation(model, name) == 2
        assert set(model.state_dict()) == keys
        outputs[name] = model(x)
    expected = outputs.pop("reference")
    assert expected.shape == (2, 20, (9 - 1) // stride + 1, (8 - 1) // stride + 1)
    for name, y in outputs.items():
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5, msg=name)


def test_state_dict_loads_across_implementations():
    a = LocalRelation2d(12, kernel_size=3, m=4, impl="unfold")
    b = LocalRelation2d(12, kernel_size=3, m=4, impl="im2col_matmul")
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 12, 6, 6)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_layer_backward_reaches_every_parameter():
    layer = LocalRelation2d(12, kernel_size=3, m=4, impl="unfold")
    layer(torch.randn(2, 12, 5, 5)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"channels": 0}, "channels"),
        ({"channels": 8, "kernel_size": 2}, "kernel_size"),
        ({"channels": 8, "stride": 0}, "stride"),
        ({"channels": 8, "m": 0}, "m"),
        ({"channels": 8, "phi": "dot"}, "phi"),
        ({"channels": 8, "prior": "learned"}, "prior"),
        ({"channels": 8, "impl": "nope"}, "impl"),
    ],
)
def test_bad_layer_arguments(kwargs, word):
    with pytest.raises((ValueError, TypeError)) as info:
        LocalRelation2d(**kwargs)
    assert word in str(info.value)


def test_set_implementation_rejects_unknown_names():
    with pytest.raises(ValueError, match="impl must be one of"):
        set_implementation(LocalRelation2d(8, 3, m=2), "nope")
