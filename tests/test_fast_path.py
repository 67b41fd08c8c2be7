"""The fast path (fused key/query projection, folded stem, channels_last) computes what the plain
path computes: outputs, every parameter's gradient, the input's gradient and the state dict
(running statistics included), in float64, for every implementation that runs on CPU."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import lrbench
from lrbench import projections
from lrbench.layer import LocalRelation2d
from lrbench.models import lrnet26, set_fast_path
from lrbench.models.stem import Stem, conv_bn_relu, foldable
from lrbench.projections import key_query
from tests.impls import runnable_on_cpu

CPU_IMPLS = [name for name in runnable_on_cpu(include_reference=True, include_interpreted=False)
             if torch.float64 in lrbench.registry.get(name).dtypes]


def _run(model: torch.nn.Module, x: torch.Tensor, train: bool):
    """Output, the input's and every parameter's gradient, the state dict after one pass."""
    model.train(train)
    x = x.detach().clone().requires_grad_()
    out = model(x)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    params = list(model.parameters())
    grads = torch.autograd.grad(out, [x, *params], grad_out)
    return out.detach(), grads, {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(plain, fast, rtol=1e-9, atol=1e-10):
    (out_p, grads_p, state_p), (out_f, grads_f, state_f) = plain, fast
    torch.testing.assert_close(out_f.contiguous(), out_p.contiguous(), rtol=rtol, atol=atol)
    assert len(grads_p) == len(grads_f)
    for i, (gp, gf) in enumerate(zip(grads_p, grads_f, strict=True)):
        torch.testing.assert_close(gf.contiguous(), gp.contiguous(), rtol=rtol, atol=atol,
                                   msg=lambda m, i=i: f"gradient {i}: {m}")
    assert state_p.keys() == state_f.keys()
    for name in state_p:
        torch.testing.assert_close(state_f[name], state_p[name], rtol=rtol, atol=atol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_layer_fast_path_equals_plain(impl, stride, channels_last):
    torch.manual_seed(0)
    plain = LocalRelation2d(16, kernel_size=5, stride=stride, m=4, impl=impl).double()
    plain.fast = False
    fast = copy.deepcopy(plain)
    fast.fast = True
    x = torch.randn(2, 16, 9, 11, dtype=torch.float64)
    x_fast = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    _assert_same(_run(plain, x, True), _run(fast, x_fast, True))


def _stem_pair(bias: bool) -> tuple[torch.nn.Sequential, Stem]:
    """Conv 3 -> 8, BN, ReLU in float64 with non-trivial running statistics and affine
    parameters, run by autograd (plain) and folded (fast)."""
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1, bias=bias), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU()).double()
    with torch.no_grad():
        plain[1].running_mean.uniform_(-1, 1)
        plain[1].running_var.uniform_(0.5, 2)
        plain[1].weight.uniform_(0.5, 2)
        plain[1].bias.uniform_(-1, 1)
    return plain, Stem(*copy.deepcopy(list(plain)))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("hw", [(2, 3), (6, 5), (16, 16), (11, 13)])  # pixels: < 8, 8k + 6, 8k, prime factors
def test_folded_stem_equals_conv_bn_relu(train, channels_last, bias, hw):
    """The folded stem (and its own backward: image by image, pixel sums in chunks) gives what
    conv, BN, ReLU give under autograd: output, the input's and every parameter's gradient, the
    running statistics."""
    plain, fast = _stem_pair(bias)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(3, 3, *hw, dtype=torch.float64) * 2 + 0.5).contiguous(memory_format=fmt)
    for _ in range(2):  # twice: the running statistics are updated the same way each time
        _assert_same(_run(plain, x, train), _run(fast, x, train))


def test_folded_stem_has_second_derivatives():
    """``create_graph``: the gradient of the parameters' gradient norm matches autograd's."""
    plain, fast = _stem_pair(bias=True)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 8, 5, 6, dtype=torch.float64)

    def second(model):
        params = list(model.parameters())
        grads = torch.autograd.grad(model(x), [x, *params], grad_out, create_graph=True)
        return torch.autograd.grad(sum(g.square().sum() for g in grads), [x, *params])

    for got, expected in zip(second(fast), second(plain), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_folded_stem_parameter_gradients_from_an_expanded_gradient(channels_last):
    """``y.sum().backward()`` hands the backward an expanded gradient, and ``x`` needs none: the
    parameters' gradients still equal autograd's."""
    plain, fast = _stem_pair(bias=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 3, 7, 9, dtype=torch.float64).contiguous(memory_format=fmt)
    for model in (plain, fast):
        (model(x) * 1.5).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_folded_stem_under_autocast_matches_float32():
    """Under autocast (bf16 on CPU) the fold runs autograd's backward (its own node wants one
    dtype): it runs, and its gradients are float32's within bf16 rounding."""
    torch.manual_seed(0)
    stems = [Stem(torch.nn.Conv2d(3, 8, 1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU())]
    stems.append(copy.deepcopy(stems[0]))
    x = torch.randn(2, 3, 6, 6)
    grad_y = torch.randn(2, 8, 6, 6)
    stems[0](x).backward(grad_y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stems[1](x)
    assert y.dtype == torch.bfloat16
    y.float().backward(grad_y)
    for a, b in zip(stems[0].parameters(), stems[1].parameters(), strict=True):
        assert torch.linalg.vector_norm(b.grad - a.grad) <= 0.05 * torch.linalg.vector_norm(a.grad)


def test_folded_stem_backward_allocates_one_image_at_a_time():
    """No tensor of the 64-channel map's size in the stem's backward: autograd's ReLU backward
    made one (103 MB at batch 8, 224x224, fresh pages every step); this backward's largest
    allocation is one image's masked gradient."""
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 64, 1, bias=False), torch.nn.BatchNorm2d(64)
    x = torch.randn(4, 3, 32, 32)
    y = conv_bn_relu(conv, bn, x)
    grad_y = torch.randn_like(y)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        y.backward(grad_y)
    largest = max(e.self_cpu_memory_usage for e in prof.events())
    image_bytes = y[0].numel() * y.element_size()
    assert image_bytes <= largest <= image_bytes * 1.01  # the probe sees the per-image gradient
    assert conv.weight.grad is not None and bn.weight.grad is not None


def test_folded_stem_with_conv_bias_in_eval():
    plain, fast = _stem_pair(bias=True)
    plain.eval(), fast.eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv_bn_relu(plain[0], plain[1], x), plain(x), rtol=1e-12, atol=1e-12)


def test_stem_without_a_foldable_head_runs_its_layers():
    conv3 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert not foldable(conv3, torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    stem = Stem(conv3, torch.nn.BatchNorm2d(8), torch.nn.ReLU()).double()
    plain = torch.nn.Sequential(*stem).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(stem(x), plain(x), rtol=0, atol=0)


# Training mode: BatchNorm over the few values of res5 (2 x 2 x 2 here) amplifies rounding (on
# 2 x 32 x 32 images a 1e-15 relative change of the input moved the output by ~4e-9), so the bound
# is looser there; eval mode is tight. A wrong fast path is off by O(1).
NETWORK_TOL = {True: (1e-6, 1e-7), False: (1e-10, 1e-12)}


# The whole network with the CPU default (every implementation is checked layer by layer above).
NETWORK_IMPL = "fused_cpu" if "fused_cpu" in CPU_IMPLS else "unfold"


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_network_fast_path_equals_plain(channels_last, train):
    """LR-Net-26 (2 x 64x64 images in training mode, 32x32 in eval mode), one pass: outputs,
    gradients, BN running statistics."""
    impl = NETWORK_IMPL
    torch.manual_seed(0)
    plain = lrnet26(impl=impl).double()
    assert set_fast_path(plain, False) == 1 + 1 + 8  # the stem, its LR layer, eight in the stages
    fast = copy.deepcopy(plain)
    set_fast_path(fast, True)
    size = 64 if train else 32
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
        x_fast = x.contiguous(memory_format=torch.channels_last)
    else:
        x_fast = x
    rtol, atol = NETWORK_TOL[train]
    _assert_same(_run(plain, x, train), _run(fast, x_fast, train), rtol=rtol, atol=atol)


def _conv_key_query(x, w_key, w_query, stride):
    """The plain projections: two 1x1 convolutions, the query strided."""
    return F.conv2d(x, w_key), F.conv2d(x, w_query, stride=stride)


# The backward's ways, by its size thresholds: "products", per image (or row) products for the
# weight gradients and the strided query's input gradient image by image; "one_mm", one product
# over all pixels and the whole batch at once; "convolution", the convolutions' own backward for
# the weights and the input (oneDNN on CPU for float32; the tests' float64 takes ATen's). H = 9
# and 10: the strided query's rows merge across images (H a multiple of the stride: read in
# place) at stride 3 and at stride 2.
WAYS = {"products": dict(_PIXELS_PER_ROW=1, _TEMPORARY_BYTES=1, _CONV_MAX_BYTES=-1),
        "one_mm": dict(_PIXELS_PER_ROW=10**9, _TEMPORARY_BYTES=1 << 40, _CONV_MAX_BYTES=-1),
        "convolution": dict(_CONV_MAX_BYTES=1 << 40, _CONV_MIN_CONTRACTED=1)}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("hw", [(9, 10), (10, 7)], ids=["9x10", "10x7"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("needs", ["all", "x_only", "weights_only"])
def test_key_query_equals_two_convs(stride, channels_last, needs, hw, way, monkeypatch):
    """Values, gradients (those asked for, others None), and the input's gradient in the input's
    memory format, whichever way the backward takes."""
    for name, value in WAYS[way].items():
        monkeypatch.setattr(projections, name, value)
    gen = torch.Generator().manual_seed(1)
    B, C, G, (H, W) = 3, 12, 3, hw
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w_key, w_query = (torch.randn(G, C, 1, 1, generator=gen, dtype=torch.float64) for _ in "kq")
    grad_x_on, grad_w_on = needs in ("all", "x_only"), needs in ("all", "weights_only")
    leaves = [
        x.clone().requires_grad_(grad_x_on),
        w_key.clone().requires_grad_(grad_w_on),
        w_query.clone().requires_grad_(grad_w_on),
    ]
    plain = [t.detach().clone().requires_grad_(t.requires_grad) for t in leaves]
    key, query = key_query(*leaves, stride)
    key_p, query_p = _conv_key_query(*plain, stride)
    torch.testing.assert_close(key, key_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(query, query_p, rtol=1e-12, atol=1e-12)
    grad_key = torch.randn(key.shape, generator=gen, dtype=torch.float64)
    grad_query = torch.randn(query.shape, generator=gen, dtype=torch.float64)
    (key * grad_key).sum().add((query * grad_query).sum()).backward()
    (key_p * grad_key).sum().add((query_p * grad_query).sum()).backward()
    for got, want in zip(leaves, plain, strict=True):
        if not want.requires_grad:
            assert got.grad is None
            continue
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)
    if grad_x_on:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert leaves[0].grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_backward_takes_the_convolutions_own_where_many_channels_are_summed(stride):
    """With the default thresholds the layer's backward calls aten.convolution_backward on CPU
    where 2G (stride 1) or G (stride 2) reaches _CONV_MIN_CONTRACTED and x is small, and BLAS
    products otherwise; the values agree with the plain path either way."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Calls(TorchDispatchMode):
        """The weight shapes of the convolution backwards that run."""

        def __init__(self):
            super().__init__()
            self.weights = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ == "convolution_backward":
                self.weights.append(tuple(args[2].shape[:2]))
            return func(*args, **(kwargs or {}))

    G_many = projections._CONV_MIN_CONTRACTED // (2 if stride == 1 else 1)
    for G, expect in ((G_many, True), (4, False)):
        C = 4 * G  # m = 4: the projections' weights (2G or G, C) differ from the final (C, C)
        torch.manual_seed(0)
        plain = LocalRelation2d(C, kernel_size=3, stride=stride, m=4, impl="unfold")
        plain.fast = False
        fast = copy.deepcopy(plain)
        fast.fast = True
        x = torch.randn(2, C, 6, 5)
        grads = []
        for layer in (plain, fast):
            xi = x.clone().requires_grad_()
            y = layer(xi)
            with Calls() as calls:
                y.backward(torch.ones_like(y))
            grads.append((xi.grad, layer.key.weight.grad, layer.query.weight.grad))
        projections_seen = [w for w in calls.weights if w[1] == C and w[0] != C]
        assert bool(projections_seen) == expect, (G, calls.weights)
        for got, want in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_the_convolutions_backward_is_only_taken_on_cpu_for_small_inputs_outside_create_graph():
    x = torch.empty(8, 400, 14, 14)
    with torch.no_grad():
        assert projections._by_convolution(x, projections._CONV_MIN_CONTRACTED)
        assert not projections._by_convolution(x, projections._CONV_MIN_CONTRACTED - 1)
        assert not projections._by_convolution(torch.empty(8, 64, 224, 224), 10**4)  # 103 MB
        assert not projections._by_convolution(x.to("meta"), 10**4)
    with torch.enable_grad():  # create_graph: products, which autograd differentiates
        assert not projections._by_convolution(x, 10**4)


@pytest.mark.parametrize("way", ["products", "convolution"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_key_query_gradcheck(stride, channels_last, way, monkeypatch):
    """First and second order (the NCHW backward keeps the subsampled input; not for create_graph;
    the second order always takes the products, whichever way the first takes)."""
    for name, value in WAYS[way].items():
        monkeypatch.setattr(projections, name, value)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 5, 4, generator=gen, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    inputs = (
        x.requires_grad_(),
        torch.randn(2, 5, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 5, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *t: key_query(*t, stride), inputs)
    assert torch.autograd.gradgradcheck(lambda *t: key_query(*t, stride), inputs)


def test_key_query_of_an_empty_batch():
    x = torch.randn(0, 6, 5, 5, requires_grad=True)
    w_key = torch.randn(2, 6, 1, 1, requires_grad=True)
    w_query = torch.randn(2, 6, 1, 1, requires_grad=True)
    key, query = key_query(x, w_key, w_query, 2)
    assert key.shape == (0, 2, 5, 5) and query.shape == (0, 2, 3, 3)
    (key.sum() + query.sum()).backward()
    assert x.grad.shape == x.shape and torch.equal(w_key.grad, torch.zeros_like(w_key))


@pytest.mark.parametrize("way", ["products", "convolution"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_flop_counter_sees_the_same_training_step(stride, channels_last, way, monkeypatch):
    """FlopCounterMode's total over forward and backward is the plain path's: the projections'
    backward products do the convolution backward's multiply-adds (no in-place op it skips),
    and so does the convolutions' own backward where the fast path takes it."""
    from torch.utils.flop_counter import FlopCounterMode

    for name, value in WAYS[way].items():
        monkeypatch.setattr(projections, name, value)

    torch.manual_seed(0)
    plain = LocalRelation2d(16, kernel_size=5, stride=stride, m=4, impl="unfold")
    plain.fast = False
    fast = copy.deepcopy(plain)
    fast.fast = True
    x = torch.randn(2, 16, 9, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    totals = []
    for layer in (plain, fast):
        with FlopCounterMode(display=False) as counter:
            layer(x.clone().requires_grad_()).sum().backward()
        totals.append(counter.get_total_flops())
    C, G, H, W = 16, 4, 9, 11
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    projection_macs = C * G * (H * W + Ho * Wo) * 2  # key and query, batch 2
    assert totals[1] == totals[0] >= 3 * 2 * projection_macs  # forward + backward (2x), FLOPs = 2 MACs


def _layer_pair(impl: str, stride: int, channels_last: bool, C: int = 16):
    torch.manual_seed(0)
    plain = LocalRelation2d(C, kernel_size=5, stride=stride, m=4, impl=impl).double()
    plain.fast = False
    fast = copy.deepcopy(plain)
    fast.fast = True
    x = torch.randn(2, C, 9, 11, dtype=torch.float64)
    return plain, fast, x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_fast_backward_makes_one_input_sized_gradient(channels_last):
    """The fast path's backward adds the projections' gradient of x into the op's in place: the
    op's is the one x-sized tensor it makes; the plain path makes more (the projections' own,
    and their sum). Stride 2, so that nothing y-sized is x-sized."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Made(TorchDispatchMode):
        """Counts the new tensors of ``numel`` elements that operators return (no views)."""

        def __init__(self, numel):
            super().__init__()
            self.numel, self.count = numel, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen = {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves(
                (args, kwargs)) if isinstance(t, torch.Tensor)}
            self.count += sum(t.numel() == self.numel and t.untyped_storage().data_ptr() not in seen
                              for t in torch.utils._pytree.tree_leaves(out)
                              if isinstance(t, torch.Tensor))
            return out

    counts = []
    plain, fast, x0 = _layer_pair("fused_cpu", 2, channels_last)
    for layer in (plain, fast):
        x = x0.clone().requires_grad_()
        y = layer(x)
        with Made(x.numel()) as made:
            grad_x, = torch.autograd.grad(y, x, torch.ones_like(y))
        counts.append(made.count)
    assert counts[0] >= 2 and counts[1] == 1, counts


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_fast_path_with_the_floor_stand_in(channels_last):
    """The floor's stand-in (a view of x, no gradient for query or key): the plain path's
    gradients, the key and query weights' zero."""
    from lrbench.bench.measure.floor import stand_in

    for op, stride in ((stand_in, 2), (stand_in, 1)):
        plain, fast, x = _layer_pair("reference", stride, channels_last)
        plain.op = fast.op = op
        got = []
        for layer in (plain, fast):
            leaf = x.clone().requires_grad_()
            y = layer(leaf)
            got.append(torch.autograd.grad(y, [leaf, *layer.parameters()], torch.ones_like(y),
                                           allow_unused=True, materialize_grads=True))
        for a, b in zip(*got, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_fast_path_backward_twice_with_retain_graph_and_second_order():
    """retain_graph: the second backward (the op's graph is used once) recomputes, same values;
    create_graph: second derivatives are the plain path's."""
    plain, fast, x = _layer_pair("reference", 2, False)
    x = x.requires_grad_()
    y = fast(x)
    g = torch.randn_like(y)
    first = torch.autograd.grad(y, [x, *fast.parameters()], g, retain_graph=True)
    second = torch.autograd.grad(y, [x, *fast.parameters()], g)
    expected = torch.autograd.grad(plain(x), [x, *plain.parameters()], g)
    for a, b, e in zip(first, second, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(b, e, rtol=1e-9, atol=1e-10)
    results = []
    for layer in (plain, fast):
        y = layer(x)
        grad_x, = torch.autograd.grad(y, x, g, create_graph=True)
        results.append(torch.autograd.grad(grad_x.square().sum(), list(layer.parameters())))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


def test_projected_relation_leaves_the_callers_gradient_alone():
    """An op whose gradient of x is grad_y itself: the projections' part is added into a copy,
    not into the caller's grad_outputs; the gradients are the two calls'."""
    from lrbench.projections import projected_relation

    def passing(x, query, key, prior, **kw):
        return x + query.mean() + key.mean() + prior.sum()  # grad_x is grad_y

    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, requires_grad=True)
    w_key, w_query = (torch.randn(2, 8, 1, 1, dtype=torch.float64, requires_grad=True)
                      for _ in range(2))
    prior = torch.randn(2, 3, 3, dtype=torch.float64)
    y = projected_relation(x, w_key, w_query, prior, passing, kernel_size=3, stride=1)
    g = torch.randn_like(y)
    kept = g.clone()
    got = torch.autograd.grad(y, [x, w_key, w_query], g)
    assert torch.equal(g, kept)
    key, query = key_query(x, w_key, w_query, 1)
    expected = torch.autograd.grad(passing(x, query, key, prior), [x, w_key, w_query], g)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_projected_relation_with_the_ops_gradients_of_x_and_key_one_tensor():
    """An op whose gradients of x and key are one tensor (m = 1, G = C): the projections' part of
    x's gradient goes into a copy, so the key weight's gradient reads the op's key gradient as it
    was; the gradients are the two calls'."""
    from lrbench.projections import projected_relation

    def shared(x, query, key, prior, *, kernel_size, stride=1, phi="sqdiff", impl=None):
        return ((x + key) * 2)[:, :, ::stride, ::stride] + query.sum() * 0 + prior.sum() * 0

    torch.manual_seed(0)
    C = 4
    x = torch.randn(2, C, 6, 6, dtype=torch.float64, requires_grad=True)
    w_key, w_query = (torch.randn(C, C, 1, 1, dtype=torch.float64, requires_grad=True)
                      for _ in range(2))
    prior = torch.zeros(C, 3, 3, dtype=torch.float64)
    for stride in (1, 2):
        y = projected_relation(x, w_key, w_query, prior, shared, kernel_size=3, stride=stride)
        g = torch.randn_like(y)
        got = torch.autograd.grad(y, [x, w_key, w_query], g)
        key, query = key_query(x, w_key, w_query, stride)
        expected = torch.autograd.grad(shared(x, query, key, prior, kernel_size=3, stride=stride),
                                       [x, w_key, w_query], g)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fast_path_recomputing_with_nothing_the_op_reads_requiring_grad():
    """The floor's stand-in reads x only, and x needs no gradient: a second backward
    (retain_graph) and create_graph run as on the plain path, the weights' gradients None."""
    from lrbench.bench.measure.floor import stand_in

    plain, fast, x = _layer_pair("reference", 2, False)
    for layer in (plain, fast):
        layer.op = stand_in
        y = layer(x)
        y.sum().backward(retain_graph=True)
        y.sum().backward()
        grads = torch.autograd.grad(layer(x).sum(), list(layer.parameters()), create_graph=True,
                                    allow_unused=True)
        assert grads[:2] == (None, None)  # key, query weights: the stand-in reads neither


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_non_reentrant_checkpoint_frees_the_ops_output_and_input(fast):
    """Under saved-tensor hooks (non-reentrant checkpointing) the layer makes the two calls: the
    op's output and input are not kept past the forward (the one-node path would keep them on its
    node, out of the hooks' reach); the gradients are the plain path's."""
    import weakref

    from torch.utils.checkpoint import checkpoint

    plain, layer, x = _layer_pair("reference", 2, False)
    layer.fast = fast
    kept = []

    def op(*args, **kwargs):
        y = lrbench.local_relation(*args, **kwargs)
        kept.extend((weakref.ref(y), weakref.ref(args[0])))
        return y

    layer.op = op
    x = x.requires_grad_()
    y = checkpoint(lambda t: layer(t * 1), x, use_reentrant=False)
    assert [ref() is None for ref in kept] == [True, True]
    got = torch.autograd.grad(y.sum(), [x, *layer.parameters()])
    expected = torch.autograd.grad(plain(x).sum(), [x, *plain.parameters()])
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
