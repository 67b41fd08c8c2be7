"""Tests specific to ``fused_cpu``: the C++ kernels as a torch.library custom operator.

The registry-wide suites (test_correctness, test_gradcheck) already compare fused_cpu with the
float64 reference on the edge-case list, and test_custom_ops checks the custom-op contract
(opcheck, fake/meta shapes, torch.compile, FLOP formulas) of every such implementation; here:
Inductor around the op, the kernels' own tiling (row bands, parity phases of the backward,
thread counts), the memory claim (nothing of size k*k*H*W in the forward), the build.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil

import pytest
import torch
from lrbench.impls import fused_cpu

from lrbench import buildcache, local_relation, registry
from lrbench.bench.measure.memory import peak_extra_bytes
from lrbench.inputs import Shape, make_inputs
from tests.impls import skip_or_fail


@pytest.fixture(autouse=True)
def _fused_cpu_here():
    """Skip where fused_cpu cannot run, or fail with the reason where it is required
    (``CI=true``, ``LRBENCH_REQUIRE``): an unbuildable kernel must not leave CI green."""
    skip_or_fail("fused_cpu")

PHIS = ("sqdiff", "absdiff", "mult")

# Small float64 cases for gradcheck: borders everywhere, strides 1-3, k = 1, k larger than the
# image, C not divisible by m, and enough rows for several bands (with B*G this small the
# kernels cut bands of (k - 1) / s rows or a few more, so the backward has both parities).
GRAD_CASES = [
    Shape(B=1, C=5, H=6, W=7, k=3, m=2, stride=1),
    Shape(B=2, C=4, H=7, W=5, k=5, m=2, stride=2),
    Shape(B=1, C=3, H=8, W=6, k=3, m=3, stride=3),
    Shape(B=1, C=4, H=4, W=3, k=1, m=2, stride=1),
    Shape(B=1, C=3, H=3, W=4, k=7, m=2, stride=1),
    Shape(B=1, C=2, H=19, W=4, k=3, m=1, stride=1),
    Shape(B=1, C=2, H=23, W=3, k=5, m=2, stride=2),
    Shape(B=1, C=11, H=6, W=7, k=3, m=10, stride=1),  # channels beyond the 8 held in registers
    Shape(B=1, C=10, H=5, W=9, k=5, m=5, stride=2),   # 5 of 8 register channels in use
    Shape(B=1, C=4, H=9, W=10, k=7, m=2, stride=2),   # odd r, even W: the split's last column
]


def _op(shape: Shape, phi: str, impl: str = "fused_cpu"):
    def f(x, query, key, prior):
        return local_relation(x, query, key, prior, kernel_size=shape.k, stride=shape.stride,
                              phi=phi, impl=impl)

    return f


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("shape", GRAD_CASES, ids=Shape.label)
def test_gradcheck_float64(shape, phi):
    t = make_inputs(shape, dtype=torch.float64, seed=11, requires_grad=True)
    assert torch.autograd.gradcheck(_op(shape, phi), t.args(), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bands_and_threads_agree_with_reference(threads):
    """Row bands and parity phases of the backward: results must not depend on the thread count."""
    # Output rows are cut into bands of up to 32 rows (fewer when there are few tasks a thread):
    # 100 rows give several bands of each parity at every thread count.
    shape = Shape(B=3, C=10, H=100, W=13, k=7, m=4, stride=1)
    t = make_inputs(shape, dtype=torch.float64, seed=3, requires_grad=True)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = _op(shape, "sqdiff")(*t)
        got = torch.autograd.grad(y, t.args(), grad)
    finally:
        torch.set_num_threads(before)
    y_ref = _op(shape, "sqdiff", "reference")(*t)
    expected = torch.autograd.grad(y_ref, t.args(), grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_absdiff_gradient_at_tie_follows_torch_sign():
    """Where q == k, d|q - k| / dq is torch's sign(0) = 0, as in the reference's autograd."""
    shape = Shape(B=1, C=2, H=5, W=5, k=3, m=1, stride=1)
    t = make_inputs(shape, dtype=torch.float64, seed=5)
    t.key[:] = 0.5
    t.query[:] = 0.5  # every logit of every neighbour is a tie
    grads = {}
    for impl in ("fused_cpu", "reference"):
        leaves = t.map(lambda v: v.clone().requires_grad_(True))
        local_relation(*leaves, kernel_size=3, phi="absdiff", impl=impl).sum().backward()
        grads[impl] = {n: v.grad for n, v in leaves.items()}
    for name in ("query", "key"):
        torch.testing.assert_close(grads["fused_cpu"][name], grads["reference"][name])


def test_torch_compile_inductor_around_the_op():
    """Inductor generates C++ for the code around the op (the contract is in test_custom_ops)."""
    shape = Shape(B=1, C=4, H=6, W=5, k=3, m=2, stride=1)
    t = make_inputs(shape, seed=2)
    f = _op(shape, "sqdiff")
    expected = f(*t)
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("torch.compile's inductor needs a C++ compiler for CPU code; none found")
    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True, backend="inductor")(*t)
    torch.testing.assert_close(got, expected)


def _bytes_allocated(fn) -> int:
    """Total bytes the CPU allocator hands out during ``fn()`` (an upper bound on its peak)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    return sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)


def test_forward_allocates_its_output_and_two_statistics_per_pixel_only():
    """The fused forward's only tensor allocations are the output and the softmax's shift and
    1 / sum per output pixel and group (B*G*Ho*Wo each, kept for the backward); its per-thread
    scratch of k*k*V + (m+1) * rows * (W+2r) values lives outside the allocator, O(one band)."""
    shape = Shape(B=2, C=32, H=24, W=24, k=7, m=8, stride=1)
    t = make_inputs(shape)
    out_bytes = shape.B * shape.C * shape.Ho * shape.Wo * 4
    stats_bytes = 2 * shape.B * shape.G * shape.Ho * shape.Wo * 4
    buffer_bytes = shape.k**2 * out_bytes  # what an unfold of the values alone holds
    with torch.no_grad():
        fused = _bytes_allocated(lambda: _op(shape, "sqdiff")(*t))
        unfold = _bytes_allocated(lambda: _op(shape, "sqdiff", "unfold")(*t))
    assert unfold >= buffer_bytes  # the probe does see k*k-sized buffers
    assert out_bytes + stats_bytes <= fused <= 1.05 * (out_bytes + stats_bytes)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("phi", ["sqdiff", "absdiff"])
def test_softmax_shift_falls_back_to_the_maximum_when_the_prior_bound_underflows(phi, dtype):
    """For phi <= 0 the kernels shift the softmax by the prior's largest value, not by the
    logits' maximum; where every logit lies far below it (|q - k| ~ 40 here: exp underflows)
    the block is recomputed with the maximum. Outputs and gradients still match the reference."""
    shape = Shape(B=1, C=8, H=9, W=10, k=3, m=4, stride=1)
    t = make_inputs(shape, dtype=torch.float64, seed=8)
    t.query[:, 0] += 40.0  # group 0: every logit about -1600 (sqdiff) or -40 (absdiff) ...
    t.query[:, 1, :4] += 40.0  # ... group 1: only its top rows, next to ordinary ones
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    results = {}
    for impl, dt in (("fused_cpu", dtype), ("reference", torch.float64)):
        leaves = t.map(lambda v, dt=dt: v.to(dt).clone().requires_grad_(True))
        y = _op(shape, phi, impl)(*leaves)
        results[impl] = (y, *torch.autograd.grad(y, leaves.args(), grad.to(dt)))
    tol = {torch.float64: 1e-10, torch.float32: 2e-3}[dtype]  # float32: |q - k| ~ 40 in logits
    for got, expected in zip(results["fused_cpu"], results["reference"], strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * expected.abs().max().item())


def test_float32_weights_are_the_softmax_to_a_few_ulp():
    """The float32 kernels' polynomial exp, seen through the weights themselves: x one-hot, so
    that channel ``n`` of each group is the weight of neighbour ``n`` at the centre pixel, and the
    logits the prior's (query = key = 0), spread over [-80, 0] with the largest at 0. Each weight
    is then one exp, a sum and a product: within 6e-7 (5 eps) of the float64 softmax, relative.
    (A degree-5 Taylor exp, error 2.4e-6, fails it.)"""
    k, G = 7, 16
    kk = k * k
    gen = torch.Generator().manual_seed(5)
    prior = -80.0 * torch.rand(G, k, k, generator=gen, dtype=torch.float64)
    prior.view(G, kk)[torch.arange(G), torch.randint(kk, (G,), generator=gen)] = 0.0  # each max 0
    prior = prior.float().double()  # logits that float32 holds exactly
    x = torch.zeros(1, G * kk, k, k, dtype=torch.float64)  # channel g*kk + n: 1 at pixel n
    x.view(G, kk, kk)[:, torch.arange(kk), torch.arange(kk)] = 1.0
    zeros = torch.zeros(1, G, k, k, dtype=torch.float64)
    weights = {}
    for impl, dt in (("fused_cpu", torch.float32), ("reference", torch.float64)):
        y = local_relation(x.to(dt), zeros.to(dt), zeros.to(dt), prior.to(dt), kernel_size=k,
                           stride=1, impl=impl)
        weights[impl] = y[0, :, k // 2, k // 2].double().view(G, kk)  # the centre's k*k weights
    expected = torch.softmax(prior.view(G, kk), dim=1)
    torch.testing.assert_close(weights["reference"], expected, rtol=1e-12, atol=0)
    kept = expected > 1e-30  # (weights below float32's normal range are flushed to 0)
    error = ((weights["fused_cpu"] - expected).abs() / expected)[kept]
    assert kept.sum() > G * kk // 2 and error.max() < 6e-7, error.max()


def _centre_weights(prior: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weights of the centre pixel's k*k neighbours per group, read through a one-hot x
    (channel g*kk + n is 1 at pixel n), query = key = 0: the logits are the prior's."""
    G, k, _ = prior.shape
    kk = k * k
    x = torch.zeros(1, G * kk, k, k, dtype=dtype)
    x.view(G, kk, kk)[:, torch.arange(kk), torch.arange(kk)] = 1.0
    zeros = torch.zeros(1, G, k, k, dtype=dtype)
    y = local_relation(x, zeros, zeros, prior.to(dtype), kernel_size=k, stride=1, impl="fused_cpu")
    return y[0, :, k // 2, k // 2].view(G, kk)


def test_float32_weights_below_the_exp_floor_are_zero_not_subnormal():
    """Weights whose logit lies 87 or more below the group's largest are flushed to exactly 0
    (no subnormal reaches the multiply-adds, which some CPUs run slowly on them); those just
    above it keep their value. Logits -86 and -90 below a 0 (exp: 4.5e-38, normal, and 8.2e-40,
    subnormal in float32)."""
    prior = torch.full((2, 3, 3), -200.0)
    prior[:, 1, 1] = 0.0
    prior[0, 0, 0], prior[1, 0, 0] = -86.0, -90.0
    w = _centre_weights(prior, torch.float32)
    expected_86 = torch.exp(torch.tensor(-86.0, dtype=torch.float64))
    assert abs(w[0, 0].item() / expected_86.item() - 1) < 1e-5
    assert w[1, 0].item() == 0.0
    assert w[:, 1:4].eq(0).all() and w[:, 5:].eq(0).all()  # the -200s
    assert w[:, 4].eq(1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("phi", PHIS)
def test_a_nan_query_makes_its_own_pixel_nan_and_no_other(phi, dtype):
    """A NaN logit is not a weight of 0: the pixel whose query is NaN gets NaN in its group's
    channels, as the reference gives, and every other output stays finite."""
    shape = Shape(B=1, C=8, H=6, W=7, k=3, m=4, stride=1)
    t = make_inputs(shape, dtype=dtype, seed=3)
    t.query[0, 1, 2, 3] = float("nan")
    ys = {impl: _op(shape, phi, impl)(t.x, t.query, t.key, t.prior)
          for impl in ("fused_cpu", "reference")}
    nan = torch.zeros_like(ys["reference"], dtype=torch.bool)
    nan[0, 4:8, 2, 3] = True
    for impl, y in ys.items():
        assert torch.equal(torch.isnan(y), nan), impl


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


@pytest.mark.parametrize("shape", [
    Shape(B=2, C=9, H=11, W=10, k=5, m=3, stride=1),
    Shape(B=1, C=12, H=13, W=9, k=3, m=10, stride=2),  # channels beyond the register block
    Shape(B=2, C=16, H=40, W=7, k=7, m=8, stride=1),   # several bands of each parity
], ids=Shape.label)
def test_channels_last_in_place_matches_reference(shape):
    """channels_last x and grad_y are read (and y, grad_x written) pixel by pixel through their
    strides; values and gradients equal the reference's, and y and grad_x stay channels_last."""
    t = make_inputs(shape, dtype=torch.float64, seed=6)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    results = {}
    for impl, fmt in (("fused_cpu", torch.channels_last), ("reference", torch.contiguous_format)):
        leaves = t.replace(x=t.x.contiguous(memory_format=fmt)).map(
            lambda v: v.detach().clone(memory_format=torch.preserve_format).requires_grad_(True))
        y = _op(shape, "sqdiff", impl)(*leaves)
        results[impl] = (y, *torch.autograd.grad(y, leaves.args(), grad.contiguous(memory_format=fmt)))
    y, gx = results["fused_cpu"][:2]
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    for got, expected in zip(results["fused_cpu"], results["reference"], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


CHUNK_CASES = [
    Shape(B=2, C=46, H=30, W=13, k=5, m=8, stride=1),   # chunks of 4 groups and of 2, the last 6 wide
    Shape(B=2, C=46, H=31, W=12, k=7, m=8, stride=2),   # the same at stride 2
    Shape(B=1, C=58, H=18, W=9, k=3, m=16, stride=1),   # 2 groups a chunk (4 groups of 15, 13)
    Shape(B=1, C=30, H=9, W=8, k=3, m=10, stride=2),    # 3 groups a chunk; the last has 10
]


def _channels_last_against_reference(shape: Shape, x: torch.Tensor, threads: int):
    """(fused_cpu with channels_last x, reference): y and the four gradients of each."""
    t = make_inputs(shape, dtype=torch.float64, seed=12).replace(x=x)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(13))
    results = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for impl, fmt in (("fused_cpu", torch.channels_last), ("reference", torch.contiguous_format)):
            leaves = t.replace(x=t.x.contiguous(memory_format=fmt)).map(
                lambda v: v.detach().clone(memory_format=torch.preserve_format).requires_grad_(True))
            y = _op(shape, "mult", impl)(*leaves)
            results[impl] = (y, *torch.autograd.grad(y, leaves.args(), grad.contiguous(memory_format=fmt)))
    finally:
        torch.set_num_threads(before)
    return results["fused_cpu"], results["reference"]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape", CHUNK_CASES, ids=Shape.label)
def test_channels_last_group_chunks_match_reference(shape, threads):
    """channels_last with m >= 8: a chunk of groups shares one copy of the band's x rows, made by
    its first task and reused by the others (on any thread: 3 threads cut the tasks mid-chunk);
    values and every gradient match the float64 reference."""
    x = make_inputs(shape, dtype=torch.float64, seed=12).x
    got, expected = _channels_last_against_reference(shape, x, threads)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9 * e.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_channels_last_chunks_cut_between_threads_in_both_phases(dtype):
    """4 threads on 6 groups (chunks of groups 0-3 and 4-5), 5 bands of 8 rows, 3 tasks of each
    parity's bands per group: each thread's range of tasks starts or ends inside a chunk, in the
    storing (even) phase and in the adding (odd) one, so each part of a chunk copies x and stores
    its groups' grad_x on its own. float32 too: its chunks are rounded to whole cache lines."""
    shape = Shape(B=1, C=46, H=40, W=13, k=5, m=8, stride=1)
    x = make_inputs(shape, dtype=torch.float64, seed=12).x
    if dtype == torch.float64:
        got, expected = _channels_last_against_reference(shape, x, threads=4)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9 * e.abs().max().item())
        return
    t = make_inputs(shape, dtype=torch.float64, seed=12)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    leaves = t.map(lambda v: v.clone().requires_grad_(True))
    y = _op(shape, "sqdiff", "reference")(*leaves.args())
    expected = (y, *torch.autograd.grad(y, leaves.args(), grad))
    f32 = t.map(lambda v: v.float())
    ext = fused_cpu.extension()
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        x32 = f32.x.contiguous(memory_format=torch.channels_last)
        y32, stats = ext.forward(x32, f32.query, f32.key, f32.prior, shape.k, shape.stride, 0)
        grads = ext.backward(grad.float().contiguous(memory_format=torch.channels_last), x32,
                             f32.query, f32.key, f32.prior, stats, shape.k, shape.stride, 0)
    finally:
        torch.set_num_threads(before)
    for g, e in zip((y32, *grads), expected, strict=True):
        torch.testing.assert_close(g.double(), e.detach(), rtol=1e-4, atol=1e-4 * e.abs().max().item())


@pytest.mark.parametrize("shape", [
    Shape(B=2, C=40, H=20, W=37, k=7, m=8, stride=2),  # odd r: blocks start on phase 1; 8-wide chunk
    Shape(B=1, C=32, H=18, W=34, k=5, m=8, stride=2),  # even r: blocks start on phase 0
    Shape(B=2, C=40, H=24, W=35, k=7, m=8, stride=1),
    Shape(B=1, C=48, H=10, W=33, k=3, m=16, stride=1),  # chunks of 32 and 16 channels
], ids=Shape.label)
def test_channels_last_float32_grad_x_in_blocks_of_16_pixels_and_channels(shape):
    """A float32 channels_last grad_x larger than the last-level cache (here: any, by
    set_stream_min_bytes(0)) is stored 16 columns x 16 channels at a time where the CPU has
    AVX-512 where a chunk's channels come in whole 16s (a register transpose; at stride 2 each
    channel's columns interleaved from the two phases; stored rows non-temporal), the other
    columns and chunks element by element, rows stored and rows added: every gradient matches the
    float64 reference."""
    ext = fused_cpu.extension()
    assert ext.stream_min_bytes() > 0  # the last-level cache's size by default
    before = ext.stream_min_bytes()
    ext.set_stream_min_bytes(0)
    try:
        _check_float32_channels_last(shape, ext)
    finally:
        ext.set_stream_min_bytes(before)


def _reference_run(shape: Shape, seed: int = 21):
    """``(inputs, grad_y, (y, grad_x, grad_query, grad_key, grad_prior))``: float64 inputs, an
    incoming gradient, and the reference's output and gradients (sqdiff)."""
    t = make_inputs(shape, dtype=torch.float64, seed=seed)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed + 1))
    leaves = t.map(lambda v: v.clone().requires_grad_(True))
    y = _op(shape, "sqdiff", "reference")(*leaves.args())
    return t, grad, (y, *torch.autograd.grad(y, leaves.args(), grad))


def _check_float32_channels_last(shape: Shape, ext) -> None:
    t, grad, expected = _reference_run(shape)
    f32 = t.map(lambda v: v.float())
    x32 = f32.x.contiguous(memory_format=torch.channels_last)
    y32, stats = ext.forward(x32, f32.query, f32.key, f32.prior, shape.k, shape.stride, 0)
    grads = ext.backward(grad.float().contiguous(memory_format=torch.channels_last), x32,
                         f32.query, f32.key, f32.prior, stats, shape.k, shape.stride, 0)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    for g, e in zip((y32, *grads), expected, strict=True):
        torch.testing.assert_close(g.double(), e.detach(), rtol=1e-4, atol=1e-4 * e.abs().max().item())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape", CHUNK_CASES[:2], ids=Shape.label)
def test_channels_last_narrow_chunk_reads_no_stale_x(shape, threads):
    """C=46, m=8: chunks of groups 0-3 and 4-5, the last group 6 channels wide. The second chunk
    copies 14 channels into the scratch where the first left 32; its last group's register passes
    read 8 slots, 2 past its channels, which must read 0 and not the first chunk's channels 14-15.
    Those hold inf here: stale, they would make group 5's gradients NaN (inf * a zero grad_y).
    Group 1 (channels 8-15) is inf-tainted in both implementations and left out."""
    x = make_inputs(shape, dtype=torch.float64, seed=12).x.clone()
    x[:, 12:16] = float("inf")
    got, expected = _channels_last_against_reference(shape, x, threads)
    keep_c = [c for c in range(shape.C) if not 12 <= c < 16]
    keep_g = [g for g in range(shape.G) if g != 1]
    y, gx, gq, gk, gp = got
    y_r, gx_r, gq_r, gk_r, gp_r = expected
    assert torch.isfinite(gq[:, 5]).all() and torch.isfinite(gk[:, 5]).all()
    pairs = [(y[:, keep_c], y_r[:, keep_c]), (gx, gx_r), (gq[:, keep_g], gq_r[:, keep_g]),
             (gk[:, keep_g], gk_r[:, keep_g]), (gp[keep_g], gp_r[keep_g])]
    for g, e in pairs:
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9 * e.abs().max().item())


@pytest.mark.parametrize("shape", [
    Shape(B=2, C=16, H=40, W=21, k=7, m=8, stride=1),  # whole blocks and a tail
    Shape(B=2, C=24, H=41, W=23, k=7, m=8, stride=2),  # the stem's stride, odd r, 2 bands each
    Shape(B=1, C=16, H=19, W=16, k=5, m=8, stride=2),  # even r
], ids=Shape.label)
def test_channels_last_float32_matches_reference_and_nchw(shape):
    """float32 channels_last (the other channels_last tests run float64): rows longer than a
    vector block with a tail, strides 1 and 2 (the stride-2 phases joined back pixel by pixel),
    several bands of each parity; y and every gradient match the float64 reference and the NCHW
    run's (up to rounding: the shared rows' sums)."""
    t = make_inputs(shape, dtype=torch.float64, seed=9)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    leaves = t.map(lambda v: v.clone().requires_grad_(True))
    y = _op(shape, "sqdiff", "reference")(*leaves.args())
    expected = torch.autograd.grad(y, leaves.args(), grad)
    ext = fused_cpu.extension()
    f32 = t.map(lambda v: v.float())
    by_format = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = f32.x.contiguous(memory_format=fmt)
        y32, stats = ext.forward(x, f32.query, f32.key, f32.prior, shape.k, shape.stride, 0)
        torch.testing.assert_close(y32.double(), y.detach(), rtol=1e-4, atol=1e-4)
        by_format[fmt] = ext.backward(grad.float().contiguous(memory_format=fmt), x, f32.query,
                                      f32.key, f32.prior, stats, shape.k, shape.stride, 0)
    assert by_format[torch.channels_last][0].is_contiguous(memory_format=torch.channels_last)
    for got, nchw, e in zip(by_format[torch.channels_last], by_format[torch.contiguous_format],
                            expected, strict=True):
        torch.testing.assert_close(got.double(), e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
        torch.testing.assert_close(got, nchw, rtol=1e-6, atol=1e-6 * nchw.abs().max().item())


def _laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` (``(B, G, h, w)``) with the same values in ``layout``: ``split`` and ``split-nhwc``
    the second half of a ``(B, 2G, h, w)`` tensor (NCHW, channels_last), as the stride-1
    projections hand key and query over; ``nhwc`` channels_last; ``transposed`` rows of stride 1
    along h (w stride h)."""
    B, G, h, w = t.shape
    if layout in ("split", "split-nhwc"):
        fmt = torch.channels_last if layout == "split-nhwc" else torch.contiguous_format
        both = torch.full((B, 2 * G, h, w), float("nan"), dtype=t.dtype).contiguous(memory_format=fmt)
        both[:, G:] = t
        return both[:, G:]
    if layout == "nhwc":
        return t.contiguous(memory_format=torch.channels_last)
    return t.transpose(2, 3).contiguous().transpose(2, 3)  # "transposed"


KEY_QUERY_LAYOUTS = ("split", "split-nhwc", "nhwc", "transposed")


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("layout", KEY_QUERY_LAYOUTS)
@pytest.mark.parametrize("shape", [
    Shape(B=2, C=9, H=11, W=10, k=5, m=3, stride=1),
    Shape(B=2, C=46, H=31, W=12, k=7, m=8, stride=2),   # group chunks in channels_last, odd r
    Shape(B=1, C=12, H=13, W=9, k=3, m=10, stride=3),   # channels beyond the register block
    Shape(B=2, C=16, H=40, W=7, k=7, m=8, stride=1),    # several bands of each parity
], ids=Shape.label)
def test_key_and_query_are_read_through_their_strides(shape, layout, fmt, monkeypatch):
    """key and query reach the kernels as they are (no copy: the very tensors), in every layout
    the projections make and an odd one; values and all four gradients equal the float64
    reference's, and the gradients of key and query come contiguous."""
    t, grad, expected = _reference_run(shape)

    seen = []
    ext = fused_cpu.extension()

    class Spy:  # the extension, noting which tensors its kernels get
        def forward(self, x, query, key, *rest):
            seen.append((query, key))
            return ext.forward(x, query, key, *rest)

        def backward(self, grad_y, x, query, key, *rest):
            seen.append((query, key))
            return ext.backward(grad_y, x, query, key, *rest)

    monkeypatch.setattr(fused_cpu, "extension", Spy)
    strided = t.replace(x=t.x.contiguous(memory_format=fmt), query=_laid_out(t.query, layout),
                        key=_laid_out(t.key, layout))
    ins = strided.map(lambda v: v.detach().requires_grad_(True))
    y = _op(shape, "sqdiff")(*ins.args())
    got = (y, *torch.autograd.grad(y, ins.args(), grad.contiguous(memory_format=fmt)))
    assert len(seen) == 2
    for query, key in seen:
        assert query is ins.query and key is ins.key
    assert got[2].is_contiguous() and got[3].is_contiguous()  # grad_query, grad_key
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_key_and_query_of_the_wrong_shape_are_refused():
    """Read through strides, a key or query of the wrong size would be read out of bounds: the
    kernels refuse it, naming which."""
    shape = Shape(B=1, C=4, H=6, W=6, k=3, m=2, stride=2)
    t = make_inputs(shape, dtype=torch.float64, seed=3)
    ext = fused_cpu.extension()
    with pytest.raises(RuntimeError, match="key must be"):
        ext.forward(t.x, t.query, t.key[:, :, :5], t.prior, 3, 2, 0)
    with pytest.raises(RuntimeError, match="query must be"):
        ext.forward(t.x, t.query[:, :, :, :2], t.key, t.prior, 3, 2, 0)
    with pytest.raises(RuntimeError, match="between 1 and C"):
        ext.forward(t.x, t.query[:, :0], t.key[:, :0], t.prior[:0], 3, 2, 0)
    with pytest.raises(RuntimeError, match="prior must be"):
        ext.forward(t.x, t.query, t.key, t.prior[:, :2, :2].contiguous(), 3, 2, 0)


@pytest.mark.parametrize("stride", [1, 2])
def test_expanded_key_and_query_give_what_their_copies_give(stride):
    """Zero strides (one image's key and query for the whole batch) are read like any others:
    the same output and gradients, bit for bit, as from contiguous copies."""
    shape = Shape(B=3, C=8, H=9, W=7, k=3, m=4, stride=stride)
    t = make_inputs(shape, dtype=torch.float64, seed=31)
    key, query = t.key[:1].expand_as(t.key), t.query[:1].expand_as(t.query)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    ext = fused_cpu.extension()
    runs = []
    for q, k in ((query, key), (query.contiguous(), key.contiguous())):
        y, stats = ext.forward(t.x, q, k, t.prior, shape.k, stride, 0)
        runs.append((y, *ext.backward(grad, t.x, q, k, t.prior, stats, shape.k, stride, 0)))
    for got, want in zip(*runs, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", [
    Shape(B=2, C=16, H=41, W=23, k=7, m=8, stride=2),  # the stem's case: several bands, odd H
    Shape(B=1, C=6, H=20, W=17, k=5, m=3, stride=3),   # s = r + 1: every row still covered
    Shape(B=1, C=6, H=21, W=17, k=3, m=3, stride=3),   # s > r + 1: row 20 no band touches
], ids=Shape.label)
def test_strided_backward_writes_every_gradient_element(shape, fmt):
    """The backward allocates grad_x and grad_key without a zero fill wherever the bands cover
    every input row: with the allocator handing back memory full of NaN (a freed tensor of the
    same size), the gradients still equal the reference's."""
    t = make_inputs(shape, dtype=torch.float64, seed=8)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    x = t.x.contiguous(memory_format=fmt)
    _, stats = fused_cpu.extension().forward(x, t.query, t.key, t.prior, shape.k, shape.stride, 0)
    leaves = t.map(lambda v: v.detach().clone().requires_grad_(True))
    y = _op(shape, "sqdiff", "reference")(*leaves.args())
    expected = torch.autograd.grad(y, leaves.args(), grad)
    for _ in range(3):
        junk = [torch.full_like(x, float("nan")), torch.full_like(t.key, float("nan"))]
        del junk  # their memory is what the next allocations of these sizes are likely to get
        got = fused_cpu.extension().backward(grad.contiguous(memory_format=fmt), x, t.query,
                                             t.key, t.prior, stats, shape.k, shape.stride, 0)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [
    Shape(B=2, C=16, H=9, W=8, k=7, m=8, stride=1),
    Shape(B=2, C=16, H=12, W=11, k=7, m=8, stride=2),
], ids=Shape.label)
def test_the_stats_get_no_gradient_of_zeros(shape):
    """Autograd hands the backward no gradient for the stats (a non-differentiable output): by
    default it would fill a (2, B, G, Ho, Wo) tensor with zeros at every backward; the gradients
    are the reference's all the same."""
    t = make_inputs(shape, dtype=torch.float64, seed=3)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo, dtype=torch.float64)
    stats_shape = [2, shape.B, shape.G, shape.Ho, shape.Wo]
    grads = {}
    for impl in ("fused_cpu", "reference"):
        leaves = t.map(lambda v: v.detach().clone().requires_grad_(True)).args()
        y = _op(shape, "sqdiff", impl)(*leaves)
        with torch.autograd.profiler.profile(record_shapes=True) as prof:
            grads[impl] = torch.autograd.grad(y, leaves, grad)
        if impl == "fused_cpu":
            filled = [e.key for e in prof.key_averages(group_by_input_shape=True)
                      if e.key in ("aten::zeros", "aten::zero_", "aten::fill_", "aten::zeros_like")
                      and stats_shape in e.input_shapes]
            assert filled == [], filled
            assert any(e.key == "aten::empty_like" for e in prof.key_averages()), \
                "the profiler saw none of the backward's ops"
    for got, expected in zip(grads["fused_cpu"], grads["reference"], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


# 8 x 1024 x 1024 float32: a grad_x of exactly 32 MiB, the smallest the backward keeps.
KEPT = Shape(B=1, C=8, H=1024, W=1024, k=3, m=8, stride=1)
KEPT_BYTES = KEPT.B * KEPT.C * KEPT.H * KEPT.W * 4


def _kept_backward(shape: Shape, t, grad, fmt=torch.contiguous_format):
    x = t.x.contiguous(memory_format=fmt)
    _, stats = fused_cpu.extension().forward(x, t.query, t.key, t.prior, shape.k, shape.stride, 0)
    return fused_cpu.extension().backward(grad.contiguous(memory_format=fmt), x, t.query, t.key,
                                          t.prior, stats, shape.k, shape.stride, 0)


@pytest.fixture
def kept():
    """Inputs and grad_y of KEPT; no kept block before or after the test."""
    assert fused_cpu.extension().kept_min_bytes == KEPT_BYTES
    fused_cpu.release_kept()
    yield make_inputs(KEPT, seed=4), torch.randn(KEPT.B, KEPT.C, KEPT.Ho, KEPT.Wo)
    fused_cpu.release_kept()
    assert fused_cpu.kept_bytes() == 0


def test_large_grad_x_reuses_a_released_block_and_never_one_in_use(kept):
    t, grad = kept
    first = _kept_backward(KEPT, t, grad)[0]
    held = first.clone()
    second = _kept_backward(KEPT, t, grad)[0]  # `first` is still in use: a block of its own
    assert second.data_ptr() != first.data_ptr()
    assert torch.equal(first, held) and torch.equal(second, held)
    address = first.data_ptr()
    del first
    assert fused_cpu.kept_bytes() == KEPT_BYTES
    third = _kept_backward(KEPT, t, grad)[0]
    assert third.data_ptr() == address and fused_cpu.kept_bytes() == 0
    assert torch.equal(third, held)


def test_only_the_most_recent_blocks_are_kept(kept):
    t, grad = kept
    keep = fused_cpu.extension().kept_blocks
    grads = [_kept_backward(KEPT, t, grad)[0] for _ in range(keep + 1)]
    addresses = [g.data_ptr() for g in grads]
    while grads:  # given back first to last: the first is freed
        del grads[0]
    assert fused_cpu.kept_bytes() == keep * KEPT_BYTES
    again = [_kept_backward(KEPT, t, grad)[0] for _ in range(keep)]
    assert {g.data_ptr() for g in again} == set(addresses[1:])


def test_a_kept_gradient_resizes_like_any_tensor(kept):
    t, grad = kept
    g = _kept_backward(KEPT, t, grad)[0]
    values = g.flatten()[:4].clone()
    g.resize_(2 * g.numel())  # a larger block from the same allocator, the values copied
    assert g.numel() == 2 * KEPT.C * KEPT.H * KEPT.W and torch.equal(g[:4], values)
    assert fused_cpu.kept_bytes() == KEPT_BYTES  # the old block came back
    del g  # and the one of twice its size
    assert fused_cpu.kept_bytes() == 3 * KEPT_BYTES


def test_kept_bytes_and_release_build_nothing(monkeypatch):
    monkeypatch.setattr(fused_cpu.extension, "cache_info", lambda: type("I", (), {"currsize": 0}))
    monkeypatch.setattr(fused_cpu.buildcache, "load", lambda *a, **k: pytest.fail("built"))
    assert fused_cpu.kept_bytes() == 0
    fused_cpu.release_kept()


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("stride", [1, 4], ids=["rows-covered", "zero-filled"])
def test_a_kept_block_full_of_nan_gives_the_fresh_memory_gradients(stride, fmt, kept):
    """A kept block holds the last gradient's values: the backward overwrites every element, or
    zero-fills it first where the stride skips input rows (k = 3, s = 4)."""
    shape = dataclasses.replace(KEPT, stride=stride)
    t = make_inputs(shape, seed=6)
    grad = torch.randn(shape.B, shape.C, shape.Ho, shape.Wo)
    fresh = _kept_backward(shape, t, grad, fmt)[0].clone()
    junk = _kept_backward(shape, t, grad, fmt)[0]
    junk.fill_(float("nan"))
    address = junk.data_ptr()
    del junk
    got = _kept_backward(shape, t, grad, fmt)[0]
    assert got.data_ptr() == address
    assert got.stride() == fresh.stride() == t.x.contiguous(memory_format=fmt).stride()
    assert torch.equal(got, fresh)


def test_memory_peaks_count_a_kept_block_once_like_a_fresh_one(kept):
    """The profiler, which gives the suite's CPU memory column, sees a reused block as one
    allocation of grad_x's size, exactly as it sees a fresh one."""
    t, grad = kept
    x = t.x
    _, stats = fused_cpu.extension().forward(x, t.query, t.key, t.prior, KEPT.k, KEPT.stride, 0)

    def backward():
        return fused_cpu.extension().backward(grad, x, t.query, t.key, t.prior, stats, KEPT.k,
                                              KEPT.stride, 0)

    fresh = peak_extra_bytes(backward, "cpu")
    assert fused_cpu.kept_bytes() == KEPT_BYTES  # the block came back with the gradients
    reused = peak_extra_bytes(backward, "cpu")
    assert fresh >= KEPT_BYTES and reused == fresh


def _cpu_flags() -> set[str] | None:
    """The first ``flags`` line of /proc/cpuinfo, or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads an x86-64 CPU's flags")
def test_the_register_blocks_fit_this_cpus_vector_registers():
    """Built with -march=native: blocks of 16 float columns and 4 channels at once in the all-rows
    gather where the CPU has AVX-512 (32 registers of 16 floats); with AVX2 only (16 registers of
    8), blocks of 8 and as many channels as keep k x channels accumulators in the registers. 16
    columns there had every pass spill its vectors to the stack (3-6x slower forwards on an AMD
    EPYC without AVX-512)."""
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("/proc/cpuinfo cannot be read here")
    ext = fused_cpu.extension()
    gather = {k: ext.gather_channels(k) for k in (3, 5, 7)}
    if "avx512f" in flags:
        assert (ext.wide_block, ext.vector_registers, gather) == (16, 32, {3: 4, 5: 4, 7: 4})
    elif "avx2" in flags:
        assert (ext.wide_block, ext.vector_registers, gather) == (8, 16, {3: 3, 5: 2, 7: 1})
    else:  # not modelled: as every target was before
        assert (ext.wide_block, ext.vector_registers, gather) == (16, 0, {3: 4, 5: 4, 7: 4})
    with pytest.raises(RuntimeError, match="k must be 3, 5 or 7, got 4"):
        ext.gather_channels(4)
