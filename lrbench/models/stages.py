"""The per-stage description of a network, as in the paper's Table 1 (stage, output size, layers).

Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from __future__ import annotations

from lrbench.models.config import STAGE_STRIDES, NetConfig
from lrbench.spec import output_size

STEM_TEXT = {
    "conv7": "7x7, 64, stride 2",
    "lr7": "1x1, 64; {k}x{k} LR, 64, stride 2",
    "deep": "3x3, 32, stride 2; 3x3, 32; 3x3, 64",
}


def stage_rows(config: NetConfig, size: int = 224) -> list[dict[str, str]]:
    """One row per stage: ``{"stage", "output size", "layers"}`` for a ``size x size`` input."""
    k = config.kernel_size
    spatial = f"{k}x{k} LR" if config.spatial == "lr" else f"{k}x{k}"
    hw = output_size(size, 2)
    rows = [{"stage": "conv1", "output size": f"{hw}x{hw}",
             "layers": STEM_TEXT[config.stem].format(k=config.stem_kernel_size)}]
    hw = output_size(hw, 2)  # the max pool, listed with res2 as in the paper
    for i, (n, mid, out, stride) in enumerate(
        zip(config.blocks, config.widths, config.out_widths, STAGE_STRIDES, strict=True)
    ):
        hw = output_size(hw, stride)
        block = f"[1x1, {mid}; {spatial}, {mid}; 1x1, {out}] x {n}"
        rows.append({"stage": f"res{i + 2}", "output size": f"{hw}x{hw}",
                     "layers": ("3x3 max pool, stride 2; " if i == 0 else "") + block})
    rows.append({"stage": "fc", "output size": "1x1",
                 "layers": f"global average pool, {config.num_classes}-d fc"})
    return rows


def describe(config: NetConfig, size: int = 224) -> str:
    """The stage table as aligned text, ready to print."""
    rows = stage_rows(config, size)
    lines = [f"{config.name}  ({size}x{size} input)", f"{'stage':<6} {'output':<8} layers"]
    lines += [f"{r['stage']:<6} {r['output size']:<8} {r['layers']}" for r in rows]
    return "\n".join(lines)
