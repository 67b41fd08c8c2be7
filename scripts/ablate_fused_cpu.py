"""Where fused_cpu's time goes: the kernels rebuilt with one part left out.

    python scripts/ablate_fused_cpu.py [--threads 2] [--rounds 11] [--format both]
                                       [--shapes stem,res3.0] [--parts pass2,grad_x]

Each part (``PARTS``) of the kernels in implementations/csrc/fused_cpu.cpp is left out in its own
copy of the source, by a text edit that must apply exactly once (the script stops if the kernel
has moved on): five of ``backward_kernel``'s, and two that the forward has too (the band copy of
x, and the softmax's exp). One more, ``weights``, is asked for by name only: the backward's pass 1
with its weights as if read from the forward (neither logit nor exp), which overlaps ``exp``.
The copies are built like fused_cpu and timed round by round with the
intact kernel (taking turns at going first), at LR-Net-50's LR layer shapes
(``time_fused_cpu.SHAPES``). The time a part costs is the intact backward's median minus the
median without it; for the parts the forward has too, a second table gives the same for the
forward, and intact / without it for both. Their results are wrong by design: this measures, it
checks nothing.

The intact kernel's minor page faults per backward call (``getrusage``) are printed too: at the
stem they were grad_x's pages (103 MB at batch 8, above glibc's mmap threshold of 32 MB at most,
so mapped fresh on every call) until the kernel kept such blocks between calls; now 0 after the
first.

What is left when every listed part is out ("the rest"): pass 1 (the weights again, grad_y . x)
but its exp, the band copy of key, the fills and the store of grad_key; the forward's median is
printed beside it.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lrbench.impls import fused_cpu
from time_fused_cpu import FORMATS, SHAPES, K, add_shape_options, chosen, inputs, round_order

from lrbench import buildcache

# part -> (what it is, [(text in backward_kernel, the text without the part)])
PARTS = {
    "pass2": ("pass 2: dlogit, grad_query, grad_prior, the grad_key terms", [(
        "          for (int64_t jb = 0; jb < Wv; jb += V) {\n"
        "            const Vec<T, V> qv = load<T, V>(q + jb);\n"
        "            const Vec<T, V> dsum",
        "          for (int64_t jb = 0; jb < 0; jb += V) {\n"
        "            const Vec<T, V> qv = load<T, V>(q + jb);\n"
        "            const Vec<T, V> dsum")]),
    "grad_x": ("grad_x's gather into the band's rows (e * grad_y')", [(
        "          if (all_rows) {\n            gather_all_rows",
        "          if (true) {\n          } else if (all_rows) {\n            gather_all_rows")]),
    "grad_key": ("grad_key's gather into the band's rows", [(
        "          for (int64_t ky = ky0; ky < ky1; ++ky) {\n"
        "            T* dst = gkp + (rr0 + ky) * GW;",
        "          for (int64_t ky = ky0; ky < ky0; ++ky) {\n"
        "            T* dst = gkp + (rr0 + ky) * GW;")]),
    "grad_y": ("reading grad_y into grad_y' = grad_y / sum", [(
        "          if (gys.w == 1) {\n            for (int64_t cl = 0; cl < mc; ++cl) {\n"
        "              for (int64_t j = 0; j < Wo; ++j) gyp",
        "          if (true) {\n          } else if (gys.w == 1) {\n"
        "            for (int64_t cl = 0; cl < mc; ++cl) {\n"
        "              for (int64_t j = 0; j < Wo; ++j) gyp")]),
    "store_x": ("storing the band's grad_x rows to grad_x (with its page faults)", [(
        "          if (!store_x) continue;", "          continue;")]),
    "x_copy": ("the band copy of x into the padded scratch (forward and backward)", [(
        "      copy_band_x(geo, pr, x, xs, b, chunks.c0(g),",
        "      if (false) copy_band_x(geo, pr, x, xs, b, chunks.c0(g),")]),
    "weights": ("pass 1's weights as if stored: neither logit nor exp, a multiply in their place "
                "(backward only; what a backward that read the forward's weights would save, before "
                "the reading)", [(
        "      const Vec<T, V> logit = phi_vec<PHI>(qv, load<T, V>(kp + off)) + prior[n]\n"
        "                              + load<T, V>(colmask + kx * Wv);\n"
        "      const Vec<T, V> w = exp_vec<T, V, FORWARD>(UNSHIFTED ? logit : logit - shift);\n",
        "      Vec<T, V> w;\n"
        "      if constexpr (FORWARD) {\n"
        "        const Vec<T, V> logit = phi_vec<PHI>(qv, load<T, V>(kp + off)) + prior[n]\n"
        "                                + load<T, V>(colmask + kx * Wv);\n"
        "        w = exp_vec<T, V, FORWARD>(UNSHIFTED ? logit : logit - shift);\n"
        "      } else {\n"
        "        w = qv * qv;  // ablated: positive, so no block's sum underflows into a second pass\n"
        "      }\n")]),
    "exp": ("the softmax's exp, a multiply-add in its place (forward and backward)", [(
        "  } else {\n#ifdef LRBENCH_MASKED_STORES\n",
        "  } else {\n    if (true) return x * 0.0f + 1.0f;  // ablated\n#ifdef LRBENCH_MASKED_STORES\n")]),
}
FORWARD_PARTS = ("x_copy", "exp")  # the parts the forward kernel has too
DEFAULT_PARTS = [part for part in PARTS if part != "weights"]  # parts that do not overlap


def ablated_source(source: str, edits: list[tuple[str, str]]) -> str:
    """``source`` with each edit applied; each text must occur exactly once."""
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise SystemExit(f"the kernel has moved on: an edit's text occurs {count} times in "
                             f"{fused_cpu.SOURCE} (expected once); update PARTS:\n{old}")
        source = source.replace(old, new)
    return source


def build(parts: list[str], folder: Path) -> dict:
    """name -> extension: the intact kernel and one copy per part left out."""
    source = fused_cpu.SOURCE.read_text()
    kernels = {"intact": fused_cpu.extension()}
    for part in parts:
        path = folder / f"fused_cpu_without_{part}.cpp"
        path.write_text(ablated_source(source, PARTS[part][1]))
        spec = buildcache.ExtensionSpec(f"fused_cpu_without_{part}", path,
                                        cflags=fused_cpu.CFLAGS, ldflags=("-fopenmp",))
        kernels[part] = buildcache.load(spec)
    return kernels


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(kernels: dict, tensors: list[torch.Tensor], stride: int, rounds: int) -> dict:
    """Medians (seconds) of the intact forward, of each kernel's backward, of the forward of each
    kernel without a forward part (``forward NAME``), and the intact backward's minor faults per
    call. The backwards take turns being first after the forward (whose x and key are then still
    cached), round by round; the ablated forwards run between the two."""
    x, query, key, prior, grad_y = tensors
    intact = kernels["intact"]
    _, stats = intact.forward(x, query, key, prior, K, stride, 0)
    forwards = [name for name in kernels if name in FORWARD_PARTS]
    times = {name: [] for name in ["forward", *kernels, *(f"forward {n}" for n in forwards)]}
    faults = 0
    for round_ in range(rounds + 2):  # the first two rounds warm up
        start = time.perf_counter()
        intact.forward(x, query, key, prior, K, stride, 0)
        forward_s = time.perf_counter() - start
        if round_ >= 2:
            times["forward"].append(forward_s)
        for name in forwards:
            start = time.perf_counter()
            kernels[name].forward(x, query, key, prior, K, stride, 0)
            if round_ >= 2:
                times[f"forward {name}"].append(time.perf_counter() - start)
        for name in round_order(list(kernels), round_):
            ext = kernels[name]
            before, start = minor_faults(), time.perf_counter()
            ext.backward(grad_y, x, query, key, prior, stats, K, stride, 0)
            elapsed = time.perf_counter() - start
            if round_ >= 2:
                times[name].append(elapsed)
                if name == "intact":
                    faults += minor_faults() - before
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {**medians, "faults": faults / rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(parser, rounds=11)
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated, of {list(PARTS)}")
    args = parser.parse_args()
    names = chosen(parser, "--shapes", args.shapes, SHAPES)
    parts = chosen(parser, "--parts", args.parts, PARTS)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        kernels = build(parts, Path(folder))
    formats = list(FORMATS) if args.format == "both" else [args.format]
    print(f"{torch.get_num_threads()} threads, float32, batch 8, k={K}, medians of {args.rounds} "
          "rounds, interleaved; a part's cost = intact backward - backward without it (ms)\n")
    for part in parts:
        print(f"- {part}: {PARTS[part][0]}")
    print("\n| format | shape | forward | backward | " + " | ".join(parts)
          + " | the rest | faults/call |")
    print("|---|---|---|---|" + "---|" * len(parts) + "---|---|")
    measured = []
    for fmt_name in formats:
        for name in names:
            C, H, stride = SHAPES[name]
            got = measure(kernels, inputs(C, H, stride, FORMATS[fmt_name]), stride, args.rounds)
            costs = [got["intact"] - got[part] for part in parts]
            rest = got["intact"] - sum(costs)
            cells = [f"{got['forward'] * 1e3:.2f}", f"{got['intact'] * 1e3:.2f}",
                     *(f"{cost * 1e3:.2f}" for cost in costs), f"{rest * 1e3:.2f}",
                     f"{got['faults']:.0f}"]
            print(f"| {fmt_name} | {name} | " + " | ".join(cells) + " |", flush=True)
            measured.append((fmt_name, name, got))
    print_forward_parts([part for part in parts if part in FORWARD_PARTS], measured)


def print_forward_parts(parts: list[str], measured: list[tuple[str, str, dict]]) -> None:
    """The forward's cost of each part that the forward has too (ms), and intact / without it for
    the backward and the forward (how many times faster each is without the part)."""
    if not parts:
        return
    print("\nThe parts the forward has too: the forward's cost (ms); backward and forward, intact /"
          " without it\n")
    print("| format | shape | forward | " + " | ".join(parts) + " | "
          + " | ".join(f"{part}: bwd, fwd x" for part in parts) + " |")
    print("|---|---|---|" + "---|" * (2 * len(parts)))
    for fmt_name, name, got in measured:
        costs = [got["forward"] - got[f"forward {part}"] for part in parts]
        faster = [f"{got['intact'] / got[part]:.2f}, {got['forward'] / got[f'forward {part}']:.2f}"
                  for part in parts]
        print(f"| {fmt_name} | {name} | {got['forward'] * 1e3:.2f} | "
              + " | ".join(f"{cost * 1e3:.2f}" for cost in costs) + " | " + " | ".join(faster)
              + " |", flush=True)


if __name__ == "__main__":
    main()
