"""The fused CPU implementation: C++ kernels with OpenMP, registered as a PyTorch custom operator.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
The kernels (``csrc/fused_cpu.cpp``) compute logits, prior, border mask, softmax and aggregation
per (batch, group, band of output rows), in parallel over these tasks (ATen's OpenMP pool, so
``torch.set_num_threads`` applies), each weight computed once in registers and used for a block
of channels at once, never in memory as a ``k*k*H*W`` buffer. The forward keeps two numbers per
output pixel and group (the softmax's shift and 1 / sum); the backward recomputes the weights
from them in one pass.

The extension is compiled with ``torch.utils.cpp_extension.load`` on first use (30-60 s on two
cores) into :mod:`lrbench.buildcache`'s folder ``$TORCH_EXTENSIONS_DIR/lrbench/fused_cpu-torch<v>-...``
(default root ``~/.cache/torch_extensions``), one per torch version, compiler and flags, source
content and CPU (it is built with ``-march=native``), shared by every checkout with this source.
Set ``LRBENCH_VERBOSE_BUILD=1`` to see the compiler's command lines.
Importing this module compiles nothing; without a C++ compiler the implementation is listed as
unavailable with the reason.

Large gradients: the backward takes a ``grad_x`` of 32 MiB or more (the stem's) from blocks that
earlier ones released, kept between calls (at most two; the extension's ``kept_min_bytes`` and
``kept_blocks``), instead of fresh pages from the C library every call (25,000 page faults at the
stem, batch 8). Handed-out blocks are counted in measured memory peaks like any tensor;
:func:`kept_bytes` says how much is kept free, :func:`release_kept` frees it.

Custom operators (namespace ``lrbench``):
    ``fused_cpu(x, query, key, prior, kernel_size, stride, phi) -> (y, stats)``: the op,
    differentiable in ``y`` (``stats``: see :func:`fused_cpu_op`).
    ``fused_cpu_backward(grad_y, x, query, key, prior, stats, kernel_size, stride, phi)
    -> (grad_x, grad_query, grad_key, grad_prior)``: its backward.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from lrbench.impls.op_wiring import wire
from torch import Tensor

from lrbench import buildcache
from lrbench.buildcache import ExtensionSpec
from lrbench.registry import Implementation, register

SOURCE = Path(__file__).parent / "csrc" / "fused_cpu.cpp"
PHI_CODES = {"sqdiff": 0, "absdiff": 1, "mult": 2}  # must match enum Phi in the C++ source
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=fast")
SPEC = ExtensionSpec("fused_cpu", SOURCE, cflags=CFLAGS, ldflags=("-fopenmp",))


@functools.cache
def extension():
    """The compiled kernels (built on the first call, then loaded from the build cache).

    Raises:
        RuntimeError: no compiler, the build failed (the message has the compiler's output), or
            another process held the build folder's lock too long (the message names the folder).
    """
    verbose = os.environ.get("LRBENCH_VERBOSE_BUILD", "") not in ("", "0")
    return buildcache.load(SPEC, verbose=verbose)


_REASON_UNKNOWN = object()
_reason: object = _REASON_UNKNOWN  # the probe's answer, once known


def availability() -> str | None:
    """``None`` when the extension builds and loads here, else the reason (first line of the error).

    The answer is kept in a module global, so that torch.compile, tracing ``local_relation``,
    reads a constant instead of tracing the build.
    """
    global _reason
    if _reason is _REASON_UNKNOWN:
        try:
            extension()
            _reason = None
        except Exception as err:  # any build failure means "unavailable", with its reason
            lines = [line for line in str(err).splitlines() if line.strip()]
            first = lines[0] if lines else type(err).__name__
            not_a_build_error = first.startswith(("no C++", "waited"))  # no compiler; lock timeout
            _reason = first if not_a_build_error else f"C++ extension build failed: {first}"
    return _reason


def _loaded():
    """The extension if this process has loaded it, else None (never starts a build)."""
    return extension() if extension.cache_info().currsize else None


def kept_bytes() -> int:
    """Bytes of free gradient blocks the backward keeps for its next large ``grad_x`` (0 while the
    extension is not loaded: no backward has run)."""
    loaded = _loaded()
    return loaded.kept_bytes() if loaded is not None else 0


def release_kept() -> None:
    """Free the gradient blocks kept for the next backward (blocks in use are not touched)."""
    loaded = _loaded()
    if loaded is not None:
        loaded.release_kept()


def _dense(t: Tensor) -> Tensor:
    """``t`` itself when contiguous or channels_last (the kernels read both through strides)."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


@torch.library.custom_op("lrbench::fused_cpu", mutates_args=(), device_types="cpu")
def fused_cpu_op(x: Tensor, query: Tensor, key: Tensor, prior: Tensor, kernel_size: int,
                 stride: int, phi: str) -> tuple[Tensor, Tensor]:
    """The op on CPU tensors (any layout): ``(y, stats)``, ``y`` ``(B, C, Ho, Wo)`` in x's memory
    format when x is channels_last (read and written in place, no layout copy; query and key are
    read through their strides, as the projections hand them over), ``stats``
    ``(2, B, G, Ho, Wo)``: each output pixel's softmax shift (less the largest prior value of its
    group) and 1 / sum, kept for the backward."""
    y, stats = extension().forward(_dense(x), query, key, prior.contiguous(), kernel_size,
                                   stride, PHI_CODES[phi])
    return y, stats


@torch.library.custom_op("lrbench::fused_cpu_backward", mutates_args=(), device_types="cpu")
def fused_cpu_backward_op(grad_y: Tensor, x: Tensor, query: Tensor, key: Tensor, prior: Tensor,
                          stats: Tensor, kernel_size: int, stride: int, phi: str
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(x, query, key, prior)`` of ``sum(grad_y * y)``, from the forward's ``stats``
    (the weights are recomputed from them). ``grad_x`` has x's memory format, the gradients of
    query and key are contiguous."""
    grads = extension().backward(_dense(grad_y), _dense(x), query, key, prior.contiguous(),
                                 stats.contiguous(), kernel_size, stride, PHI_CODES[phi])
    return tuple(grads)


wire(fused_cpu_op, fused_cpu_backward_op, saves="stats", keeps_memory_format=True)


def local_relation_fused_cpu(x, query, key, prior, kernel_size, stride, phi):
    y, _ = torch.ops.lrbench.fused_cpu(x, query, key, prior, kernel_size, stride, phi)
    return y


register(
    Implementation(
        name="fused_cpu",
        fn=local_relation_fused_cpu,
        summary="C++/OpenMP fused kernels, weights computed once in registers, custom op",
        devices=("cpu",),
        dtypes=(torch.float32, torch.float64),
        priority=30,
        # float32: weights from a polynomial exp (relative error < 3e-7, about 2.5 eps) and
        # float32 sums of k*k terms; the suite's limits hold. float64 uses std::exp.
        availability=availability,
        custom_ops=("lrbench::fused_cpu",),
    )
)
