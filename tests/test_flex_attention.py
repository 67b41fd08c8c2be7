"""The FlexAttention peer against the float64 reference, and its limits as registry reasons.

On CPU this torch runs FlexAttention forward only (eager: PyTorch's unfused fallback; compiled:
the fused CPU kernel, float32/float16/bfloat16); gradients are compared on CUDA (``gpu`` marker).
"""

from __future__ import annotations

import zlib

import pytest
import torch

from lrbench import local_relation, registry
from lrbench.check import check_against_reference
from lrbench.inputs import Shape, make_inputs

PHIS = ("sqdiff", "absdiff", "mult")
SHAPES = [
    *(Shape(B=2, C=10, H=9, W=8, k=k, m=4, stride=s) for k in (1, 3, 7) for s in (1, 2)),  # C % m = 2
    Shape(B=1, C=100, H=7, W=6, k=7, m=8, stride=2),  # LR-Net's C=100, m=8: a last block of 4
    Shape(B=2, C=6, H=3, W=2, k=7, m=2, stride=1),  # image smaller than the window
    Shape(B=1, C=5, H=4, W=5, k=7, m=3, stride=2),
]

pytestmark = pytest.mark.skipif(registry.get("flex_attention").unavailable_reason() is not None,
                                reason="this torch has no FlexAttention")


def _seed(shape, phi):
    return zlib.crc32(f"{shape.label()}{phi}".encode()) % 10_000


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", SHAPES, ids=Shape.label)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_matches_the_float64_reference_on_cpu(shape, phi, dtype):
    result = check_against_reference("flex_attention", shape, dtype=dtype, phi=phi,
                                     seed=_seed(shape, phi))
    assert result.ok, result.failures
    assert set(result.max_abs_err) == {"y"}  # no backward on CPU: only the output is compared
    assert "no backward on CPU" in result.unchecked and torch.__version__ in result.unchecked


def test_a_wrong_window_would_be_caught():
    """The float64 gate can fail: the same kernel with the prior's offsets transposed."""
    from lrbench.impls import flex_attention as flex

    def transposed(x, query, key, prior, kernel_size, stride, phi):
        return flex.local_relation_flex(x, query, key, prior.transpose(1, 2), kernel_size, stride, phi)

    impl = registry.get("flex_attention")
    wrong = type(impl)(**{**impl.__dict__, "name": "flex_transposed_prior", "fn": transposed})
    with registry.registered(wrong):
        result = check_against_reference("flex_transposed_prior", SHAPES[2], dtype=torch.float64)
    assert not result.ok


def test_backward_on_cpu_is_a_reason_not_a_crash():
    shape = SHAPES[2]
    spec = shape.spec(dtype=torch.float32)
    impl = registry.get("flex_attention")
    assert impl.why_not(spec) == []
    assert impl.why_not(spec, backward=True) == [
        f"FlexAttention has no backward on CPU in torch {torch.__version__} (inference only)"]
    assert "flex_attention" not in registry.usable(spec, backward=True)
    t = make_inputs(shape, dtype=torch.float32, requires_grad=True)
    with pytest.raises(ValueError, match="with gradients.*no backward on CPU"):
        local_relation(*t, kernel_size=shape.k,
                       impl="flex_attention")


def test_float64_cannot_be_compiled_on_cpu():
    impl = registry.get("flex_attention")
    assert impl.why_not(SHAPES[0].spec(dtype=torch.float32), compiled=True) == []
    (reason,) = impl.why_not(SHAPES[0].spec(dtype=torch.float64), compiled=True)
    assert "float64" in reason and torch.__version__ in reason


def test_head_dims_padded_only_where_the_backend_needs_it():
    from lrbench.impls.flex_attention import head_dims

    assert head_dims("cpu", 8) == (2, 8)
    assert head_dims("cuda", 8) == (16, 16)
    assert head_dims("cuda", 20) == (16, 32)


def test_compiled_forward_matches_the_reference():
    """The fused CPU kernel (what ``--compile inductor`` times), float32, one shape: one compile."""
    shape = Shape(B=1, C=10, H=6, W=5, k=3, m=4, stride=2)
    t = make_inputs(shape, dtype=torch.float64, seed=3)
    fn = torch.compile(registry.get("flex_attention").fn)
    args = [v.float() for v in t]
    with torch.no_grad():
        got = fn(*args, shape.k, shape.stride, "sqdiff")
        expected = local_relation(*t, kernel_size=shape.k,
                                  stride=shape.stride, impl="reference")
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", SHAPES[:6], ids=Shape.label)
def test_outputs_and_gradients_on_cuda(shape, phi):
    result = check_against_reference("flex_attention", shape, dtype=torch.float32, device="cuda",
                                     phi=phi, seed=_seed(shape, phi))
    assert result.ok, result.failures
    assert set(result.max_abs_err) == {"y", "x", "query", "key", "prior"}
