"""scripts/gpu.sh without a GPU (exits at once, says why), its folder name, its summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lrbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")


def _gpu_sh(tmp_path: Path, *args: str, nvidia_smi: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if nvidia_smi is not None:  # a stand-in nvidia-smi printing one GPU's name
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\necho '{nvidia_smi}'\n")
        fake.chmod(0o755)
    # this machine's PATH without any real nvidia-smi, the stand-in first
    path = [str(bin_dir)] + [d for d in os.environ["PATH"].split(":")
                             if not (Path(d) / "nvidia-smi").exists()]
    env = {**os.environ, "PATH": ":".join(path), "PYTHON": sys.executable}
    return subprocess.run(["bash", "scripts/gpu.sh", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@no_cuda
def test_without_a_gpu_it_exits_at_once_and_says_why(tmp_path):
    before = set((ROOT / "reports").glob("gpu-*"))
    start = time.monotonic()
    out = _gpu_sh(tmp_path)
    assert out.returncode == 2
    assert "no CUDA GPU here" in out.stderr and "nothing to measure" in out.stderr
    assert time.monotonic() - start < 60  # torch's import, nothing else
    assert set((ROOT / "reports").glob("gpu-*")) == before  # wrote nothing


def test_the_report_folder_is_named_after_the_gpu(tmp_path):
    out = _gpu_sh(tmp_path, "--model", nvidia_smi="NVIDIA H100 80GB HBM3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gpu-h100-80gb-hbm3"


@no_cuda
def test_lrbench_check_on_cuda_without_a_gpu_fails_with_a_reason():
    result = CliRunner().invoke(main, ["check", "--device", "cuda", "--dtype", "bfloat16"])
    assert result.exit_code == 1
    assert "no implementation can run bfloat16 on cuda here" in result.output


def test_the_summary_reads_parts_and_rows(tmp_path):
    out = tmp_path / "gpu-test"
    run = out / "paper-float32"
    run.mkdir(parents=True)
    (out / "parts.tsv").write_text("part\tstatus\tseconds\tbudget_s\n"
                                   "install\tok\t3\t30\ngpu-tests\ttimed out\t90\t90\n")
    row = "op,{impl},8,100,56,56,7,8,1,float32,cuda,fwd,{median},cuda-events+l2-flush,ok,{fmt}\n"
    (run / "results.csv").write_text(
        "target,impl,B,C,H,W,k,m,stride,dtype,device,pass,median_s,timer,status,memory_format\n"
        + row.format(impl="unfold", median=0.004, fmt="")
        + row.format(impl="fused_triton", median=0.0002, fmt="contiguous")
        + row.format(impl="fused_triton", median=0.0007, fmt="channels_last")
        + "op,im2col_matmul,8,100,56,56,7,8,1,float32,cuda,fwd,,,failed,\n")
    text = subprocess.run([sys.executable, "scripts/gpu_summary.py", str(out)], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=60).stdout
    assert "| gpu-tests | timed out | 90 | 90 |" in text
    assert "| paper-float32 | 3 | 0 | 1 | 0 | cuda-events+l2-flush |" in text
    line = next(ln for ln in text.splitlines() if "B8 C100 56x56 k7 s1 " in ln)
    assert "0.2" in line and "4" in line  # fused_triton 0.2 ms, unfold 4 ms (NCHW, old or new)
    nhwc = next(ln for ln in text.splitlines() if "B8 C100 56x56 k7 s1 channels_last" in ln)
    assert "0.7" in nhwc and "0.2" not in nhwc  # its own line, not folded into NCHW's
