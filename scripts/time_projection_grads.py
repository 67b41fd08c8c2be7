"""The key/query projections' backward of LR-Net-50's layers, this checkout against another revision.

    python scripts/time_projection_grads.py --against REV [--threads 2] [--rounds 9]
                                            [--format channels_last] [--shapes stem,res3.0]

What ``LocalRelation2d``'s fast path runs after the op's backward (``_projection_grads`` in
:mod:`lrbench.projections`): the input's gradient added into the op's ``grad_x`` in place, and
the two weights' gradients, from random gradients of key and query, at every LR layer shape of
LR-Net-50 at 224x224 (batch 8, m = 8; Hu et al., ICCV 2019, arXiv:1904.11491), float32. ``REV``'s
``lrbench/projections.py`` (``git show``) is loaded beside this checkout's and the two are called
in turn, round by round in one process, so that a shared machine's noise falls on both alike.
Each line: median ms of each, and old / new with the 95% t-interval of the rounds' paired
ratios. Alone, with inputs that stay warm from round to round:
inside a training step the same work meets cold caches and fresh memory (``lrbench profile``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from time_fused_cpu import (  # this folder
    FORMATS,
    SHAPES,
    add_shape_options,
    chosen,
    round_order,
    speedup_text,
)

from lrbench import projections
from lrbench.bench.matrix.presets import LRNET50_BATCH, LRNET50_M

ROOT = Path(__file__).resolve().parent.parent


def load_revision(rev: str):
    """``lrbench/projections.py`` as of ``rev``, as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:lrbench/projections.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("projections_against")
    exec(compile(source, f"{rev}:lrbench/projections.py", "exec"), module.__dict__)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(parser, rounds=9)
    parser.add_argument("--against", required=True, help="a git revision, e.g. main or c5b7d18")
    args = parser.parse_args()
    names = chosen(parser, "--shapes", args.shapes, SHAPES)
    try:
        old = load_revision(args.against)
    except subprocess.CalledProcessError as err:
        parser.error(f"--against: no lrbench/projections.py at {args.against!r} ({err.stderr.strip()})")
    torch.set_num_threads(args.threads)
    sides = {"old": old._projection_grads, "new": projections._projection_grads}
    B = LRNET50_BATCH
    print(f"{torch.get_num_threads()} threads, B={B}, m={LRNET50_M}, float32, medians of "
          f"{args.rounds} rounds; old: {args.against}, new: this checkout")
    formats = list(FORMATS) if args.format == "both" else [args.format]
    for fmt_name in formats:
        total = {"old": 0.0, "new": 0.0}
        for name in names:
            C, H, s = SHAPES[name]
            G, Ho = -(-C // LRNET50_M), (H - 1) // s + 1
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(B, C, H, H, generator=gen).contiguous(memory_format=FORMATS[fmt_name])
            w_key, w_query = (torch.randn(G, C, 1, 1, generator=gen) for _ in "kq")
            grad_key = torch.randn(B, G, H, H, generator=gen)
            grad_query = torch.randn(B, G, Ho, Ho, generator=gen)
            grad_x = torch.zeros_like(x)  # the op's gradient, added into in place
            # what the layer keeps from its forward: NCHW's strided query's subsampled input
            nchw_strided = s > 1 and fmt_name == "nchw"
            subsampled = x[:, :, ::s, ::s].contiguous() if nchw_strided else None
            times = {side: [] for side in sides}
            for round_ in range(args.rounds + 1):  # the first round warms up
                for side in round_order(["new", "old"], round_):
                    start = time.perf_counter()
                    with torch.no_grad():  # as in a backward (grad mode on only for create_graph)
                        sides[side](x, w_key, w_query, subsampled, s, grad_key, grad_query,
                                    (True, True, True), grad_x)
                    if round_:
                        times[side].append(time.perf_counter() - start)
            med = {side: statistics.median(t) * 1e3 for side, t in times.items()}
            for side in med:
                total[side] += med[side]
            print(f"{fmt_name:13s} {name:6s} C={C:3d} {H:3d}x{H:<3d} s{s}  old {med['old']:6.2f} ms  "
                  f"new {med['new']:6.2f} ms  old/new "
                  f"{speedup_text(times['old'], times['new'])}", flush=True)
        print(f"{fmt_name:13s} the shapes' sum: old {total['old']:.1f} ms, new {total['new']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
