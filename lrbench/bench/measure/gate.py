"""The accuracy gate: every case is checked before it is timed; a failed case is never timed.

Op and layer cases: :func:`lrbench.check.check_against_reference` on the case's shape, dtype and
device, output and all four gradients, against the float64 reference, or against float64
``unfold`` when the shape is too large for the reference (``REFERENCE_LIMIT``). One check per
(implementation, shape, dtype, device) serves every pass and the layer. LR-Net-50 cases: the
network's logits on a small image against the same network in float64 with ``unfold``; its floor
(the op replaced by a stand-in that computes something else) has no oracle: its gate checks that
the network runs and gives finite logits of the right shape. Cases that run only PyTorch's own
operators (3x3 conv, ResNet-50) have no gate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lrbench import registry
from lrbench.bench.matrix.cases import FLOOR, Case
from lrbench.bench.peers import natten
from lrbench.check import check_against_reference

# Neighbour-logit count B*G*k*k*Ho*Wo above which float64 unfold replaces the (slow) reference.
REFERENCE_LIMIT = 2_000_000
NETWORK_GATE_SIZE = 32  # side of the image the network gate uses


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate. ``max_abs_err`` is the worst over output and gradients."""

    ok: bool
    max_abs_err: float
    oracle: str
    reason: str = ""


def oracle_for(case: Case) -> str:
    s = case.shape
    return "reference" if s.B * s.G * s.k * s.k * s.Ho * s.Wo <= REFERENCE_LIMIT else "unfold"


def _op_gate(case: Case) -> GateResult:
    oracle = oracle_for(case)
    result = check_against_reference(case.impl_label, case.shape, dtype=case.torch_dtype,
                                     device=case.device, oracle=oracle)
    return GateResult(ok=result.ok, max_abs_err=result.worst, oracle=f"{oracle} float64",
                      reason="; ".join(result.failures))


def _network_gate(case: Case) -> GateResult:
    from lrbench.models import lrnet50

    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG state untouched
        torch.manual_seed(0)
        model = lrnet50(impl=case.impl_label).eval()
    oracle = copy.deepcopy(model).double()
    from lrbench.layer import set_implementation

    set_implementation(oracle, "unfold")
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, NETWORK_GATE_SIZE, NETWORK_GATE_SIZE, dtype=torch.float64,
                         generator=gen)
    with torch.no_grad():
        expected = oracle(images)
        got = model.to(case.device, case.torch_dtype)(images.to(case.device, case.torch_dtype))
    err = (got.double().cpu() - expected).abs().max().item()
    # 50 layers deep: the op's per-dtype tolerance, relative to the largest logit, times 10.
    atol, rtol = registry.get(case.impl).tolerance(case.torch_dtype)
    limit = 10 * (atol + rtol * expected.abs().max().item())
    ok = bool(torch.isfinite(got).all()) and err <= limit
    reason = "" if ok else f"logits: max abs err {err:.3g} > {limit:.3g}"
    return GateResult(ok=ok, max_abs_err=err, oracle="lrnet50 unfold float64", reason=reason)


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
    worst, failures = natten.gate_errors(case)
    return GateResult(ok=not failures, max_abs_err=worst, oracle="clamped-window float64",
                      reason="; ".join(failures))


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
    """Runs the gate of each case once per (implementation, shape, dtype, device) and remembers it."""

    def __init__(self) -> None:
        self._done: dict[tuple, GateResult] = {}

    def __call__(self, case: Case) -> GateResult:
        gate = gate_for(case)
        kind = "network" if case.target == "lrnet50" else gate.__name__
        key = (kind, case.impl_label, case.shape, case.dtype, case.device)
        if key not in self._done:
            self._done[key] = gate(case)
        return self._done[key]


def gate_for(case: Case) -> Callable[[Case], GateResult]:
    """The gate of ``case``: its target's (:data:`GATES`), or the floor's for a floor row."""
    return _floor_gate if case.impl == FLOOR else GATES[case.target]
