"""LR-Net's folded stem (1x1 conv 3 -> 64, BatchNorm, ReLU as one conv) timed alone, forward and
backward, in training mode.

    python scripts/time_stem.py [--threads 2] [--rounds 11] [--format both] [--against OLD.py]

At LR-Net-50's stem shape, batch 8, 224x224, float32. Each round runs the forward, then the
backward with a fixed random gradient of the output; medians over the rounds are printed.
``--against OLD.py`` loads ``conv_bn_relu`` from another revision of ``lrbench/models/stem.py``
(e.g. ``git show 58dcbe3:lrbench/models/stem.py > /tmp/old_stem.py``) and interleaves its rounds
with this one's, taking turns at going first, so that a shared machine's noise falls on both
alike; the gradients of both are compared at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch
from time_fused_cpu import FORMATS
from torch import nn

from lrbench.models.stem import conv_bn_relu

B, C_IN, C_OUT, SIZE = 8, 3, 64, 224


def load(path: Path):
    """``conv_bn_relu`` of the stem module at ``path``."""
    spec = importlib.util.spec_from_file_location("old_stem", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.conv_bn_relu


def one_round(fn, conv: nn.Conv2d, bn: nn.BatchNorm2d, x, grad_y) -> tuple[float, float, list]:
    for param in (conv.weight, bn.weight, bn.bias):
        param.grad = None
    start = time.perf_counter()
    y = fn(conv, bn, x)
    middle = time.perf_counter()
    y.backward(grad_y)
    end = time.perf_counter()
    return middle - start, end - middle, [p.grad for p in (conv.weight, bn.weight, bn.bias)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--format", choices=[*FORMATS, "both"], default="both")
    parser.add_argument("--against", type=Path, help="another revision of lrbench/models/stem.py")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.against is not None and not (args.against.is_file() and args.against.suffix == ".py"):
        parser.error(f"--against must be a .py file (a revision of lrbench/models/stem.py), "
                     f"got {args.against}")
    torch.set_num_threads(args.threads)
    sides = {"new": conv_bn_relu}
    if args.against is not None:
        sides["old"] = load(args.against)
    formats = list(FORMATS) if args.format == "both" else [args.format]
    print(f"{args.threads} threads, B={B}, {C_IN} -> {C_OUT} channels, {SIZE}x{SIZE}, float32, "
          f"training mode, medians of {args.rounds} rounds")
    for name in formats:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(B, C_IN, SIZE, SIZE, generator=gen).contiguous(memory_format=FORMATS[name])
        grad_y = torch.randn(B, C_OUT, SIZE, SIZE, generator=gen).contiguous(
            memory_format=FORMATS[name])
        conv, bn = nn.Conv2d(C_IN, C_OUT, 1, bias=False), nn.BatchNorm2d(C_OUT)
        times = {side: [] for side in sides}
        grads = {}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for side in order:
                fwd, bwd, grads[side] = one_round(sides[side], conv, bn, x, grad_y)
                times[side].append((fwd, bwd))
        for side, rounds in times.items():
            fwd = statistics.median(t[0] for t in rounds) * 1e3
            bwd = statistics.median(t[1] for t in rounds) * 1e3
            print(f"{name:13s} {side}  fwd {fwd:7.2f} ms  bwd {bwd:7.2f} ms")
        if "old" in grads:
            worst = max(((a - b).abs().max() / a.abs().max()).item()
                        for a, b in zip(grads["old"], grads["new"], strict=True))
            print(f"{name:13s} largest gradient difference, relative to the largest value: {worst:.1e}")


if __name__ == "__main__":
    main()
