"""Compile the fused Triton kernels ahead of time for a CUDA architecture, without a GPU.

The interpreter (``TRITON_INTERPRET=1``) checks the kernels' arithmetic on CPU tensors but not
their compilation: Triton's type rules, loop-carried types and lowering only run on the real path.
This module runs that path, Triton source -> TTIR -> TTGIR -> LLVM -> PTX -> cubin (Triton ships
``ptxas``), for every kernel, dtype and phi, and reads register use and spills from ``ptxas -v``.
It needs Triton with its NVIDIA backend, but no GPU and no driver; ``TRITON_INTERPRET`` must be
unset when the kernels are first imported (run it in a fresh process).

``python scripts/triton_aot.py`` compiles every entry of the tile table
(:func:`lrbench.impls.triton_kernels.all_tile_configs`) for every kernel in float32, every dtype
on the largest tile, and the chunked and deterministic variants, for sm_80 (A100) and sm_90
(H100), prints one line per kernel and exits 1 if any spills registers or fails to compile.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch

DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}
KERNEL_ARGS = {  # kernel name -> (pointer arguments, int32 arguments)
    "lr_forward_kernel": (
        ("x_ptr", "q_ptr", "k_ptr", "prior_ptr", "y_ptr", "lse_ptr"),
        ("C", "G", "H", "W", "Wo", "L", "m", "stride"),
    ),
    "lr_backward_logits_kernel": (
        ("x_ptr", "q_ptr", "k_ptr", "prior_ptr", "y_ptr", "gy_ptr", "lse_ptr", "gq_ptr", "gk_ptr",
         "gprior_ptr", "delta_ptr"),
        ("C", "G", "H", "W", "Wo", "L", "m", "stride", "n_tiles"),
    ),
    "lr_backward_key_kernel": (
        ("x_ptr", "q_ptr", "k_ptr", "prior_ptr", "gy_ptr", "lse_ptr", "delta_ptr", "gk_ptr"),
        ("C", "G", "H", "W", "Ho", "Wo", "L", "m", "stride"),
    ),
    "lr_backward_x_kernel": (
        ("q_ptr", "k_ptr", "prior_ptr", "gy_ptr", "lse_ptr", "gx_ptr"),
        ("C", "G", "H", "W", "Ho", "Wo", "L", "m", "stride", "n_chunks"),
    ),
}
ACC_POINTERS = {"lse_ptr", "gk_ptr", "gprior_ptr", "delta_ptr"}  # buffers in the accumulation dtype


@dataclass(frozen=True)
class Compiled:
    """One kernel compiled to a cubin: what ``ptxas -v`` says about it."""

    kernel: str
    dtype: str
    k: int
    phi: str
    variant: str
    registers: int
    spill_bytes: int
    arch: int = 90
    block_pixels: int = 128
    block_channels: int = 8
    num_warps: int = 4


def _constexprs(name: str, k: int, phi: str, dtype: torch.dtype, tile, one_chunk: bool,
                deterministic: bool) -> dict:
    from lrbench.impls import triton_kernels as tk

    n_chunks = 1 if one_chunk else 3  # chunked: a group of 3 channel tiles (m = 48 on 16)
    common = {"K": k, "PHI": tk.PHI_CODES[phi], "ACC": tk.acc_dtype(dtype),
              "BLOCK_M": tile.block_channels}
    per_kernel = {
        "lr_forward_kernel": {"BLOCK_L": tile.block_pixels, "N_CHUNKS": n_chunks, "WRITE_Y": True},
        "lr_backward_logits_kernel": {"BLOCK_L": tile.block_pixels, "N_CHUNKS": n_chunks,
                                      "DETERMINISTIC": deterministic},
        "lr_backward_key_kernel": {"BLOCK_P": tile.block_pixels, "N_CHUNKS": n_chunks},
        "lr_backward_x_kernel": {"BLOCK_P": tile.block_pixels},
    }
    return {**common, **per_kernel[name]}


def _ptxas_usage(ptx: str) -> tuple[int, int]:
    """(registers, spill store bytes) of the PTX's one kernel, from the bundled ptxas."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    arch = re.search(r"^\.target\s+(sm_\w+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", os.devnull],
                             capture_output=True, text=True, check=True).stderr
    registers = int(re.search(r"Used (\d+) registers", out).group(1))
    spills = int(re.search(r"(\d+) bytes spill stores", out).group(1))
    return registers, spills


def compile_kernel(name: str, dtype: torch.dtype, k: int, phi: str, *, arch: int = 90,
                   one_chunk: bool = True, tile=None, deterministic: bool = False) -> Compiled:
    """Compile one kernel for ``sm_<arch>`` and report its register use and spills.

    Args:
        tile: a :class:`~lrbench.impls.triton_kernels.TileConfig` (default: LR-Net-50's,
            128 pixels x 8 channels).

    Raises:
        RuntimeError: the kernels were defined under the interpreter.
        triton.CompilationError (or another error): the kernel does not compile.
    """
    import triton
    from lrbench.impls import triton_kernels as tk
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if tk.INTERPRETED:
        raise RuntimeError("the kernels were defined under TRITON_INTERPRET=1; "
                           "compile them in a process without it")
    tile = tile or tk.tile_config(tk.BLOCK_PIXELS, 8, dtype)
    pointers, ints = KERNEL_ARGS[name]
    element = DTYPES[str(dtype).removeprefix("torch.")]
    acc = "fp64" if dtype == torch.float64 else "fp32"
    constexprs = _constexprs(name, k, phi, dtype, tile, one_chunk, deterministic)
    signature = {p: "*" + (acc if p in ACC_POINTERS else element) for p in pointers}
    signature.update({i: "i32" for i in ints})
    signature.update({c: "constexpr" for c in constexprs})
    source = ASTSource(getattr(tk, name), signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": tile.num_warps})
    registers, spills = _ptxas_usage(compiled.asm["ptx"])
    variant = ("one-chunk" if one_chunk else "chunked") + ("-det" if deterministic else "")
    return Compiled(name, element, k, phi, variant, registers, spills, arch, tile.block_pixels,
                    tile.block_channels, tile.num_warps)


def compile_all(arch: int = 90) -> list[Compiled]:
    """Every kernel on every entry of the tile table (float32, k=7, sqdiff); every dtype, phi and
    a few kernel sizes (1, 3, 11) on the largest tile; the chunked and deterministic variants."""
    from lrbench.impls import triton_kernels as tk

    results = [compile_kernel(name, torch.float32, 7, "sqdiff", arch=arch, tile=tile)
               for tile in tk.all_tile_configs(torch.float32) for name in KERNEL_ARGS]
    cases = [(torch.float16, 1, "absdiff"), (torch.bfloat16, 11, "mult"),
             (torch.float64, 3, "absdiff")]
    for dtype, k, phi in cases:
        largest = tk.all_tile_configs(dtype)[-1]
        results += [compile_kernel(name, dtype, k, phi, arch=arch, tile=largest)
                    for name in KERNEL_ARGS]
    largest = tk.all_tile_configs(torch.float32)[-1]
    for name in ("lr_forward_kernel", "lr_backward_logits_kernel", "lr_backward_key_kernel"):
        results.append(compile_kernel(name, torch.float32, 7, "sqdiff", arch=arch, tile=largest,
                                      one_chunk=False))
    results.append(compile_kernel("lr_backward_logits_kernel", torch.float32, 7, "sqdiff",
                                  arch=arch, tile=largest, deterministic=True))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, action="append",
                        help="compute capability times 10 (repeatable); default 80 and 90")
    args = parser.parse_args(argv)
    bad = 0
    for arch in args.arch or [80, 90]:
        for row in compile_all(arch):
            spilled = row.spill_bytes > 0
            bad += spilled
            print(f"sm_{row.arch} {row.kernel:26} {row.dtype:4} k={row.k:<2} {row.phi:7} "
                  f"{row.variant:13} tile {row.block_pixels:3}x{row.block_channels:<2} "
                  f"warps {row.num_warps} registers {row.registers:3} spills {row.spill_bytes}"
                  + ("  SPILLS" if spilled else ""), flush=True)
    if bad:
        print(f"{bad} kernel(s) spill registers", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
