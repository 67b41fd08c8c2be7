"""The local relation op on PyTorch's FlexAttention (``torch.nn.attention.flex_attention``).

A peer, not one of ours: it computes exactly the op of SPEC section 1 (Hu et al., ICCV 2019,
arXiv:1904.11491) with the attention kernel a user would otherwise reach for.

- heads = the ``G`` weight maps; query positions = the ``Ho*Wo`` output pixels (the stride lives
  in the index arithmetic), key positions = the ``H*W`` input pixels;
- query/key head: the scalar query and key of the head, as two channels, so that ``q . k`` is
  ``q * k`` (``mult``: ``(q, 1) . (k, 0)``) or ``q - k`` (``sqdiff``, ``absdiff``:
  ``(q, 1) . (1, -k)``), with ``scale=1.0``; ``score_mod`` then squares or takes ``-|.|`` and
  adds the prior of the (query, key) offset. Padding: none on CPU; on CUDA the Triton kernels
  need head dims of at least 16, so the query/key head is zero-padded from 2 to 16 and the
  values from ``m`` to ``max(16, next power of two)``;
- values = each group's ``m`` channels (``C`` zero-padded to ``G*m``, sliced off afterwards);
- ``mask_mod`` = the in-window rule; out-of-image neighbours are simply not key positions, so
  they are excluded from the softmax as SPEC section 1 requires.

Called eagerly, ``flex_attention`` is PyTorch's unfused fallback (it materialises the scores);
the fused kernel comes from ``torch.compile`` (``lrbench run --compile inductor``). Limits of
this torch: no backward on CPU (inference only); compiled on CPU only float32/float16/bfloat16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lrbench.registry import Implementation, register
from lrbench.spec import OpSpec

CUDA_MIN_HEAD_DIM = 16  # Triton's tl.dot needs at least 16 along the head dims
COMPILED_CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# (H, W, Ho, Wo, k, stride, device) -> BlockMask: the window depends on the shape only.
_BLOCK_MASKS: dict[tuple, object] = {}


def _flex():
    from torch.nn.attention import flex_attention

    return flex_attention


def availability() -> str | None:
    try:
        _flex()
    except ImportError as err:
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention ({err})"
    return None


def head_dims(device: str, m: int) -> tuple[int, int]:
    """``(query/key head dim, value head dim)`` the backend on ``device`` gets."""
    if device == "cuda":
        return CUDA_MIN_HEAD_DIM, max(CUDA_MIN_HEAD_DIM, 1 << (m - 1).bit_length())
    return 2, m


def _window(H: int, W: int, Ho: int, Wo: int, k: int, stride: int):
    """``(offset, inside)``: index functions of (query index, key index) -> neighbour ``n`` and
    whether the key pixel lies in the query's k x k window."""
    r = (k - 1) // 2

    def rows_cols(q_idx, kv_idx):
        dy = kv_idx // W - (q_idx // Wo) * stride + r  # in [0, k) inside the window
        dx = kv_idx % W - (q_idx % Wo) * stride + r
        return dy, dx

    def inside(b, h, q_idx, kv_idx):
        dy, dx = rows_cols(q_idx, kv_idx)
        return (dy >= 0) & (dy < k) & (dx >= 0) & (dx < k)

    def offset(q_idx, kv_idx):
        # score_mod is evaluated on whole blocks before the mask: clamp so indices stay valid.
        dy, dx = rows_cols(q_idx, kv_idx)
        return dy.clamp(0, k - 1) * k + dx.clamp(0, k - 1)  # n = (dy+r)*k + (dx+r)

    return offset, inside


def block_mask(H: int, W: int, Ho: int, Wo: int, k: int, stride: int, device: torch.device):
    """The window's ``BlockMask`` (built once per shape and device; outside any compiled graph:
    :func:`_block_mask_eager`)."""
    key = (H, W, Ho, Wo, k, stride, str(device))
    if key not in _BLOCK_MASKS:
        _, inside = _window(H, W, Ho, Wo, k, stride)
        _BLOCK_MASKS[key] = _flex().create_block_mask(inside, None, None, Ho * Wo, H * W,
                                                      device=device)
    return _BLOCK_MASKS[key]


_EAGER: list = []  # torch.compiler.disable(block_mask), made on first use


def _block_mask_eager():
    """``block_mask`` excluded from any compiled graph. Wrapped on first use, not at import:
    ``torch.compiler.disable`` imports torch._dynamo, which sets environment variables."""
    if not _EAGER:
        _EAGER.append(torch.compiler.disable(block_mask))
    return _EAGER[0]


def _score_mod(phi: str, prior: Tensor, offset):
    """``score`` is ``q*k`` (mult) or ``q-k`` (sqdiff, absdiff); returns ``phi + prior``."""
    G, k, _ = prior.shape
    prior_flat = prior.reshape(G, k * k)  # (G, k*k)

    def mult(score, b, h, q_idx, kv_idx):
        return score + prior_flat[h, offset(q_idx, kv_idx)]

    def sqdiff(score, b, h, q_idx, kv_idx):
        return -(score * score) + prior_flat[h, offset(q_idx, kv_idx)]

    def absdiff(score, b, h, q_idx, kv_idx):
        return -score.abs() + prior_flat[h, offset(q_idx, kv_idx)]

    return {"mult": mult, "sqdiff": sqdiff, "absdiff": absdiff}[phi]


def local_relation_flex(x, query, key, prior, kernel_size, stride, phi):
    B, C, H, W = x.shape
    G = key.shape[1]
    Ho, Wo = query.shape[-2:]
    m = -(-C // G)
    L, S = Ho * Wo, H * W
    E, Ev = head_dims(x.device.type, m)

    q = query.reshape(B, G, L, 1)
    k = key.reshape(B, G, S, 1)
    q2 = torch.cat([q, torch.ones_like(q)], dim=-1)  # (B, G, L, 2)
    if phi == "mult":
        k2 = torch.cat([k, torch.zeros_like(k)], dim=-1)  # (B, G, S, 2): q2 . k2 = q*k
    else:
        k2 = torch.cat([torch.ones_like(k), -k], dim=-1)  # (B, G, S, 2): q2 . k2 = q-k
    q2 = F.pad(q2, (0, E - 2))  # (B, G, L, E)
    k2 = F.pad(k2, (0, E - 2))  # (B, G, S, E)

    v = F.pad(x, (0, 0, 0, 0, 0, G * m - C))  # (B, G*m, H, W)
    v = v.reshape(B, G, m, S).transpose(2, 3)  # (B, G, S, m)
    v = F.pad(v, (0, Ev - m))  # (B, G, S, Ev)

    offset, _ = _window(H, W, Ho, Wo, kernel_size, stride)
    out = _flex().flex_attention(
        q2, k2, v, score_mod=_score_mod(phi, prior, offset),
        block_mask=_block_mask_eager()(H, W, Ho, Wo, kernel_size, stride, x.device), scale=1.0,
    )  # (B, G, L, Ev)
    y = out[..., :m].transpose(2, 3).reshape(B, G * m, Ho, Wo)  # (B, G*m, Ho, Wo)
    return y[:, :C]  # (B, C, Ho, Wo)


def backward_limits(spec: OpSpec) -> list[str]:
    if spec.device == "cpu":
        return [f"FlexAttention has no backward on CPU in torch {torch.__version__} (inference only)"]
    return []


def compile_limits(spec: OpSpec) -> list[str]:
    if spec.device == "cpu" and spec.dtype not in COMPILED_CPU_DTYPES:
        return [f"compiled FlexAttention on CPU takes float32, float16 or bfloat16 only in torch "
                f"{torch.__version__} (got {str(spec.dtype).removeprefix('torch.')})"]
    return []


register(
    Implementation(
        name="flex_attention",
        fn=local_relation_flex,
        summary="peer: torch FlexAttention, heads=G, window mask_mod, phi+prior score_mod (head "
                "dims padded to 16 on CUDA); fused only when compiled (--compile inductor)",
        devices=("cpu", "cuda"),
        dtypes=(torch.float64, torch.float32, torch.float16, torch.bfloat16),
        priority=-10,  # a peer: never picked by impl=None
        availability=availability,
        backward_limits=backward_limits,
        compile_limits=compile_limits,
    )
)
