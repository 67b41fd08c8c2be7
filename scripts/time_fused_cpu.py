"""fused_cpu's two kernels timed directly, without autograd: forward, backward, and their ratio.

    python scripts/time_fused_cpu.py [--threads 2] [--rounds 21] [--format both]
                                     [--against OLD.cpp | --key-query projected|copied]
                                     [--shapes stem,res3.0]

At every LR layer shape of LR-Net-50 at 224x224, batch 8, k=7, m=8 (Hu et al., ICCV 2019,
arXiv:1904.11491, Table 1): the stem (C=64 on 224x224, stride 2), each stage's first block (stride
2 from res3 on) and its other blocks; float32, random inputs, NCHW and/or channels_last x and
grad_y. Each round calls ``forward`` then ``backward`` (with the forward's statistics) on the same
tensors; the medians over the rounds are printed, with (forward + backward) / forward.

``--against OLD.cpp`` builds a second copy of the kernels from another source (e.g. ``git show
main:implementations/csrc/fused_cpu.cpp > /tmp/old.cpp``) and interleaves its rounds with this
one's, round by round in one process, so that a shared machine's noise falls on both alike; each
goes first every other round (the second of a round finds the tensors warmer: with a fixed order,
an A/A run of one kernel against itself gave 0.97-0.99x). The last columns are then old / new for
the forward, the backward and both, each with the 95% t-interval of the rounds' paired ratios
(lrbench's ``compare_pairs``: a round is a pair). The benchmark's ``fwd_bwd`` pass (``lrbench run``)
is the number to quote; this is the kernels' own share of it, for kernel work.

``--key-query``: how key and query reach the kernels. ``contiguous`` (default): NCHW tensors of
their own. ``projected``: as LR-Net-50's projections make them (views of one ``(B, 2G, H, W)``
output at stride 1, in x's memory format), read through their strides. ``copied``: those views,
interleaved (as "old") with the same views copied to NCHW inside each call, forward and backward,
as the op did before 2026-12-07. With ``--against``, ``projected`` needs kernels that read strided
query and key (ae83f2c or later); older ones refuse them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from lrbench.impls import fused_cpu

from lrbench import buildcache
from lrbench.bench.matrix.presets import LRNET50_BATCH, LRNET50_K, LRNET50_LAYERS, LRNET50_M
from lrbench.bench.results import stats

# name -> (C, H = W of the input, stride): LR-Net-50's LR layers at 224x224 input (the layers
# preset's).
SHAPES = {name: (layer["C"], layer["H"], layer["stride"]) for name, layer in LRNET50_LAYERS.items()}
B, K, M = LRNET50_BATCH, LRNET50_K, LRNET50_M
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


KEY_QUERY = ("contiguous", "projected", "copied")


def inputs(C: int, H: int, stride: int, fmt: torch.memory_format, projected: bool = False
           ) -> list[torch.Tensor]:
    """``[x, query, key, prior, grad_y]``; ``projected``: key and query laid out as the
    projections make them (lrbench.projections: one conv's output split at stride 1)."""
    G, Ho = -(-C // M), (H - 1) // stride + 1
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, H, H, generator=gen).contiguous(memory_format=fmt)
    if projected and stride == 1:
        key, query = torch.randn(B, 2 * G, H, H, generator=gen).contiguous(memory_format=fmt).split(G, 1)
    elif projected:
        query = torch.randn(B, G, Ho, Ho, generator=gen).contiguous(memory_format=fmt)
        key = torch.randn(B, G, H, H, generator=gen).contiguous(memory_format=fmt)
    else:
        query = torch.randn(B, G, Ho, Ho, generator=gen)
        key = torch.randn(B, G, H, H, generator=gen)
    prior = torch.randn(G, K, K, generator=gen)
    grad_y = torch.randn(B, C, Ho, Ho, generator=gen).contiguous(memory_format=fmt)
    return [x, query, key, prior, grad_y]


def one_round(ext, tensors: list[torch.Tensor], stride: int, copy: bool = False
              ) -> tuple[float, float]:
    """(forward, backward) seconds; ``copy``: key and query copied to NCHW in each, first."""
    x, query, key, prior, grad_y = tensors
    start = time.perf_counter()
    q, k = (query.contiguous(), key.contiguous()) if copy else (query, key)
    _, stats = ext.forward(x, q, k, prior, K, stride, 0)
    middle = time.perf_counter()
    q, k = (query.contiguous(), key.contiguous()) if copy else (query, key)
    ext.backward(grad_y, x, q, k, prior, stats, K, stride, 0)
    return middle - start, time.perf_counter() - middle


def round_order(labels: list[str], round_: int) -> list[str]:
    """The labels in the order they run in round ``round_``: each goes first in turn."""
    turn = round_ % len(labels)
    return labels[turn:] + labels[:turn]


def speedup(old: list[float], new: list[float]) -> tuple[float, float, float]:
    """``(ratio, low, high)``: median(old) / median(new) over the rounds (above 1: new is faster)
    and the 95% t-interval of the rounds' paired ratios; ``old[i]`` and ``new[i]`` ran in one round.
    """
    change = stats.compare_pairs([[t] for t in new], [[t] for t in old], threshold=0.1)
    return change.ratio, change.low, change.high


def speedup_text(old: list[float], new: list[float]) -> str:
    ratio, low, high = speedup(old, new)
    return f"{ratio:4.2f} [{low:4.2f}, {high:4.2f}]"


def add_shape_options(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options this script shares with ablate_fused_cpu.py: threads, rounds, formats, shapes."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--format", choices=["nchw", "channels_last", "both"], default="both")
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help=f"comma-separated, of {list(SHAPES)}")


def chosen(parser: argparse.ArgumentParser, option: str, text: str, known) -> list[str]:
    """The comma-separated names of ``text``, each checked against ``known``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"{option} must be among {list(known)}, got {unknown}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(parser, rounds=21)
    parser.add_argument("--against", type=Path, default=None,
                        help="another fused_cpu.cpp to time beside this one, interleaved")
    parser.add_argument("--key-query", choices=KEY_QUERY, default="contiguous",
                        help="key and query: NCHW tensors, the projections' views, or those "
                             "views against copies of them (interleaved)")
    args = parser.parse_args()
    names = chosen(parser, "--shapes", args.shapes, SHAPES)
    if args.against is not None and args.key_query == "copied":
        parser.error("--against and --key-query copied each make the old side: choose one")
    torch.set_num_threads(args.threads)
    kernels = {"new": (fused_cpu.extension(), False)}  # label -> (kernels, copy key and query)
    if args.against is not None:
        spec = buildcache.ExtensionSpec("fused_cpu_against", args.against,
                                        cflags=fused_cpu.CFLAGS, ldflags=("-fopenmp",))
        kernels["old"] = (buildcache.load(spec), False)
    if args.key_query == "copied":
        kernels["old"] = (kernels["new"][0], True)
    formats = list(FORMATS) if args.format == "both" else [args.format]
    print(f"{torch.get_num_threads()} threads, B={B}, k={K}, m={M}, float32, medians of "
          f"{args.rounds} rounds, key and query {args.key_query}"
          + (", old interleaved with new (each first every other round); old / new: the "
             "ratio of medians [95% interval of the rounds' paired ratios]" if "old" in kernels else ""))
    for fmt_name in formats:
        for name in names:
            C, H, stride = SHAPES[name]
            tensors = inputs(C, H, stride, FORMATS[fmt_name], args.key_query != "contiguous")
            times = {label: ([], []) for label in kernels}
            for round_ in range(args.rounds + 2):  # the first two rounds warm up
                for label in round_order(list(kernels), round_):
                    ext, copy = kernels[label]
                    fwd, bwd = one_round(ext, tensors, stride, copy)
                    if round_ >= 2:
                        times[label][0].append(fwd)
                        times[label][1].append(bwd)
            fwd, bwd = (statistics.median(t) for t in times["new"])
            line = (f"{fmt_name:13s} {name:6s} C={C:3d} {H:3d}x{H:<3d} s{stride}  fwd "
                    f"{fwd * 1e3:7.2f} ms  bwd {bwd * 1e3:7.2f} ms  (fwd+bwd)/fwd "
                    f"{(fwd + bwd) / fwd:4.2f}")
            if "old" in kernels:
                (old_f, old_b), (new_f, new_b) = times["old"], times["new"]
                old_fwd, old_bwd = statistics.median(old_f), statistics.median(old_b)
                both = ([f + b for f, b in zip(old_f, old_b, strict=True)],
                        [f + b for f, b in zip(new_f, new_b, strict=True)])
                line += (f"  | old (fwd+bwd)/fwd {(old_fwd + old_bwd) / old_fwd:4.2f}, old/new fwd "
                         f"{speedup_text(old_f, new_f)} bwd {speedup_text(old_b, new_b)} "
                         f"fwd+bwd {speedup_text(*both)}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
