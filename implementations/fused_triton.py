"""The "CUDA fused" implementation: Triton kernels registered as PyTorch custom operators.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
The kernels (:mod:`lrbench.impls.triton_kernels`) compute logits, prior, border mask, softmax
and aggregation in one pass per (tile of output pixels, group, batch), keeping the k*k weights
on chip; nothing of size k*k*H*W is written to memory. Any odd k and any stride >= 1 run.

Operators (namespace ``lrbench``):

- ``fused_triton(x, query, key, prior, kernel_size, stride, phi) -> y``, differentiable;
- ``fused_triton_backward(grad_y, x, query, key, prior, y, ...) -> (gx, gq, gk, gprior)``: saves
  only the inputs and ``y`` (O(output)); recomputes the per-pixel logsumexp with a stats-only pass
  (``G*k^2*Ho*Wo`` work, 1/m of the aggregation), then the weights from it.

Triton is imported lazily, so this module imports (and registers the operators) without it.
On CPU tensors the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1`` set before
the first import of Triton): that is how the tests check the kernels' logic on machines
without a GPU. Double backward is not supported. grad_key is accumulated with atomic adds, so on
a GPU its float32 summation order (and last bits) may differ from run to run; the other gradients
and the output are deterministic. ``fused_triton_det`` (ops ``lrbench::fused_triton_det``...) is
the same forward with a deterministic backward: grad_key gathered per input pixel by one more
kernel, no atomics; its cost (one more pass over the group's channels, about what grad_x costs)
is unmeasured on a GPU.
"""

from __future__ import annotations

import torch
from lrbench.impls.op_wiring import wire
from torch import Tensor

from lrbench.registry import Implementation, register
from lrbench.spec import OpSpec

HALF = (torch.float16, torch.bfloat16)
# No loosened limits: the suite's gradient limits already grow with the k*k*m terms that
# query's and key's gradients sum (lrbench.accuracy.limits), the reason it once declared twice
# the output's limits for half-precision gradients.
GRID_LIMIT = 65535


def kernels():
    """The Triton kernels module (imports Triton on first use)."""
    from lrbench.impls import triton_kernels

    return triton_kernels


def availability() -> str | None:
    """Why the kernels cannot run on this machine at all (``None``: they can)."""
    try:
        interpreted = kernels().INTERPRETED
    except Exception as err:  # ImportError, or a broken Triton install
        return f"triton cannot be imported: {type(err).__name__}: {err}"
    if torch.cuda.is_available() or interpreted:
        return None
    return ("no CUDA device here; it runs on CPU tensors only under TRITON_INTERPRET=1 "
            "(set before import)")


def _device_reasons(interpreted: bool, spec: OpSpec) -> list[str]:
    if spec.device == "cpu" and not interpreted:
        reason = "runs on CPU tensors only under TRITON_INTERPRET=1 (set before import)"
        if not torch.cuda.is_available():
            reason += "; no CUDA device here"
        return [reason]
    if spec.device == "cpu" and spec.dtype in HALF:
        return [f"{str(spec.dtype).removeprefix('torch.')} is unreliable under Triton's "
                "interpreter; use float32 or float64 on CPU tensors"]
    if spec.device == "cuda" and interpreted:
        return ["TRITON_INTERPRET=1 is set: the kernels are interpreted, on CPU tensors only"]
    return []


def _grid_reasons(spec: OpSpec) -> list[str]:
    # Grid axes 1 and 2 (groups x channel chunks, batch) are limited to 65535 programs on CUDA.
    chunks = -(-spec.m // kernels().block_channels(spec.m))
    sizes = {"B": spec.B, "G * channel chunks": spec.G * chunks}
    return [f"{name} = {size} exceeds the CUDA grid limit of {GRID_LIMIT} programs"
            for name, size in sizes.items() if size > GRID_LIMIT]


def compile_limits(spec: OpSpec) -> list[str]:
    """The custom op compiles on CUDA; Triton's CPU interpreter is plain Python, outside it."""
    if spec.device == "cpu":
        return ["on CPU the kernels run only in Triton's interpreter (TRITON_INTERPRET=1), which "
                "torch.compile cannot compile"]
    return []


def limits(spec: OpSpec) -> list[str]:
    """Reasons this implementation cannot run ``spec`` beyond devices and dtypes."""
    return _device_reasons(kernels().INTERPRETED, spec) + _grid_reasons(spec)


def _define_ops(name: str, deterministic: bool):
    """The op ``lrbench::<name>`` and its backward ``lrbench::<name>_backward``, wired."""

    @torch.library.custom_op(
        f"lrbench::{name}", mutates_args=(),
        schema="(Tensor x, Tensor query, Tensor key, Tensor prior, int kernel_size, int stride, "
               "str phi) -> Tensor",
    )
    def forward_op(x: Tensor, query: Tensor, key: Tensor, prior: Tensor, kernel_size: int,
                   stride: int, phi: str) -> Tensor:
        """The op: ``(B, C, H, W)`` -> ``(B, C, Ho, Wo)`` (see :func:`lrbench.local_relation`)."""
        y, _ = kernels().forward(x, query, key, prior, kernel_size, stride, phi)
        return y

    @torch.library.custom_op(
        f"lrbench::{name}_backward", mutates_args=(),
        schema="(Tensor grad_y, Tensor x, Tensor query, Tensor key, Tensor prior, Tensor y, "
               "int kernel_size, int stride, str phi) -> (Tensor, Tensor, Tensor, Tensor)",
    )
    def backward_op(grad_y: Tensor, x: Tensor, query: Tensor, key: Tensor, prior: Tensor,
                    y: Tensor, kernel_size: int, stride: int, phi: str
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Gradients ``(x, query, key, prior)`` of ``sum(grad_y * y)``; recomputes the weights."""
        return kernels().backward(grad_y, x, query, key, prior, y, kernel_size, stride, phi,
                                  deterministic=deterministic)

    wire(forward_op, backward_op, saves="output")
    return forward_op, backward_op


fused_triton_op, fused_triton_backward_op = _define_ops("fused_triton", deterministic=False)
fused_triton_det_op, fused_triton_det_backward_op = _define_ops("fused_triton_det",
                                                                deterministic=True)


def local_relation_fused_triton(x, query, key, prior, kernel_size, stride, phi):
    return torch.ops.lrbench.fused_triton(x, query, key, prior, kernel_size, stride, phi)


def local_relation_fused_triton_det(x, query, key, prior, kernel_size, stride, phi):
    return torch.ops.lrbench.fused_triton_det(x, query, key, prior, kernel_size, stride, phi)


register(
    Implementation(
        name="fused_triton",
        fn=local_relation_fused_triton,
        summary="Triton fused kernels (the 'CUDA fused' one): on-chip weights, any odd k and "
                "stride, custom op",
        devices=("cuda", "cpu"),
        dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64),
        # On CPU tensors it only runs under the interpreter (tests), far slower than any other
        # implementation: rank it below the reference (priority 0, always usable) so that
        # impl=None never picks it there, while naming it explicitly still works.
        priority={"cuda": 40, "cpu": -1},
        availability=availability,
        limits=limits,
        compile_limits=compile_limits,
        custom_ops=("lrbench::fused_triton",),
    )
)


register(
    Implementation(
        name="fused_triton_det",
        fn=local_relation_fused_triton_det,
        summary="fused_triton with a deterministic backward (grad_key gathered, no atomic adds)",
        devices=("cuda", "cpu"),
        dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64),
        priority={"cuda": 39, "cpu": -1},  # just below fused_triton: chosen only by name
        availability=availability,
        limits=limits,
        custom_ops=("lrbench::fused_triton_det",),
    )
)
