"""Triton kernels of the fused local relation op (forward, logsumexp, backward) and their launchers.

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491,
with the conventions of SPEC.md section 1 (masked borders, channel blocks of ``m = ceil(C/G)``).

One program handles one (tile of pixels, group, batch). The k*k logits of a pixel are recomputed
from ``query``, ``key`` and ``prior`` whenever they are needed and never written to memory:

- forward: pass 1 runs an online softmax over the k*k offsets and keeps only a running max and
  sum per pixel (the logsumexp ``lse``); pass 2 walks the offsets again and aggregates the group's
  channels, ``y[c] = sum_n exp(logit_n - lse) * x[c, p_n]``.
- backward, output order: ``dL/dw_n = sum_c gy[c] * x[c, p_n]``, ``delta = sum_c gy[c] * y[c]``
  (= ``sum_n w_n dL/dw_n``), ``dL/dlogit_n = w_n * (dL/dw_n - delta)``; this gives grad_query
  directly, grad_key by atomic adds at the neighbour pixels, and grad_prior as one partial sum per
  (batch, group, tile, offset), reduced afterwards.
- backward, input order: grad_x is gathered per input pixel ``p`` from the output pixels whose
  window covers it, ``gx[c, p] = sum_n w_n(p - offset_n) * gy[c, p - offset_n]`` (any stride).
  The deterministic backward gathers grad_key the same way, ``gk[p] = sum_n dL/dlogit_n(p -
  offset_n) * dphi/dk``, from ``delta`` saved by the logits kernel, instead of atomic adds: one
  more pass over the group's channels (``k*k*C*H*W`` multiply-adds, like grad_x), no atomics.

Tiles: each program holds a ``(BLOCK_M channels, BLOCK pixels)`` accumulator; :func:`tile_config`
picks the pixel tile and warps per shape from a static table (see there for why).

This module imports Triton and is imported lazily by :mod:`lrbench.impls.fused_triton`.
``TRITON_INTERPRET=1`` must be set before it is first imported for the kernels to run on CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

INTERPRETED = bool(triton.knobs.runtime.interpret)  # how the kernels below were defined

PHI_CODES = {"sqdiff": 0, "absdiff": 1, "mult": 2}
ACC_DTYPES = {torch.float64: tl.float64}  # everything else accumulates in float32
BLOCK_PIXELS = 128  # most output (or input) pixels per program, flattened row-major: along W
PIXEL_TILES = (32, 64, 128)  # the pixel tiles of the table
CHANNEL_TILES = (2, 4, 8, 16)  # channels of a group aggregated at once (m=8 in LR-Net: one chunk)
MAX_BLOCK_CHANNELS = CHANNEL_TILES[-1]
ELEMENTS_PER_THREAD = 8  # accumulator values per thread that the table aims at (float32)
# Pixels per thread at most: the backward-logits kernel keeps about a dozen values per pixel live
# (query, lse, delta, its gradient, coordinates, masks); at 4 pixels a thread (128 pixels, 1 warp)
# Triton 3.6 spills it on sm_80.
PIXELS_PER_THREAD = 2


@triton.jit
def _phi(q, kv, PHI: tl.constexpr):
    """Composability phi(q, k): 0 = -(q-k)^2, 1 = -|q-k|, 2 = q*k."""
    if PHI == 0:
        out = -(q - kv) * (q - kv)
    elif PHI == 1:
        out = -tl.abs(q - kv)
    else:
        out = q * kv
    return out


@triton.jit
def _landing(pi, pj, p_ok, n, R, stride, Ho, Wo, K: tl.constexpr):
    """The output pixel whose offset ``n`` lands on input pixel ``(pi, pj)``: it is centred on
    ``p - offset_n``, which must be on the stride grid and inside the output. Returns its flat
    index ``l`` and whether it exists."""
    ci = pi - (n // K - R)
    cj = pj - (n % K - R)
    oi = ci // stride
    oj = cj // stride
    ok = (p_ok & (ci >= 0) & (cj >= 0) & (ci - oi * stride == 0) & (cj - oj * stride == 0)
          & (oi < Ho) & (oj < Wo))
    return oi * Wo + oj, ok


@triton.jit
def _incoming(q_ptr, lse_ptr, prior_ptr, kv, bg, g, L, pi, pj, p_ok, n, R, stride, Ho, Wo,
              K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr):
    """For input pixels ``p`` seen as neighbour ``n`` of an output pixel: that pixel's flat index
    ``l``, whether it exists, its query and the softmax weight ``w_n(l)`` it gives ``p``."""
    l, ok = _landing(pi, pj, p_ok, n, R, stride, Ho, Wo, K)
    q = tl.load(q_ptr + bg * L + l, mask=ok, other=0.0).to(ACC)
    lse = tl.load(lse_ptr + bg * L + l, mask=ok, other=0.0).to(ACC)
    logit = _phi(q, kv, PHI) + tl.load(prior_ptr + g * (K * K) + n).to(ACC)
    return l, ok, q, tl.where(ok, tl.exp(logit - lse), 0.0)


@triton.jit
def _phi_grads(q, kv, PHI: tl.constexpr):
    """(d phi / d q, d phi / d k); sign(0) = 0 for absdiff, as in torch."""
    d = q - kv
    if PHI == 0:
        dq = -2.0 * d
        dk = 2.0 * d
    elif PHI == 1:
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0)).to(d.dtype)
        dq = -sign
        dk = sign
    else:
        dq = kv
        dk = q
    return dq, dk


@triton.jit
def _neighbour(n, ci, cj, l_ok, q, key_base, prior_base, H, W,
               K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr):
    """Offset ``n`` of the tile of centres (ci, cj): input pixel, in-image mask, key and logit."""
    R = (K - 1) // 2
    pi = ci + (n // K - R)
    pj = cj + (n % K - R)
    ok = l_ok & (pi >= 0) & (pi < H) & (pj >= 0) & (pj < W)
    kv = tl.load(key_base + pi * W + pj, mask=ok, other=0.0).to(ACC)
    logit = _phi(q, kv, PHI) + tl.load(prior_base + n).to(ACC)
    return pi, pj, ok, kv, logit


@triton.jit
def lr_forward_kernel(
    x_ptr, q_ptr, k_ptr, prior_ptr, y_ptr, lse_ptr,
    C, G, H, W, Wo, L, m, stride,
    K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr, N_CHUNKS: tl.constexpr, WRITE_Y: tl.constexpr,
):
    """Grid (cdiv(L, BLOCK_L), G, B). Writes lse (B, G, L) and, if WRITE_Y, y (B, C, L)."""
    pid_l = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    bg = b * G + g
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)  # (BLOCK_L,) output pixels
    l_ok = offs_l < L
    ci = (offs_l // Wo) * stride  # centre row in the input
    cj = (offs_l % Wo) * stride
    q = tl.load(q_ptr + bg * L + offs_l, mask=l_ok, other=0.0).to(ACC)
    key_base = k_ptr + bg * H * W
    prior_base = prior_ptr + g * (K * K)

    # Pass 1: online softmax statistics over the in-image offsets.
    run_max = tl.full([BLOCK_L], float("-inf"), ACC)
    run_sum = tl.zeros([BLOCK_L], ACC)
    for n in range(K * K):
        pi, pj, ok, kv, logit = _neighbour(n, ci, cj, l_ok, q, key_base, prior_base, H, W,
                                           K, PHI, ACC)
        logit = tl.where(ok, logit, float("-inf"))
        new_max = tl.maximum(run_max, logit)
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.exp(logit - shift)
        run_max = new_max
    # The centre is always in the image, so run_sum >= 1 on valid pixels.
    lse = tl.where(l_ok, run_max + tl.log(tl.where(l_ok, run_sum, 1.0)), 0.0)
    tl.store(lse_ptr + bg * L + offs_l, lse, mask=l_ok)

    # Pass 2: aggregate the group's channels, BLOCK_M at a time.
    if WRITE_Y:
        c_first = g * m
        c_stop = tl.minimum(c_first + m, C)
        # A constexpr trip count, cdiv(m, BLOCK_M): Triton 3.6's interpreter cannot loop up to a
        # runtime value; the last group's surplus channels are masked off instead.
        for chunk in range(N_CHUNKS):
            offs_c = c_first + chunk * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
            c_ok = offs_c < c_stop
            x_rows = x_ptr + (b * C + offs_c) * H * W  # (BLOCK_M,) channel planes
            acc = tl.zeros([BLOCK_M, BLOCK_L], ACC)
            for n in range(K * K):
                pi, pj, ok, kv, logit = _neighbour(n, ci, cj, l_ok, q, key_base, prior_base,
                                                   H, W, K, PHI, ACC)
                w = tl.where(ok, tl.exp(logit - lse), 0.0)  # (BLOCK_L,)
                xv = tl.load(x_rows[:, None] + (pi * W + pj)[None, :],
                             mask=c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
                acc += w[None, :] * xv  # (BLOCK_M, BLOCK_L)
            y_rows = y_ptr + (b * C + offs_c) * L
            tl.store(y_rows[:, None] + offs_l[None, :], acc.to(y_ptr.dtype.element_ty),
                     mask=c_ok[:, None] & l_ok[None, :])


@triton.jit
def lr_backward_logits_kernel(
    x_ptr, q_ptr, k_ptr, prior_ptr, y_ptr, gy_ptr, lse_ptr,
    gq_ptr, gk_ptr, gprior_ptr, delta_ptr,
    C, G, H, W, Wo, L, m, stride, n_tiles,
    K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr, N_CHUNKS: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
):
    """Grid (n_tiles, G, B). Writes gq (B, G, L); writes gprior partial sums
    (B, G, n_tiles, K*K); adds into gk (B, G, H*W, ACC dtype), or, if DETERMINISTIC, writes
    delta (B, G, L, ACC dtype) for :func:`lr_backward_key_kernel` and leaves gk alone."""
    pid_l = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    bg = b * G + g
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    l_ok = offs_l < L
    ci = (offs_l // Wo) * stride
    cj = (offs_l % Wo) * stride
    q = tl.load(q_ptr + bg * L + offs_l, mask=l_ok, other=0.0).to(ACC)
    lse = tl.load(lse_ptr + bg * L + offs_l, mask=l_ok, other=0.0).to(ACC)
    key_base = k_ptr + bg * H * W
    gk_base = gk_ptr + bg * H * W
    prior_base = prior_ptr + g * (K * K)
    c_first = g * m
    c_stop = tl.minimum(c_first + m, C)

    # delta = sum_c gy[c] * y[c] = sum_n w_n * dL/dw_n
    if N_CHUNKS == 1:  # the whole group fits one (BLOCK_M, BLOCK_L) tile: keep grad_y in registers
        offs_c = c_first + tl.arange(0, BLOCK_M)
        group_c_ok = offs_c < c_stop
        group_rows = (b * C + offs_c)[:, None]  # (BLOCK_M, 1)
        tile_ok = group_c_ok[:, None] & l_ok[None, :]
        gy_group = tl.load(gy_ptr + group_rows * L + offs_l[None, :], mask=tile_ok,
                           other=0.0).to(ACC)  # (BLOCK_M, BLOCK_L)
        yv = tl.load(y_ptr + group_rows * L + offs_l[None, :], mask=tile_ok, other=0.0).to(ACC)
        delta = tl.sum(gy_group * yv, axis=0)
    else:
        delta = tl.zeros([BLOCK_L], ACC)
        for chunk in range(N_CHUNKS):  # (a constexpr trip count: see the forward kernel)
            offs_c = c_first + chunk * BLOCK_M + tl.arange(0, BLOCK_M)
            tile = (b * C + offs_c)[:, None] * L + offs_l[None, :]  # (BLOCK_M, BLOCK_L)
            tile_ok = (offs_c < c_stop)[:, None] & l_ok[None, :]
            gy = tl.load(gy_ptr + tile, mask=tile_ok, other=0.0).to(ACC)
            yv = tl.load(y_ptr + tile, mask=tile_ok, other=0.0).to(ACC)
            delta += tl.sum(gy * yv, axis=0)

    if DETERMINISTIC:
        tl.store(delta_ptr + bg * L + offs_l, delta, mask=l_ok)

    gq = tl.zeros([BLOCK_L], ACC)
    for n in range(K * K):
        pi, pj, ok, kv, logit = _neighbour(n, ci, cj, l_ok, q, key_base, prior_base, H, W,
                                           K, PHI, ACC)
        w = tl.where(ok, tl.exp(logit - lse), 0.0)
        # dL/dw_n = sum_c gy[c] * x[c, p_n]
        if N_CHUNKS == 1:
            xv = tl.load(x_ptr + group_rows * H * W + (pi * W + pj)[None, :],
                         mask=group_c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
            dw = tl.sum(gy_group * xv, axis=0)
        else:
            dw = tl.zeros([BLOCK_L], ACC)
            for chunk in range(N_CHUNKS):
                offs_c = c_first + chunk * BLOCK_M + tl.arange(0, BLOCK_M)
                c_ok = offs_c < c_stop
                gy = tl.load(gy_ptr + (b * C + offs_c)[:, None] * L + offs_l[None, :],
                             mask=c_ok[:, None] & l_ok[None, :], other=0.0).to(ACC)
                xv = tl.load(x_ptr + (b * C + offs_c)[:, None] * H * W + (pi * W + pj)[None, :],
                             mask=c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
                dw += tl.sum(gy * xv, axis=0)
        dlogit = w * (dw - delta)  # zero off the image
        dq, dk = _phi_grads(q, kv, PHI)
        gq += dlogit * dq
        if not DETERMINISTIC:
            tl.atomic_add(gk_base + pi * W + pj, dlogit * dk, mask=ok)
        tl.store(gprior_ptr + (bg * n_tiles + pid_l) * (K * K) + n, tl.sum(dlogit, axis=0))
    tl.store(gq_ptr + bg * L + offs_l, gq.to(gq_ptr.dtype.element_ty), mask=l_ok)


@triton.jit
def lr_backward_x_kernel(
    q_ptr, k_ptr, prior_ptr, gy_ptr, lse_ptr, gx_ptr,
    C, G, H, W, Ho, Wo, L, m, stride, n_chunks,
    K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Grid (cdiv(H*W, BLOCK_P), G * n_chunks, B). Writes gx (B, C, H*W) by gathering."""
    pid_p = tl.program_id(0)
    g = tl.program_id(1) // n_chunks
    chunk = tl.program_id(1) % n_chunks
    b = tl.program_id(2).to(tl.int64)
    bg = b * G + g
    R = (K - 1) // 2
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)  # (BLOCK_P,) input pixels
    p_ok = offs_p < H * W
    pi = offs_p // W
    pj = offs_p % W
    kv = tl.load(k_ptr + bg * H * W + offs_p, mask=p_ok, other=0.0).to(ACC)
    c_stop = tl.minimum(g * m + m, C)
    offs_c = g * m + chunk * BLOCK_M + tl.arange(0, BLOCK_M)
    c_ok = offs_c < c_stop

    acc = tl.zeros([BLOCK_M, BLOCK_P], ACC)
    for n in range(K * K):
        l, ok, q, w = _incoming(q_ptr, lse_ptr, prior_ptr, kv, bg, g, L, pi, pj, p_ok, n, R,
                                stride, Ho, Wo, K, PHI, ACC)  # (BLOCK_P,) each
        gy = tl.load(gy_ptr + (b * C + offs_c)[:, None] * L + l[None, :],
                     mask=c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
        acc += w[None, :] * gy
    tl.store(gx_ptr + (b * C + offs_c)[:, None] * H * W + offs_p[None, :],
             acc.to(gx_ptr.dtype.element_ty), mask=c_ok[:, None] & p_ok[None, :])


@triton.jit
def lr_backward_key_kernel(
    x_ptr, q_ptr, k_ptr, prior_ptr, gy_ptr, lse_ptr, delta_ptr, gk_ptr,
    C, G, H, W, Ho, Wo, L, m, stride,
    K: tl.constexpr, PHI: tl.constexpr, ACC: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, N_CHUNKS: tl.constexpr,
):
    """Grid (cdiv(H*W, BLOCK_P), G, B). Writes gk (B, G, H*W) by gathering (deterministic)."""
    pid_p = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    bg = b * G + g
    R = (K - 1) // 2
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)  # (BLOCK_P,) input pixels
    p_ok = offs_p < H * W
    pi = offs_p // W
    pj = offs_p % W
    kv = tl.load(k_ptr + bg * H * W + offs_p, mask=p_ok, other=0.0).to(ACC)
    c_first = g * m
    c_stop = tl.minimum(c_first + m, C)
    if N_CHUNKS == 1:  # the group's x at these pixels, read once
        offs_c = c_first + tl.arange(0, BLOCK_M)
        group_c_ok = offs_c < c_stop
        x_group = tl.load(x_ptr + (b * C + offs_c)[:, None] * H * W + offs_p[None, :],
                          mask=group_c_ok[:, None] & p_ok[None, :], other=0.0).to(ACC)

    acc = tl.zeros([BLOCK_P], ACC)
    for n in range(K * K):
        l, ok, q, w = _incoming(q_ptr, lse_ptr, prior_ptr, kv, bg, g, L, pi, pj, p_ok, n, R,
                                stride, Ho, Wo, K, PHI, ACC)  # (BLOCK_P,) each
        delta = tl.load(delta_ptr + bg * L + l, mask=ok, other=0.0).to(ACC)
        # dL/dw_n at output pixel l = sum_c gy[c, l] * x[c, p]
        if N_CHUNKS == 1:
            gy = tl.load(gy_ptr + (b * C + offs_c)[:, None] * L + l[None, :],
                         mask=group_c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
            dw = tl.sum(gy * x_group, axis=0)
        else:
            dw = tl.zeros([BLOCK_P], ACC)
            for chunk in range(N_CHUNKS):  # (a constexpr trip count: see the forward kernel)
                offs_c = c_first + chunk * BLOCK_M + tl.arange(0, BLOCK_M)
                c_ok = offs_c < c_stop
                gy = tl.load(gy_ptr + (b * C + offs_c)[:, None] * L + l[None, :],
                             mask=c_ok[:, None] & ok[None, :], other=0.0).to(ACC)
                xv = tl.load(x_ptr + (b * C + offs_c)[:, None] * H * W + offs_p[None, :],
                             mask=c_ok[:, None] & p_ok[None, :], other=0.0).to(ACC)
                dw += tl.sum(gy * xv, axis=0)
        _, dk = _phi_grads(q, kv, PHI)
        acc += w * (dw - delta) * dk  # zero where no output pixel uses offset n
    tl.store(gk_ptr + bg * H * W + offs_p, acc.to(gk_ptr.dtype.element_ty), mask=p_ok)


@dataclass(frozen=True)
class TileConfig:
    """One kernel launch's tiling: pixels and channels per program, and warps per program."""

    block_pixels: int
    block_channels: int
    num_warps: int


def block_channels(m: int) -> int:
    """Channels of one group aggregated per tile: ``m`` rounded up to a power of two, capped."""
    return min(max(triton.next_power_of_2(m), CHANNEL_TILES[0]), MAX_BLOCK_CHANNELS)


def block_pixels(n: int) -> int:
    """Pixels per program for ``n`` pixels: the smallest tile of the table covering them, at
    most ``BLOCK_PIXELS``."""
    return next((tile for tile in PIXEL_TILES if tile >= n), BLOCK_PIXELS)


def warps_for(block_pixels: int, block_channels: int, dtype: torch.dtype) -> int:
    """Warps for one ``(block_channels, block_pixels)`` accumulator tile, 1 to 8."""
    elements = block_pixels * block_channels * (2 if dtype == torch.float64 else 1)
    per_pixel = block_pixels // (32 * PIXELS_PER_THREAD)
    return min(max(elements // (32 * ELEMENTS_PER_THREAD), per_pixel, 1), 8)


def tile_config(n_pixels: int, m: int, dtype: torch.dtype) -> TileConfig:
    """The tiling for ``n_pixels`` output (or input) pixels, groups of ``m`` channels, ``dtype``.

    A static table, because the choice has to be made on machines without a GPU too (autotuning
    measures, and needs one), and the same shape must get the same kernels everywhere:

    - pixels: the smallest of 32, 64, 128 covering the image, so a 7x7 stage (49 pixels) wastes
      15 lanes of 64 and not 79 of 128, and larger images get 128 (long coalesced rows along W);
    - channels: ``m`` rounded up to a power of two, at most 16 (LR-Net's m=8 is one chunk);
    - warps: one per 256 accumulator values (8 per thread; twice that for float64, whose values
      take two registers) and at least one per 64 pixels (2 per thread), 1 to 8, so register use
      stays flat across the table (every entry is compiled by ``scripts/triton_aot.py`` and
      checked for spills) and small tiles do not leave idle warps. 4 warps for LR-Net-50's
      128-pixel, 8-channel float32 tile.

    Unmeasured on a GPU: a measured table would replace this one row by row.
    """
    pixels, channels = block_pixels(n_pixels), block_channels(m)
    return TileConfig(pixels, channels, warps_for(pixels, channels, dtype))


def all_tile_configs(dtype: torch.dtype = torch.float32) -> list[TileConfig]:
    """Every entry the table can give for ``dtype`` (what the ahead-of-time compile checks)."""
    return [TileConfig(p, c, warps_for(p, c, dtype)) for p in PIXEL_TILES for c in CHANNEL_TILES]


def acc_dtype(dtype: torch.dtype):
    """Triton accumulation dtype for inputs of ``dtype``: float64 for float64, else float32."""
    return ACC_DTYPES.get(dtype, tl.float32)


def forward(x, query, key, prior, kernel_size: int, stride: int, phi: str, *, write_y=True):
    """Launch the forward kernel.

    Args:
        x: ``(B, C, H, W)``; query: ``(B, G, Ho, Wo)``; key: ``(B, G, H, W)``; prior: ``(G, k, k)``.
        write_y: ``False`` computes only the logsumexp (the backward's recomputation).

    Returns:
        ``y`` ``(B, C, Ho, Wo)`` in x's dtype (``None`` if not ``write_y``) and the per-pixel
        logsumexp of the logits ``lse`` ``(B, G, Ho, Wo)`` in the accumulation dtype.
    """
    x, query, key, prior = (t.contiguous() for t in (x, query, key, prior))
    B, C, H, W = x.shape
    G, Ho, Wo = query.shape[1:]
    L, m = Ho * Wo, -(-C // G)
    acc = acc_dtype(x.dtype)
    y = x.new_empty((B, C, Ho, Wo)) if write_y else None
    lse = torch.empty((B, G, Ho, Wo), device=x.device,
                      dtype=torch.float64 if acc is tl.float64 else torch.float32)
    tile = tile_config(L, m, x.dtype)
    grid = (triton.cdiv(L, tile.block_pixels), G, B)
    lr_forward_kernel[grid](
        x, query, key, prior, y if write_y else x, lse,
        C, G, H, W, Wo, L, m, stride,
        K=kernel_size, PHI=PHI_CODES[phi], ACC=acc,
        BLOCK_L=tile.block_pixels, BLOCK_M=tile.block_channels,
        N_CHUNKS=triton.cdiv(m, tile.block_channels), WRITE_Y=write_y, num_warps=tile.num_warps,
    )
    return y, lse


def backward(grad_y, x, query, key, prior, y, kernel_size: int, stride: int, phi: str, *,
             deterministic: bool = False):
    """Gradients of the op with respect to x, query, key and prior (recomputing the weights).

    Args:
        grad_y, y: ``(B, C, Ho, Wo)``; the others as in :func:`forward`.
        deterministic: gather grad_key (no atomic adds): the same bits on every run.

    Returns:
        ``(grad_x, grad_query, grad_key, grad_prior)`` shaped and typed like the inputs.
    """
    x, query, key, prior, y, grad_y = (t.contiguous() for t in (x, query, key, prior, y, grad_y))
    B, C, H, W = x.shape
    G, Ho, Wo = query.shape[1:]
    L, m, kk = Ho * Wo, -(-C // G), kernel_size * kernel_size
    _, lse = forward(x, query, key, prior, kernel_size, stride, phi, write_y=False)
    acc = acc_dtype(x.dtype)
    constants = dict(K=kernel_size, PHI=PHI_CODES[phi], ACC=acc)

    out_tile = tile_config(L, m, x.dtype)
    n_chunks = triton.cdiv(m, out_tile.block_channels)  # channel chunks of a group
    n_tiles = triton.cdiv(L, out_tile.block_pixels)
    grad_query = torch.empty_like(query)
    grad_key_acc = (torch.empty if deterministic else torch.zeros)(
        (B, G, H, W), device=x.device, dtype=lse.dtype)
    delta = torch.empty((B, G, L), device=x.device, dtype=lse.dtype) if deterministic else lse
    prior_partial = torch.empty((B, G, n_tiles, kk), device=x.device, dtype=lse.dtype)
    lr_backward_logits_kernel[(n_tiles, G, B)](
        x, query, key, prior, y, grad_y, lse,
        grad_query, grad_key_acc, prior_partial, delta,
        C, G, H, W, Wo, L, m, stride, n_tiles, **constants,
        BLOCK_L=out_tile.block_pixels, BLOCK_M=out_tile.block_channels, N_CHUNKS=n_chunks,
        DETERMINISTIC=deterministic, num_warps=out_tile.num_warps,
    )

    in_tile = tile_config(H * W, m, x.dtype)
    in_tiles = triton.cdiv(H * W, in_tile.block_pixels)
    if deterministic:
        lr_backward_key_kernel[(in_tiles, G, B)](
            x, query, key, prior, grad_y, lse, delta, grad_key_acc,
            C, G, H, W, Ho, Wo, L, m, stride, **constants,
            BLOCK_P=in_tile.block_pixels, BLOCK_M=in_tile.block_channels, N_CHUNKS=n_chunks,
            num_warps=in_tile.num_warps,
        )
    grad_x = torch.empty_like(x)
    lr_backward_x_kernel[(in_tiles, G * n_chunks, B)](
        query, key, prior, grad_y, lse, grad_x,
        C, G, H, W, Ho, Wo, L, m, stride, n_chunks, **constants,
        BLOCK_P=in_tile.block_pixels, BLOCK_M=in_tile.block_channels,
        num_warps=in_tile.num_warps,
    )
    grad_prior = prior_partial.sum(dim=(0, 2)).view(G, kernel_size, kernel_size)
    return grad_x, grad_query, grad_key_acc.to(key.dtype), grad_prior.to(prior.dtype)
