"""How close each implementation comes to the accuracy gate's limits: worst ``err_over_limit``.

    python scripts/gate_margins.py small  [--impls unfold,fused_cpu] [--dtypes float32,bfloat16]
    python scripts/gate_margins.py stages --impls unfold --dtypes bfloat16 [--oracle fused_cpu]

``small``: three shapes (k = 3, 5, 7; strides 1 and 2; C not a multiple of 8 in one), the three
phi, seeds 0-2; one line per (implementation, dtype, shape, phi) with each value's worst error
over its limit (:mod:`lrbench.accuracy.limits`). ``stages``: LR-Net-50's four stage shapes
(B=8, k=7, m=8), checked twice: the float64 reference on the corners, edges and interior (what
the benchmark's gate does at these shapes) and ``--oracle`` in float64 on the whole case.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from lrbench import registry
from lrbench.bench.matrix.presets import LRNET50_STAGES
from lrbench.check import check_against_reference
from lrbench.inputs import Shape

SMALL = [Shape(2, 16, 12, 12, k=7, m=8), Shape(1, 12, 9, 11, k=5, m=4, stride=2),
         Shape(2, 24, 14, 14, k=3, m=8)]
PHIS = ("sqdiff", "absdiff", "mult")


def _line(result) -> str:
    values = " ".join(f"{v}={x:.3f}" for v, x in result.items())
    return values


def small(impls: list[str], dtypes: list[torch.dtype]) -> None:
    for impl, dtype, shape, phi in itertools.product(impls, dtypes, SMALL, PHIS):
        if registry.get(impl).why_not(shape.spec(dtype=dtype, phi=phi), backward=True):
            continue
        worst: dict[str, float] = {}
        for seed in range(3):
            result = check_against_reference(impl, shape, dtype=dtype, phi=phi, seed=seed)
            for value, ratio in result.over_limit.items():
                worst[value] = max(worst.get(value, 0.0), ratio)
        print(impl, str(dtype).removeprefix("torch."), shape.label(), phi, _line(worst), flush=True)


def stages(impls: list[str], dtypes: list[torch.dtype], oracle: str) -> None:
    for impl, dtype, stage in itertools.product(impls, dtypes, LRNET50_STAGES):
        shape = Shape(B=8, k=7, m=8, **stage)
        for how, kwargs in (("reference on parts", dict(part=True)),
                            (f"{oracle} whole", dict(oracle=oracle))):
            result = check_against_reference(impl, shape, dtype=dtype, **kwargs)
            print(impl, str(dtype).removeprefix("torch."), shape.label(), how,
                  "ok" if result.ok else "FAILED", _line(result.over_limit), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["small", "stages"])
    parser.add_argument("--impls", default="reference,unfold,im2col_matmul,fused_cpu")
    parser.add_argument("--dtypes", default="float64,float32,float16,bfloat16")
    parser.add_argument("--oracle", default="fused_cpu")
    args = parser.parse_args()
    impls = args.impls.split(",")
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    if args.what == "small":
        small(impls, dtypes)
    else:
        stages(impls, dtypes, args.oracle)


if __name__ == "__main__":
    main()
