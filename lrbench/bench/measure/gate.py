"""The accuracy gate: every case is checked before it is timed; a failed case is never timed.

Op and layer cases: :func:`lrbench.check.check_against_reference` on the case's shape, dtype,
device and memory format, output and all four gradients, against the float64 reference; when
the shape is too large for the reference (``REFERENCE_LIMIT``), the reference checks the
corners, edges and interior of the case, every channel block (:mod:`lrbench.accuracy.parts`),
while the implementation runs all of it. Each value is held to the suite's limit
(:mod:`lrbench.accuracy.limits`). One check per (implementation, shape, dtype, device, memory
format) serves every pass and the layer. LR-Net-50 cases: the network's logits on a small image,
in the case's dtype and in every memory format the timing may pick, against the same network
(the same rounded weights) in float64 with the reference. Its floor (the op replaced by a
stand-in that computes something else) has no oracle: its gate checks that the network runs and
gives finite logits of the right shape. Cases that run only PyTorch's own operators (3x3 conv,
ResNet-50) have no gate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lrbench.accuracy.limits import network_limit
from lrbench.bench.matrix.cases import FLOOR, Case
from lrbench.bench.measure.formats import MEMORY_FORMATS
from lrbench.bench.peers import natten
from lrbench.check import CheckResult, check_against_reference, compare_value

# Neighbour-logit count B*G*k*k*Ho*Wo above which the reference checks only parts of the case.
REFERENCE_LIMIT = 2_000_000
NETWORK_GATE_SIZE = 32  # side of the image the network gate uses


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate: the worst absolute error over output and gradients, and the limit of
    the value that came closest to its limit (``worst_value``) with how close (``err_over_limit``,
    at most 1 for a pass) and where the limit came from (``limit_source``)."""

    ok: bool
    max_abs_err: float
    oracle: str
    reason: str = ""
    err_over_limit: float = float("nan")
    atol: float = float("nan")
    rtol: float = float("nan")
    limit_source: str = ""
    worst_value: str = ""

    @classmethod
    def of(cls, result: CheckResult) -> GateResult:
        limit = result.limits.get(result.worst_value)
        return cls(ok=result.ok, max_abs_err=result.worst, oracle=result.oracle,
                   reason="; ".join(result.failures), err_over_limit=result.err_over_limit,
                   atol=limit.atol if limit else math.nan, rtol=limit.rtol if limit else math.nan,
                   limit_source=result.limit_source, worst_value=result.worst_value)

    def row(self) -> dict:
        """The record columns of :data:`lrbench.bench.results.records.GATE_COLUMNS`."""
        return {"max_abs_err": self.max_abs_err, "oracle": self.oracle, "atol": self.atol,
                "rtol": self.rtol, "limit_source": self.limit_source,
                "err_over_limit": self.err_over_limit, "gate_value": self.worst_value}


def too_large_for_reference(case: Case) -> bool:
    s = case.shape
    return s.B * s.G * s.k * s.k * s.Ho * s.Wo > REFERENCE_LIMIT


def _op_gate(case: Case) -> GateResult:
    result = check_against_reference(case.impl_label, case.shape, dtype=case.torch_dtype,
                                     device=case.device, layout=case.memory_format,
                                     part=too_large_for_reference(case))
    return GateResult.of(result)


def _network_logits(case: Case) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The float64 reference network's logits and the case's network's, per memory format; both
    networks hold the same weights rounded to the case's dtype."""
    from lrbench.layer import set_implementation
    from lrbench.models import lrnet50

    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG state untouched
        torch.manual_seed(0)
        model = lrnet50(impl=case.impl_label).eval().to(case.torch_dtype)
    oracle = copy.deepcopy(model).double()
    set_implementation(oracle, "reference")
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, NETWORK_GATE_SIZE, NETWORK_GATE_SIZE, generator=gen,
                         dtype=torch.float64).to(case.torch_dtype)
    model = model.to(case.device)
    got = {}
    with torch.no_grad():
        expected = oracle(images.double())
        for name, fmt in MEMORY_FORMATS.items():  # the timing picks one of them
            model = model.to(memory_format=fmt)
            got[name] = model(images.to(case.device).contiguous(memory_format=fmt)).double().cpu()
    return expected, got


def _network_gate(case: Case) -> GateResult:
    expected, got = _network_logits(case)
    limit = network_limit(case.torch_dtype, expected)
    result = CheckResult(impl=case.impl_label, dtype=case.torch_dtype,
                         oracle="lrnet50 reference float64")
    for name, logits in got.items():
        compare_value(result, f"logits {name}", logits, expected, limit)
    return GateResult.of(result)


def _floor_gate(case: Case) -> GateResult:
    from lrbench.bench.measure.targets import network_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = network_model(case).eval().to(case.device, case.torch_dtype)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, NETWORK_GATE_SIZE, NETWORK_GATE_SIZE, generator=gen)
    with torch.no_grad():
        got = model(images.to(case.device, case.torch_dtype))
    expected = (1, model.fc.out_features)
    ok = tuple(got.shape) == expected and bool(torch.isfinite(got).all())
    reason = "" if ok else f"logits: shape {tuple(got.shape)} (expected {expected}) or not finite"
    return GateResult(ok=ok, max_abs_err=float("nan"), oracle="none (floor: shape and finite only)",
                      reason=reason)


def _natten_gate(case: Case) -> GateResult:
    return GateResult.of(natten.gate_result(case))


def _no_gate(case: Case) -> GateResult:
    return GateResult(ok=True, max_abs_err=float("nan"), oracle="none (PyTorch's own ops)")


GATES: dict[str, Callable[[Case], GateResult]] = {
    "op": _op_gate,
    "layer": _op_gate,
    "lrnet50": _network_gate,
    "conv3x3": _no_gate,
    "natten": _natten_gate,
    "resnet50": _no_gate,
}


class Gate:
    """Runs the gate of each case once per (implementation, shape, dtype, device, memory format)
    and remembers it."""

    def __init__(self) -> None:
        self._done: dict[tuple, GateResult] = {}

    def __call__(self, case: Case) -> GateResult:
        gate = gate_for(case)
        kind = "network" if case.target == "lrnet50" else gate.__name__
        key = (kind, case.impl_label, case.shape, case.dtype, case.device, case.memory_format)
        if key not in self._done:
            self._done[key] = gate(case)
        return self._done[key]


def gate_for(case: Case) -> Callable[[Case], GateResult]:
    """The gate of ``case``: its target's (:data:`GATES`), or the floor's for a floor row."""
    return _floor_gate if case.impl == FLOOR else GATES[case.target]
