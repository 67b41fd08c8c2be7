"""The machine's limits, measured: peak multiply-add rate (the fastest library GEMM) and memory
bandwidth (a large copy), on one device, dtype and thread count, in bounded time.

They are the two roofs of the roofline model (Williams, Waterman, Patterson, "Roofline: an
insightful visual performance model for multicore architectures", CACM 2009): a kernel of
arithmetic intensity ``I`` (MACs per byte) cannot run faster than
``min(peak_gmacs_per_s, I * peak_gb_per_s)``. "Peak" here is what the libraries reach on this
machine now, not the vendor's figure: the best of the GEMM routes of :data:`ROUTES` (on CPU both
``torch.matmul`` and a 1x1 convolution, see there), and ``Tensor.copy_``. A kernel at 100% matches
the best library GEMM.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Square GEMM sizes: n^3 MACs a call, large enough to leave the caches' best case behind. A route
# too slow for them (half precision on a CPU without its instructions: 0.4 GMAC/s, 10-11 s for the
# four calls of n = 1024 on an AMD EPYC) is measured at the size that fits the budget (fitted_n).
GEMM_N = {"cpu": 1024, "cuda": 4096}
PROBE_N = 256  # the size timed first, to fit n to the budget
# The 1x1 convolution's input (B, C, H, W), channels_last, with C output channels: a
# (B*H*W, C) x (C, C) product of B*H*W*C*C MACs a call (268 M).
CONV_SHAPE = {"cpu": (64, 256, 8, 8)}
# Bytes of the copied buffer (read once, written once a call): beyond any last-level cache.
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}


@dataclass(frozen=True)
class Limits:
    """Measured limits of one device, dtype and thread count.

    Attributes:
        peak_gmacs_per_s: best GEMM rate over the routes, 10^9 multiply-adds per second
            (1 MAC = 2 FLOPs).
        peak_gb_per_s: best copy rate, 10^9 bytes per second (bytes read + bytes written).
        routes: each GEMM route that ran and its best rate, in :data:`ROUTES`' order.
    """

    device: str
    dtype: str
    threads: int
    peak_gmacs_per_s: float
    peak_gb_per_s: float
    routes: tuple[tuple[str, float], ...] = ()  # (route, GMAC/s) of each GEMM route measured

    @property
    def peak_route(self) -> str:
        """The GEMM route whose rate is the peak ("" where none was recorded)."""
        return max(self.routes, key=lambda pair: pair[1])[0] if self.routes else ""

    def as_row(self) -> dict:
        return {"peak_gmacs_per_s": self.peak_gmacs_per_s, "peak_gb_per_s": self.peak_gb_per_s,
                "peak_route": self.peak_route}


def best_seconds(fn: Callable[[], object], sync: Callable[[], None], budget_s: float,
                 min_calls: int = 3) -> float:
    """The fastest call of ``fn`` over at least ``min_calls`` calls and about ``budget_s`` seconds
    (one warm-up call first, untimed)."""
    fn()
    sync()
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def fitted_n(probe_s: float, n_max: int, budget_s: float, probe_n: int = PROBE_N) -> int:
    """The largest ``n_max / 2^j`` (not below ``probe_n``) whose one call, estimated from one call
    of ``probe_n`` taking ``probe_s`` seconds (``n^3`` work), fits in a quarter of ``budget_s``:
    warm-up and three calls then stay near the budget."""
    n = n_max
    while n > probe_n and probe_s * (n / probe_n) ** 3 > budget_s / 4:
        n //= 2
    return max(n, min(probe_n, n_max))


def _square(n: int, device: str, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)  # (n, n)


def gemm_gmacs_per_s(device: str = "cpu", dtype: torch.dtype = torch.float32,
                     budget_s: float = 0.4, n: int | None = None) -> float:
    """Best ``n x n @ n x n`` rate in 10^9 MACs per second (``n^3`` MACs a call). Without ``n``:
    :data:`GEMM_N`'s, or the smaller size :func:`fitted_n` finds from one call of
    :data:`PROBE_N` where that one is too slow for the budget."""
    gen = torch.Generator().manual_seed(0)
    sync = _sync(device)
    if n is None:
        n = GEMM_N.get(device, 1024)
        if n > PROBE_N:
            a = _square(PROBE_N, device, dtype, gen)
            probe_s = best_seconds(lambda: torch.matmul(a, a), sync, 0.0, min_calls=1)
            n = fitted_n(probe_s, n, budget_s)
    a, b = _square(n, device, dtype, gen), _square(n, device, dtype, gen)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = best_seconds(lambda: torch.matmul(a, b, out=out), sync, budget_s)
    return n**3 / seconds / 1e9


def conv_gmacs_per_s(device: str = "cpu", dtype: torch.dtype = torch.float32,
                     budget_s: float = 0.4, shape: tuple[int, int, int, int] | None = None) -> float:
    """Best rate of a 1x1 convolution ``C -> C`` of a channels_last ``(B, C, H, W)`` input, in
    10^9 MACs per second (``B*H*W*C*C`` a call): a GEMM through the convolution library (oneDNN
    on CPU)."""
    B, C, H, W = CONV_SHAPE.get(device, CONV_SHAPE["cpu"]) if shape is None else shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, H, W, generator=gen).to(device=device, dtype=dtype)  # (B, C, H, W)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(C, C, 1, 1, generator=gen).to(device=device, dtype=dtype)  # (C, C, 1, 1)
    seconds = best_seconds(lambda: F.conv2d(x, weight), _sync(device), budget_s)
    return B * H * W * C * C / seconds / 1e9


# The GEMM routes whose best rate is the peak, and the devices each is measured on. On CPU,
# torch.matmul calls the BLAS torch was built with (MKL on x86) and a convolution calls oneDNN,
# and the two need not be equally fast: on an AMD EPYC (2 threads, float32, 2026-12-07) matmul
# reached 105-113 GMAC/s and the 1x1 convolution 249-259 (ResNet-50's 3x3 convolutions 224-244),
# and a matmul-only peak put ResNet-50's forward at 162% of "peak" (docs/benchmarking.md). On
# CUDA, cuBLAS's matmul is the roof.
ROUTES: dict[str, Callable[..., float]] = {"matmul": gemm_gmacs_per_s, "conv1x1": conv_gmacs_per_s}
ROUTE_DEVICES = {"matmul": ("cpu", "cuda"), "conv1x1": ("cpu",)}


def gemm_routes(device: str, dtype: torch.dtype, budget_s: float
                ) -> tuple[tuple[tuple[str, float], ...], dict[str, str]]:
    """``((route, GMAC/s), ...)`` for each route of :data:`ROUTES` on ``device`` that runs for
    ``dtype``, and ``{route: why}`` for each that raised (a library without a kernel for it)."""
    found, failed = [], {}
    for route, rate in ROUTES.items():
        if device not in ROUTE_DEVICES.get(route, ()):
            continue
        try:
            found.append((route, rate(device, dtype, budget_s)))
        except (RuntimeError, NotImplementedError) as err:
            failed[route] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return tuple(found), failed


def copy_gb_per_s(device: str = "cpu", budget_s: float = 0.4, nbytes: int | None = None) -> float:
    """Best ``dst.copy_(src)`` rate in 10^9 bytes per second, counting the bytes read and the
    bytes written (``2 * nbytes`` a call)."""
    nbytes = COPY_BYTES.get(device, COPY_BYTES["cpu"]) if nbytes is None else nbytes
    src = torch.ones(nbytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), _sync(device), budget_s)
    return 2 * src.numel() * 4 / seconds / 1e9


@functools.cache
def measure(device: str = "cpu", dtype: str = "float32", threads: int | None = None,
            budget_s: float = 0.4) -> Limits:
    """The limits of ``device`` for ``dtype`` with ``threads`` intra-op threads (default: torch's
    current count), measured once per process and argument set (about ``budget_s`` seconds per
    GEMM route of the device, and as much for the copy).

    Raises:
        ValueError: unknown dtype name.
        RuntimeError: no GEMM route runs ``dtype`` on ``device`` (each route's reason named).
    """
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"dtype must name a torch dtype (e.g. 'float32'), got {dtype!r}")
    previous = torch.get_num_threads()
    threads = previous if threads is None else threads
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            routes, failed = gemm_routes(device, torch_dtype, budget_s)
            gbs = copy_gb_per_s(device, budget_s)
    finally:
        torch.set_num_threads(previous)
    if not routes:
        raise RuntimeError(f"no GEMM route runs {dtype} on {device}: {failed}")
    return Limits(device=device, dtype=dtype, threads=threads,
                  peak_gmacs_per_s=max(rate for _, rate in routes), peak_gb_per_s=gbs,
                  routes=routes)


def roofs_text(peak_gmacs_per_s: float, peak_gb_per_s: float, route: str = "",
               digits: int = 1) -> str:
    """The two roofs as reports name them: ``GEMM 253.6 GMAC/s (conv1x1), copy 47.0 GB/s``
    (``route``: the GEMM route that gave the peak, left out where unknown)."""
    by = f" ({route})" if route else ""
    return (f"GEMM {peak_gmacs_per_s:.{digits}f} GMAC/s{by}, "
            f"copy {peak_gb_per_s:.{digits}f} GB/s")


def machine_report(devices: list[str], dtypes: list[str], threads: int | None = None) -> str:
    """What ``lrbench machine`` prints: the machine's description, then one line of measured
    limits per device and dtype."""
    from lrbench.bench.measure.machine import load_now, machine_info

    info = machine_info()
    lines = [f"{key}: {value or 'none'}" for key, value in info.items()]
    load = load_now()
    threads = torch.get_num_threads() if threads is None else threads
    lines.append(f"threads: {threads}" + (f" (1-minute load average {load:.1f}; other processes "
                                          "lower what is measured)" if load is not None else ""))
    lines.append("limits (best of repeated calls; GEMM: the fastest route's rate, that route and "
                 "the others' rates in brackets; 1 MAC = 2 FLOPs; copy counts bytes read + "
                 "written):")
    for device in devices:
        for dtype in dtypes:
            try:
                found = measure(device, dtype, threads)
            except Exception as err:  # e.g. a dtype the device's GEMM lacks
                lines.append(f"  {device} {dtype}: not measured ({type(err).__name__}: {err})")
                continue
            others = "; ".join(f"{route} {rate:.1f}" for route, rate in found.routes
                               if route != found.peak_route)
            lines.append(f"  {device} {dtype}: GEMM {found.peak_gmacs_per_s:.1f} GMAC/s "
                         f"({found.peak_route}{'; ' + others if others else ''}), "
                         f"copy {found.peak_gb_per_s:.1f} GB/s, ridge point "
                         f"{found.peak_gmacs_per_s / found.peak_gb_per_s:.2f} MAC/byte")
    return "\n".join(lines)
