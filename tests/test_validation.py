"""Every bad input listed in SPEC section 1 raises a clear error that names the argument."""

from __future__ import annotations

import pytest
import torch

from lrbench import local_relation
from lrbench.inputs import Shape, make_inputs

SHAPE = Shape(B=2, C=8, H=6, W=5, k=3, m=2, stride=1)


def _inputs(**changes):
    return make_inputs(SHAPE, dtype=torch.float32).replace(**changes)


def _call(t, **kwargs):
    kwargs = {"kernel_size": 3, "stride": 1, **kwargs}
    return local_relation(*t, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"kernel_size": 4}, ValueError, ["kernel_size", "odd"]),
        ({"kernel_size": 0}, ValueError, ["kernel_size", ">= 1"]),
        ({"kernel_size": -3}, ValueError, ["kernel_size"]),
        ({"kernel_size": 3.0}, TypeError, ["kernel_size", "int"]),
        ({"stride": 0}, ValueError, ["stride", ">= 1"]),
        ({"stride": 1.5}, TypeError, ["stride", "int"]),
        ({"phi": "cosine"}, ValueError, ["phi", "sqdiff"]),
        ({"impl": "cuda_magic"}, ValueError, ["impl", "unfold", "reference"]),
    ],
    ids=["even-k", "zero-k", "negative-k", "float-k", "stride-0", "float-stride", "phi", "impl"],
)
def test_bad_scalar_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        _call(_inputs(), **kwargs)
    for word in words:
        assert word in str(info.value)


def _bad_tensor_cases():
    t = make_inputs(SHAPE, dtype=torch.float32)
    return {
        "batch-mismatch": ({"key": t.key[:1]}, ValueError, ["key", "(B, G, H, W)"]),
        "spatial-mismatch-key": ({"key": t.key[..., :4, :]}, ValueError, ["key"]),
        "spatial-mismatch-query": ({"query": t.query[..., :3]}, ValueError, ["query", "Ho"]),
        "prior-shape": ({"prior": t.prior[:, :2, :2]}, ValueError, ["prior", "(G, k, k)"]),
        "dtype-mismatch": ({"key": t.key.double()}, ValueError, ["key", "dtype"]),
        "device-mismatch": ({"prior": t.prior.to("meta")}, ValueError, ["prior", "meta"]),
        "integer-dtype": ({"x": t.x.long()}, TypeError, ["x", "floating"]),
        "not-a-tensor": ({"query": t.query.tolist()}, TypeError, ["query", "Tensor"]),
        "x-3d": ({"x": t.x[0]}, ValueError, ["x", "4-D"]),
        "G-greater-than-C": (
            {"key": torch.zeros(2, 9, 6, 5), "query": torch.zeros(2, 9, 6, 5),
             "prior": torch.zeros(9, 3, 3)}, ValueError, ["G=9", "[1, C=8]"]),
        "blocks-do-not-cover-G": (  # C=8, G=7: m=ceil(8/7)=2 gives 4 blocks, not 7
            {"key": torch.zeros(2, 7, 6, 5), "query": torch.zeros(2, 7, 6, 5),
             "prior": torch.zeros(7, 3, 3)}, ValueError, ["G=7", "blocks"]),
    }


@pytest.mark.parametrize("case", list(_bad_tensor_cases()))
def test_bad_tensors(case):
    changes, error, words = _bad_tensor_cases()[case]
    with pytest.raises(error) as info:
        _call(_inputs(**changes))
    for word in words:
        assert word in str(info.value)


def test_implementation_that_cannot_run_names_the_ones_that_can():
    from lrbench import registry

    unfold = registry.get("unfold")
    only64 = type(unfold)(**{**unfold.__dict__, "name": "only_float64", "dtypes": (torch.float64,)})
    with registry.registered(only64), pytest.raises(ValueError) as info:
        _call(_inputs(), impl="only_float64")
    message = str(info.value)
    assert "only_float64" in message and "float32 not supported" in message
    assert "Implementations that can" in message and "'unfold'" in message


def test_inputs_record_in_the_ops_order():
    t = make_inputs(SHAPE, seed=3)
    x, query, key, prior = t
    assert [n for n, _ in t.items()] == ["x", "query", "key", "prior"]
    assert t.args() == (t.x, t.query, t.key, t.prior) and x is t.x and prior is t.prior
    assert t.shape == SHAPE and x.shape == (2, 8, 6, 5) and query.shape == (2, 4, 6, 5)
    assert key.shape == (2, 4, 6, 5) and prior.shape == (4, 3, 3)
    moved = t.map(lambda v: v.to("meta"))
    assert all(v.device.type == "meta" for v in moved) and moved.shape == SHAPE
    ones = t.replace(x=torch.ones_like(x))
    assert torch.equal(ones.x, torch.ones_like(x)) and ones.key is t.key
