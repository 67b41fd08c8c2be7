"""LR-Net's stem with a fast path: its 1x1 conv, BatchNorm and ReLU as one conv with a bias.

The stem's first layer is a 1x1 conv 3 -> 64 at full resolution (Hu et al., ICCV 2019,
arXiv:1904.11491, Table 1): 3 multiply-adds per output value, so its cost is memory traffic over
the 64-channel map, and BatchNorm reads and writes that map twice more. A 1x1 conv is linear in its
input, so the batch statistics of its output follow from the 3-channel input's mean and
covariance: ``mean_o = W mean_x`` and ``var_o = diag(W cov_x W^T)`` (biased, as BatchNorm
normalises with). The normalisation then folds into the conv's weight and bias:

    y = relu(conv(x, W * a, beta - mean_o * a)),  a = gamma / sqrt(var_o + eps)

the same function of ``x`` and of the parameters as conv, BN, ReLU (so the same gradients), with
the running statistics updated as BatchNorm does (unbiased variance, momentum). In eval mode the
running statistics take the place of the batch ones.

On CPU (without autocast) the folded conv and its ReLU are one autograd node (``_ConvReLU``)
whose backward makes nothing of the 64-channel map's size: the parameters' gradients are sums over
pixels of the masked incoming gradient times the 3 input channels (and 1 for the bias), so it goes
image by image (a masked gradient of 13 MB at 224x224, which the allocator reuses) through one
batched matrix product each.
Autograd's ReLU and conv backward made a fresh 103 MB tensor at batch 8 (each page faulted in on
first touch) and a tall, thin matrix product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def foldable(conv: nn.Module, bn: nn.Module, relu: nn.Module) -> bool:
    """Whether ``conv, bn, relu`` is a plain 1x1 conv, an affine BatchNorm2d and a ReLU."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1 and isinstance(bn, nn.BatchNorm2d)
            and bn.affine and isinstance(relu, nn.ReLU))


def _batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel mean ``(C,)`` and biased covariance ``(C, C)`` of ``x`` over B, H, W."""
    B, C, H, W = x.shape
    n = B * H * W
    cols = x.transpose(0, 1).reshape(C, n)  # (C, n)
    mean = cols.mean(dim=1)  # (C,)
    centred = cols - mean[:, None]
    return mean, centred @ centred.T / n, n  # (C,), (C, C)


def conv_bn_relu(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(bn(conv(x)))`` as one conv with folded weight and bias; updates ``bn``'s running
    statistics in training mode exactly as ``bn`` would."""
    C_out, C_in = conv.weight.shape[:2]
    w = conv.weight.reshape(C_out, C_in)  # (C_out, C_in)
    use_batch = bn.training or bn.running_mean is None
    if use_batch:
        mean_x, cov_x, n = _batch_moments(x)
        mean = w @ mean_x  # (C_out,) the batch mean of conv(x)
        if conv.bias is not None:
            mean = mean + conv.bias
        var = ((w @ cov_x) * w).sum(dim=1)  # (C_out,) diag(W cov W^T), biased
    else:
        mean, var = bn.running_mean, bn.running_var
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        _update_running(bn, mean.detach(), var.detach(), n)
    scale = bn.weight / torch.sqrt(var + bn.eps)  # (C_out,)
    bias = bn.bias - mean * scale  # bn(conv(x)) = W x * scale + (conv.bias - mean) * scale + beta
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    w = w * scale[:, None]
    if x.device.type == "cpu" and not torch.is_autocast_enabled(x.device.type):
        return _ConvReLU.apply(x, w, bias)  # (B, C_out, H, W)
    # Elsewhere autograd's backward: no page faults to save on a GPU, and mixed dtypes under
    # autocast (out in bf16/fp16, x and w in fp32).
    return F.conv2d(x, w.reshape_as(conv.weight), bias).relu_()


class _ConvReLU(torch.autograd.Function):
    """``relu(conv2d(x, w, b))`` for a 1x1 conv ``w`` ``(C_out, C_in)``, bias ``b`` ``(C_out,)``; the
    backward goes image by image (module docstring). Its backward is made of differentiable ops, so
    ``create_graph`` gives higher derivatives; ``torch.func`` transforms and forward-mode AD are not
    supported (``Stem.fast = False`` runs the plain layers). CPU, without autocast, only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, w[:, :, None, None], b).relu_()  # (B, C_out, H, W), x's memory format
        ctx.save_for_backward(x, w, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w, out = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = torch.empty_like(x) if need_x else None
        grad_wb = w.new_zeros(w.shape[0], w.shape[1] + 1)  # (C_out, C_in + 1): [w | b]
        for i in range(x.shape[0]):
            g = torch.ops.aten.threshold_backward(grad[i], out[i], 0)  # (C_out, H, W) masked
            if need_w or need_b:
                grad_wb = grad_wb + _pixel_sums(g, x[i])
            if need_x:
                grad_x[i] = torch.einsum("oc,ohw->chw", w, g)
        grad_w, grad_b = grad_wb[:, :-1], grad_wb[:, -1]
        return grad_x, grad_w if need_w else None, grad_b if need_b else None


def _pixel_sums(g: torch.Tensor, x: torch.Tensor, chunks: int = 8) -> torch.Tensor:
    """``(C_out, C_in + 1)``: ``sum_p g[:, p] x[:, p]`` and ``sum_p g[:, p]`` over the pixels p of
    ``g`` ``(C_out, H, W)`` and ``x`` ``(C_in, H, W)``, as a batch of matrix products over ``chunks``
    equal runs of pixels (one product with a 50,000-long inner dimension ran 2x slower), summed,
    plus one product over the pixels left over."""
    (C_out, H, W), (C_in, H, W) = g.shape, x.shape
    n = H * W
    g_p = g.permute(1, 2, 0).reshape(n, C_out)  # (pixels, C_out)
    x_p = torch.cat([x.permute(1, 2, 0), x.new_ones(H, W, 1)], dim=2).view(n, C_in + 1)  # 1: bias
    chunks = max(1, min(chunks, n))
    length = n // chunks
    main = chunks * length
    # (C_in + 1, C_out) per chunk: 5x faster than the transposed product g_p^T x_p (2 threads).
    sums = torch.bmm(x_p[:main].view(chunks, length, C_in + 1).transpose(1, 2),
                     g_p[:main].reshape(chunks, length, C_out)).sum(0)
    if main < n:
        sums = sums + x_p[main:].T @ g_p[main:]
    return sums.T  # (C_out, C_in + 1)


def _update_running(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """BatchNorm's running-statistics update (unbiased variance, momentum or cumulative mean)."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_(var * n / max(n - 1, 1), alpha=momentum)


class Stem(nn.Sequential):
    """``nn.Sequential`` of the stem's layers (same children, same state dict), whose leading
    1x1 conv, BN, ReLU run as one folded conv when ``fast`` (the default) and the trio is foldable.
    ``fast = False`` (and any ``torch.jit`` trace, so that counters see each module) runs the
    layers one by one."""

    fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        if self.fast and not torch.jit.is_tracing() and len(layers) >= 3 and foldable(*layers[:3]):
            x = conv_bn_relu(layers[0], layers[1], x)  # (B, C_out, H, W)
            layers = layers[3:]
        for layer in layers:
            x = layer(x)
        return x
