"""fused_cpu's two kernels timed directly, without autograd: forward, backward, and their ratio.

    python scripts/time_fused_cpu.py [--threads 2] [--rounds 21] [--channels-last]

At LR-Net-50's stage shapes (B=8, k=7, m=8, stride 1: C=100@56, 200@28, 400@14, 800@7), float32,
random inputs. Each round calls ``forward`` then ``backward`` (with the forward's statistics) on the
same tensors; the medians over the rounds are printed, with GMAC/s of the forward (closed-form op
MACs) and (forward + backward) / forward. The benchmark's ``fwd_bwd`` pass (``lrbench run``) is the
number to quote; this is the kernels' own share of it, for kernel work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lrbench.impls import fused_cpu

from lrbench.complexity import op_macs

STAGES = [(100, 56), (200, 28), (400, 14), (800, 7)]  # (C, H = W)
B, K, M = 8, 7, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--channels-last", action="store_true", help="x and grad_y channels_last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ext = fused_cpu.extension()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    for C, H in STAGES:
        G = -(-C // M)
        x = torch.randn(B, C, H, H, generator=generator).contiguous(memory_format=fmt)
        query = torch.randn(B, G, H, H, generator=generator)
        key = torch.randn(B, G, H, H, generator=generator)
        prior = torch.randn(G, K, K, generator=generator)
        grad_y = torch.randn(B, C, H, H, generator=generator).contiguous(memory_format=fmt)
        forward_s, backward_s = [], []
        for _ in range(args.rounds + 2):  # the first two rounds warm up
            start = time.perf_counter()
            _, stats = ext.forward(x, query, key, prior, K, 1, 0)
            middle = time.perf_counter()
            ext.backward(grad_y, x, query, key, prior, stats, K, 1, 0)
            forward_s.append(middle - start)
            backward_s.append(time.perf_counter() - middle)
        fwd = statistics.median(forward_s[2:])
        bwd = statistics.median(backward_s[2:])
        gmacs = op_macs(B, C, G, K, H, H) / fwd / 1e9
        print(f"C={C:4d} {H:3d}x{H:<3d} fwd {fwd * 1e3:7.3f} ms ({gmacs:5.1f} GMAC/s)  "
              f"bwd {bwd * 1e3:7.3f} ms  (fwd+bwd)/fwd {(fwd + bwd) / fwd:4.2f}")


if __name__ == "__main__":
    main()
