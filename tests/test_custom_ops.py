"""The custom-operator contract, tested once for every implementation that registers custom ops.

An implementation with ``custom_ops=("ns::name",)`` emits that ``torch.library`` operator for
the op's forward; autograd calls its backward operator. The contract (what lets the op live in a
compiled model and be counted): the schema, fake (meta) implementations and autograd pass
``torch.library.opcheck``; fake and meta tensors give the right output and gradient shapes
without running a kernel; ``torch.compile(fullgraph=True)`` traces it as one opaque node and
its forward and backward match eager; ``FlopCounterMode`` and fvcore count it with the closed
form (forward ``2 x op_macs`` FLOPs, backward twice that; fvcore: ``op_macs`` MACs).
Kernel-specific tests (tiling, threads, memory, the interpreter) stay in test_fused_*.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import lrbench
from lrbench import LocalRelation2d, local_relation, registry
from lrbench.complexity import op_macs
from lrbench.complexity.fvcore_count import count_macs
from lrbench.inputs import Shape, make_inputs
from tests.helpers import unfold_trace_macs

SHAPE = Shape(B=2, C=6, H=5, W=4, k=3, m=2, stride=2)  # borders, stride 2, G=3 maps


def _device(impl: registry.Implementation) -> str | None:
    """Where this machine can run it (CPU first: CUDA tests are marked apart), else None."""
    for device in ("cpu", "cuda"):
        if device in impl.devices and not impl.why_not(SHAPE.spec(device=device)):
            return device
    return None


def _cases():
    for name in lrbench.implementations():
        impl = registry.get(name)
        if not impl.custom_ops:
            continue
        device = _device(impl)
        reason = impl.unavailable_reason() or "; ".join(impl.why_not(SHAPE.spec()))
        yield pytest.param(name, device, id=name,
                           marks=pytest.mark.skipif(device is None, reason=f"{name}: {reason}"))


CASES = list(_cases())


def _op(name: str):
    namespace, op = registry.get(name).custom_ops[0].split("::")
    return getattr(getattr(torch.ops, namespace), op)


def _call(name: str, inputs, phi: str = "sqdiff"):
    return local_relation(*inputs, kernel_size=SHAPE.k, stride=SHAPE.stride, phi=phi, impl=name)


def test_every_fused_implementation_is_covered():
    assert {"fused_cpu", "fused_triton"} <= {case.values[0] for case in CASES}


@pytest.mark.parametrize(("name", "device"), CASES)
def test_opcheck_schema_fake_autograd_and_aot_dispatch(name, device):
    t = make_inputs(SHAPE, device=device, seed=1, requires_grad=True)
    torch.library.opcheck(_op(name).default, (*t, SHAPE.k, SHAPE.stride, "absdiff"))


@pytest.mark.parametrize(("name", "device"), CASES)
def test_fake_and_meta_tensors_give_shapes_without_running_kernels(name, device):
    expected = (SHAPE.B, SHAPE.C, SHAPE.Ho, SHAPE.Wo)
    meta = make_inputs(SHAPE).map(lambda v: v.to("meta"))
    out = _op(name)(*meta, SHAPE.k, SHAPE.stride, "mult")
    if isinstance(out, tuple):  # (y, stats): per-pixel softmax statistics kept for the backward
        y, stats = out
        assert tuple(stats.shape) == (2, SHAPE.B, SHAPE.G, SHAPE.Ho, SHAPE.Wo)
    else:
        y = out
    assert y.device.type == "meta" and tuple(y.shape) == expected
    with FakeTensorMode() as mode:
        fake = make_inputs(SHAPE, device=device).map(lambda v: mode.from_tensor(v).requires_grad_())
        y = _call(name, fake, "mult")
        grads = torch.autograd.grad(y.sum(), fake.args())  # the backward op's fake impl
    assert tuple(y.shape) == expected
    assert [tuple(g.shape) for g in grads] == [tuple(v.shape) for v in fake]


@pytest.mark.parametrize(("name", "device"), CASES)
def test_torch_compile_traces_one_opaque_op_forward_and_backward(name, device):
    t = make_inputs(SHAPE, dtype=torch.float64, device=device, seed=4, requires_grad=True)

    def f(x, query, key, prior):
        return _call(name, (x, query, key, prior), "absdiff") * 2

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(f, fullgraph=True, backend=record)(*t)
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert any(registry.get(name).custom_ops[0].replace("::", ".") in s for s in targets), targets
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")  # Dynamo + AOT autograd
    got = torch.autograd.grad(compiled(*t).square().sum(), t.args())
    expected = torch.autograd.grad(f(*t).square().sum(), t.args())
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize(("name", "device"), CASES)
def test_flop_counter_uses_the_closed_form(name, device):
    t = make_inputs(SHAPE, device=device, requires_grad=True)
    macs = op_macs(SHAPE.B, SHAPE.C, SHAPE.G, SHAPE.k, SHAPE.Ho, SHAPE.Wo)
    assert macs == unfold_trace_macs(SHAPE, make_inputs(SHAPE).args())  # counted apart
    with FlopCounterMode(display=False) as counter:
        y = _call(name, t)
        forward = counter.get_total_flops()
        y.backward(torch.ones_like(y))
    assert forward == 2 * macs
    assert counter.get_flop_counts()["Global"][_op(name)] == 2 * macs
    assert counter.get_total_flops() == 6 * macs  # backward = 2 x forward (documented)


@pytest.mark.parametrize(("name", "device"), CASES)
def test_fvcore_counts_the_op_with_the_closed_form(name, device):
    layer = LocalRelation2d(8, kernel_size=3, m=4, impl=name).to(device)
    count = count_macs(layer, (torch.randn(1, 8, 5, 5, device=device),))
    assert count.unsupported == {}
    op = registry.get(name).custom_ops[0].split("::")[1]
    shape = Shape(B=1, C=8, H=5, W=5, k=3, m=4)
    expected = unfold_trace_macs(shape, make_inputs(shape).args())  # unfold's trace, op by op
    assert count.by_operator[op] == op_macs(1, 8, 2, 3, 5, 5) == expected


def _as_projected(t, shape: Shape):
    """The inputs laid out as LR-Net's fast path hands them over in channels_last: x channels_last,
    key and query views of one channels_last (B, 2G, H, W) output at stride 1, channels_last
    tensors of their own at a larger stride."""
    cl = torch.channels_last
    if shape.stride == 1:
        both = torch.cat([t.key, t.query], dim=1).contiguous(memory_format=cl)
        key, query = both.split(shape.G, dim=1)
    else:
        key, query = t.key.contiguous(memory_format=cl), t.query.contiguous(memory_format=cl)
    return t.replace(x=t.x.contiguous(memory_format=cl), key=key, query=query)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("name", "device"), CASES)
def test_fake_impls_give_the_kernels_layouts_for_projected_inputs(name, device, stride):
    """torch.compile plans with the fake impls' strides: for the layouts the fast path hands
    over (channels_last x, key and query as strided views), y, the statistics and the four
    gradients have the strides the kernels really give them."""
    shape = dataclasses.replace(SHAPE, stride=stride)

    def run(inputs):
        leaves = inputs.map(lambda v: v.detach().requires_grad_())
        out = _op(name)(*leaves, shape.k, stride, "sqdiff")
        y = out[0] if isinstance(out, tuple) else out
        grads = torch.autograd.grad(y, leaves.args(), torch.ones_like(y))
        return [v.stride() for v in (*(out if isinstance(out, tuple) else (out,)), *grads)]

    t = make_inputs(shape, device=device, seed=5)
    real = run(_as_projected(t, shape))
    with FakeTensorMode() as mode:
        fake = run(_as_projected(t.map(mode.from_tensor), shape))
    assert fake == real
