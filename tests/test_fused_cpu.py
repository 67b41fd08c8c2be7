"""Tests specific to ``fused_cpu``: the C++ kernels as a torch.library custom operator.

The registry-wide suites (test_correctness, test_gradcheck) already compare fused_cpu with the
float64 reference on the edge-case list; here: the custom-op machinery (opcheck, fake/meta
shapes, torch.compile, FLOP formulas), the kernels' own tiling (row bands, parity phases of the
backward, thread counts) and the memory claim (nothing of size k*k*H*W in the forward).
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from lrbench.impls import fused_cpu
from torch.utils.flop_counter import FlopCounterMode

from lrbench import buildcache, local_relation, registry
from lrbench.complexity import op_macs
from lrbench.inputs import Shape, make_inputs

REASON = registry.get("fused_cpu").unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"fused_cpu unavailable: {REASON}")

PHIS = ("sqdiff", "absdiff", "mult")

# Small float64 cases for gradcheck: borders everywhere, strides 1-3, k = 1, k larger than the
# image, C not divisible by m, and enough rows for several forward bands (8 rows) and several
# backward bands of each parity (ceil(2r / s) rows when B*G is small).
GRAD_CASES = [
    Shape(B=1, C=5, H=6, W=7, k=3, m=2, stride=1),
    Shape(B=2, C=4, H=7, W=5, k=5, m=2, stride=2),
    Shape(B=1, C=3, H=8, W=6, k=3, m=3, stride=3),
    Shape(B=1, C=4, H=4, W=3, k=1, m=2, stride=1),
    Shape(B=1, C=3, H=3, W=4, k=7, m=2, stride=1),
    Shape(B=1, C=2, H=19, W=4, k=3, m=1, stride=1),
    Shape(B=1, C=2, H=23, W=3, k=5, m=2, stride=2),
]


def _args(t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return t["x"], t["query"], t["key"], t["prior"]


def _op(shape: Shape, phi: str, impl: str = "fused_cpu"):
    def f(x, query, key, prior):
        return local_relation(x, query, key, prior, kernel_size=shape.k, stride=shape.stride,
                              phi=phi, impl=impl)

    return f


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", GRAD_CASES, ids=Shape.label)
def test_gradcheck_float64(shape, phi):
    t = make_inputs(shape, dtype=torch.float64, seed=11, requires_grad=True)
    assert torch.autograd.gradcheck(_op(shape, phi), _args(t), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bands_and_threads_agree_with_reference(threads):
    """Row bands and parity phases of the backward: results must not depend on the thread count."""
    shape = Shape(B=3, C=10, H=21, W=13, k=7, m=4, stride=1)  # 3 bands of 8 rows: both parities
    t = make_inputs(shape, dtype=torch.float64, seed=3, requires_grad=True)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = _op(shape, "sqdiff")(*_args(t))
        got = torch.autograd.grad(y, _args(t), grad)
    finally:
        torch.set_num_threads(before)
    y_ref = _op(shape, "sqdiff", "reference")(*_args(t))
    expected = torch.autograd.grad(y_ref, _args(t), grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_absdiff_gradient_at_tie_follows_torch_sign():
    """Where q == k, d|q - k| / dq is torch's sign(0) = 0, as in the reference's autograd."""
    shape = Shape(B=1, C=2, H=5, W=5, k=3, m=1, stride=1)
    t = make_inputs(shape, dtype=torch.float64, seed=5)
    t["key"][:] = 0.5
    t["query"][:] = 0.5  # every logit of every neighbour is a tie
    grads = {}
    for impl in ("fused_cpu", "reference"):
        leaves = {n: v.clone().requires_grad_(True) for n, v in t.items()}
        local_relation(*_args(leaves), kernel_size=3, phi="absdiff", impl=impl).sum().backward()
        grads[impl] = {n: v.grad for n, v in leaves.items()}
    for name in ("query", "key"):
        torch.testing.assert_close(grads["fused_cpu"][name], grads["reference"][name])


def test_opcheck_schema_fake_and_autograd():
    shape = Shape(B=2, C=6, H=5, W=4, k=3, m=2, stride=2)
    t = make_inputs(shape, dtype=torch.float64, seed=1, requires_grad=True)
    torch.library.opcheck(torch.ops.lrbench.fused_cpu.default, (*_args(t), 3, 2, "sqdiff"))


def test_fake_and_meta_shapes():
    shape = Shape(B=2, C=10, H=9, W=6, k=5, m=4, stride=2)
    expected = (shape.B, shape.C, shape.Ho, shape.Wo)
    meta = {n: v.to("meta") for n, v in make_inputs(shape).items()}
    y = torch.ops.lrbench.fused_cpu(*_args(meta), 5, 2, "mult")
    assert y.device.type == "meta" and tuple(y.shape) == expected

    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = {n: mode.from_tensor(v) for n, v in make_inputs(shape).items()}
        y = torch.ops.lrbench.fused_cpu(*_args(fake), 5, 2, "mult")
        grads = torch.ops.lrbench.fused_cpu_backward(y, *_args(fake), 5, 2, "mult")
    assert tuple(y.shape) == expected
    assert [tuple(g.shape) for g in grads] == [tuple(v.shape) for v in _args(fake)]


def test_torch_compile_fullgraph():
    shape = Shape(B=1, C=4, H=6, W=5, k=3, m=2, stride=1)
    t = make_inputs(shape, seed=2)
    f = _op(shape, "sqdiff")
    expected = f(*_args(t))
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("torch.compile's inductor needs a C++ compiler for CPU code; none found")
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(f, fullgraph=True, backend=record)(*_args(t))
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert any("lrbench.fused_cpu" in name for name in targets), targets  # one opaque op
    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True, backend="inductor")(*_args(t))
    torch.testing.assert_close(got, expected)


def test_torch_compile_backward_through_the_custom_op():
    shape = Shape(B=2, C=6, H=5, W=6, k=3, m=3, stride=2)
    t = make_inputs(shape, dtype=torch.float64, seed=4, requires_grad=True)
    f = _op(shape, "absdiff")
    expected = torch.autograd.grad(f(*_args(t)).square().sum(), _args(t))
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(*_args(t)).square().sum(), _args(t))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_flop_counter_sees_the_op_with_the_closed_form():
    shape = Shape(B=2, C=12, H=7, W=6, k=5, m=4, stride=2)
    t = make_inputs(shape, requires_grad=True)
    macs = op_macs(shape.B, shape.C, shape.G, shape.k, shape.Ho, shape.Wo)
    with FlopCounterMode(display=False) as counter:
        y = _op(shape, "sqdiff")(*_args(t))
        forward_total = counter.get_total_flops()
        y.backward(torch.ones_like(y))
    counts = counter.get_flop_counts()["Global"]
    assert forward_total == 2 * macs
    assert counts[torch.ops.lrbench.fused_cpu] == 2 * macs
    assert counts[torch.ops.lrbench.fused_cpu_backward] == 4 * macs
    assert counter.get_total_flops() == 6 * macs


def test_fvcore_counts_the_op_with_the_closed_form():
    from lrbench import LocalRelation2d
    from lrbench.complexity.fvcore_count import count_macs

    layer = LocalRelation2d(16, kernel_size=5, m=4, impl="fused_cpu")
    count = count_macs(layer, (torch.randn(2, 16, 9, 9),))
    assert count.unsupported == {}
    assert count.by_operator["fused_cpu"] == op_macs(2, 16, 4, 5, 9, 9)


def _bytes_allocated(fn) -> int:
    """Total bytes the CPU allocator hands out during ``fn()`` (an upper bound on its peak)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    return sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)


def test_forward_allocates_its_output_only():
    """The fused forward's only tensor allocation is the output (its per-thread scratch of
    k*k*Wo + (m+1) * rows * (W+2r) values lives outside the allocator and is O(one band))."""
    shape = Shape(B=2, C=32, H=24, W=24, k=7, m=8, stride=1)
    t = make_inputs(shape)
    out_bytes = shape.B * shape.C * shape.Ho * shape.Wo * 4
    buffer_bytes = shape.k**2 * out_bytes  # what an unfold of the values alone holds
    with torch.no_grad():
        fused = _bytes_allocated(lambda: _op(shape, "sqdiff")(*_args(t)))
        unfold = _bytes_allocated(lambda: _op(shape, "sqdiff", "unfold")(*_args(t)))
    assert unfold >= buffer_bytes  # the probe does see k*k-sized buffers
    assert out_bytes <= fused <= 1.25 * out_bytes


def test_unavailable_without_compiler(monkeypatch):
    monkeypatch.setattr(buildcache, "compiler", lambda: None)
    monkeypatch.setattr(fused_cpu, "extension", fused_cpu.extension.__wrapped__)
    monkeypatch.setattr(fused_cpu, "_reason", fused_cpu._REASON_UNKNOWN)
    assert fused_cpu.availability() == "no C++ compiler found (g++/c++)"


def test_registry_entry():
    impl = registry.get("fused_cpu")
    assert impl.custom_ops == ("lrbench::fused_cpu",)
    assert impl.devices == ("cpu",)
    assert set(impl.dtypes) == {torch.float32, torch.float64}
    spec = Shape(B=1, C=8, H=5, W=5, k=3, m=4).spec(dtype=torch.float32)
    assert registry.resolve(None, spec).name == "fused_cpu"  # the fastest CPU implementation
    assert impl.why_not(Shape(B=1, C=8, H=5, W=5).spec(dtype=torch.bfloat16))
