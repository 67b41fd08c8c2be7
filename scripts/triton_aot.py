"""Compile the fused Triton kernels ahead of time for a CUDA architecture, without a GPU.

The interpreter (``TRITON_INTERPRET=1``) checks the kernels' arithmetic on CPU tensors but not
their compilation: Triton's type rules, loop-carried types and lowering only run on the real path.
This module runs that path, Triton source -> TTIR -> TTGIR -> LLVM -> PTX -> cubin (Triton ships
``ptxas``), for every kernel, dtype and phi, and reads register use and spills from ``ptxas -v``.
It needs Triton with its NVIDIA backend, but no GPU and no driver; ``TRITON_INTERPRET`` must be
unset when the kernels are first imported (run it in a fresh process).
"""

from __future__ import annotations

import os
import re
import subprocess
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
         "gprior_ptr"),
        ("C", "G", "H", "W", "Wo", "L", "m", "stride", "n_tiles"),
    ),
    "lr_backward_x_kernel": (
        ("q_ptr", "k_ptr", "prior_ptr", "gy_ptr", "lse_ptr", "gx_ptr"),
        ("C", "G", "H", "W", "Ho", "Wo", "L", "m", "stride", "n_chunks"),
    ),
}
ACC_POINTERS = {"lse_ptr", "gk_ptr", "gprior_ptr"}  # buffers in the accumulation dtype


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


def _constexprs(name: str, k: int, phi: str, dtype: torch.dtype, one_chunk: bool) -> dict:
    from lrbench.impls import triton_kernels as tk

    block_m = tk.MAX_BLOCK_CHANNELS if not one_chunk else 8
    common = {"K": k, "PHI": tk.PHI_CODES[phi], "ACC": tk.acc_dtype(dtype), "BLOCK_M": block_m}
    per_kernel = {
        "lr_forward_kernel": {"BLOCK_L": tk.BLOCK_PIXELS, "WRITE_Y": True},
        "lr_backward_logits_kernel": {"BLOCK_L": tk.BLOCK_PIXELS, "ONE_CHUNK": one_chunk},
        "lr_backward_x_kernel": {"BLOCK_P": tk.BLOCK_PIXELS},
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
                   one_chunk: bool = True) -> Compiled:
    """Compile one kernel for ``sm_<arch>`` and report its register use and spills.

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
    pointers, ints = KERNEL_ARGS[name]
    element = DTYPES[str(dtype).removeprefix("torch.")]
    acc = "fp64" if dtype == torch.float64 else "fp32"
    constexprs = _constexprs(name, k, phi, dtype, one_chunk)
    signature = {p: "*" + (acc if p in ACC_POINTERS else element) for p in pointers}
    signature.update({i: "i32" for i in ints})
    signature.update({c: "constexpr" for c in constexprs})
    source = ASTSource(getattr(tk, name), signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": tk.NUM_WARPS})
    registers, spills = _ptxas_usage(compiled.asm["ptx"])
    return Compiled(name, element, k, phi, "one-chunk" if one_chunk else "chunked",
                    registers, spills)


def compile_all(arch: int = 90) -> list[Compiled]:
    """Every kernel, for every supported dtype, phi and a few kernel sizes (1, 7, 11)."""
    cases = [(torch.float32, 7, "sqdiff"), (torch.float16, 1, "absdiff"),
             (torch.bfloat16, 11, "mult"), (torch.float64, 3, "absdiff")]
    results = [compile_kernel(name, dtype, k, phi, arch=arch)
               for dtype, k, phi in cases for name in KERNEL_ARGS]
    results.append(compile_kernel("lr_backward_logits_kernel", torch.float32, 7, "sqdiff",
                                  arch=arch, one_chunk=False))
    return results


if __name__ == "__main__":
    for row in compile_all():
        print(row)
