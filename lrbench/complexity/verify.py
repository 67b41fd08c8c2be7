"""``lrbench verify``: parameters and multiply-adds of the networks, three ways, against the paper.

Unit: one multiply-add = 1 MAC (fvcore's convention); ``FlopCounterMode`` reports FLOPs = 2 x MACs.
For each network at 224x224, batch 1: parameters of the built model against the paper and the
closed form; fvcore's count of the traced model against the closed form (whole network, per
stage, per LR layer); ``FlopCounterMode`` against 2 x fvcore on the ops it sees. Any disagreement,
unsupported op or parameter count off the paper by more than 1% is a named failure.
Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019, arXiv:1904.11491.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lrbench.complexity.fvcore_count import count_macs
from lrbench.complexity.gaps import PAPER_GFLOPS, gap_rows
from lrbench.complexity.layer_terms import secondary_excess, secondary_formula
from lrbench.complexity.network import MODULES_OF_STAGE, network_layers, network_params
from lrbench.complexity.torch_counter import cross_check
from lrbench.models import CONFIGS, NETWORKS, build, parameter_count

PAPER_PARAMS_M = {"resnet50": 25.5, "lrnet50": 23.3, "lrnet26": 14.7}
EXACT_PARAMS = {"resnet50": 25_557_032}  # torchvision's ResNet-50
PARAM_TOLERANCE = 0.01
LR_TERMS = ("key", "query", "composability", "softmax", "aggregation", "final", "prior")


@dataclass
class VerifyReport:
    """Everything ``lrbench verify`` shows; ``failures`` name the failed checks."""

    summary: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    lr_layers: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _gap(ours: float, paper: float | None) -> float | None:
    return None if paper is None else 100 * (ours - paper) / paper


def _check_params(name: str, params: int, closed: int, failures: list[str]) -> None:
    paper = PAPER_PARAMS_M.get(name)
    if name in EXACT_PARAMS and params != EXACT_PARAMS[name]:
        failures.append(f"params vs torchvision: {name} has {params:,} parameters, "
                        f"expected exactly {EXACT_PARAMS[name]:,}")
    if paper is not None and abs(params / 1e6 - paper) > PARAM_TOLERANCE * paper:
        failures.append(f"params vs paper: {name} has {params / 1e6:.2f}M parameters, paper "
                        f"{paper}M: off by more than {PARAM_TOLERANCE:.0%}")
    if params != closed:
        failures.append(f"params vs closed form: {name} has {params:,}, closed form {closed:,}")


def verify_network(name: str, model: nn.Module, report: VerifyReport, size: int = 224,
                   flop_counter: bool = True) -> None:
    """Count one network three ways and append its rows and failures to ``report``."""
    start = time.perf_counter()
    config, failures = CONFIGS[name], report.failures
    params, closed_params = parameter_count(model), network_params(config)
    _check_params(name, params, closed_params, failures)

    x = torch.randn(1, 3, size, size)
    model = model.eval()
    fv = count_macs(model, (x,))
    for op, n in fv.unsupported.items():
        failures.append(f"unsupported op: {name}: {op} ({n}x) has no counting rule")
    layers = network_layers(config, size, size)
    closed = sum(layer.total for layer in layers)
    if fv.total != closed:
        failures.append(f"fvcore vs closed form: {name}: fvcore {fv.total:,} MACs, "
                        f"closed form {closed:,}")
    for stage, modules in MODULES_OF_STAGE.items():
        stage_closed = sum(layer.total for layer in layers if layer.stage == stage)
        stage_fv = sum(fv.by_module.get(module, 0) for module in modules)
        stage_params = sum(layer.params for layer in layers if layer.stage == stage)
        report.stages.append({"network": name, "stage": stage, "closed form MACs": stage_closed,
                              "fvcore MACs": stage_fv, "closed form params": stage_params})
        if stage_fv != stage_closed:
            failures.append(f"fvcore vs closed form: {name} stage {stage}: fvcore {stage_fv:,}, "
                            f"closed form {stage_closed:,}")
    for layer in (layer for layer in layers if layer.kind == "lr"):
        report.lr_layers.append(_lr_row(name, layer, fv.by_module.get(layer.name), failures))

    fc = cross_check(model, (x,), fv) if flop_counter else None
    if fc is not None and not fc.ok:
        failures.append(f"FlopCounterMode vs fvcore: {name}: {fc.flops:,} FLOPs, expected "
                        f"2 x fvcore = {fc.expected_flops:,} ({fc.by_op})")
    paper_g = PAPER_GFLOPS.get(name) if size == 224 else None  # the paper counts at 224x224
    report.summary.append({
        "network": name, "params": params, "params paper (M)": PAPER_PARAMS_M.get(name),
        "params gap %": _gap(params / 1e6, PAPER_PARAMS_M.get(name)),
        "GMACs fvcore": fv.total / 1e9, "GMACs closed form": closed / 1e9,
        "GFLOPs paper": paper_g, "FLOPs gap %": _gap(fv.total / 1e9, paper_g),
        "FlopCounterMode GFLOPs": None if fc is None else fc.flops / 1e9,
        "fvcore == closed form": fv.total == closed,
    })
    report.seconds[name] = time.perf_counter() - start


def _lr_row(name: str, layer, fv_count: int | None, failures: list[str]) -> dict:
    i = layer.info
    C, H, W, k, m, s = i["C"], i["H"], i["W"], i["k"], i["m"], i["stride"]
    without_prior = layer.total - layer.macs["prior"]
    secondary = secondary_formula(C, H, W, k, m, s)
    if fv_count != layer.total:
        failures.append(f"fvcore vs closed form: {name} LR layer {layer.name}: fvcore "
                        f"{fv_count}, closed form {layer.total:,}")
    return {"network": name, "layer": layer.name, **{n: i[n] for n in ("C", "H", "k", "m", "G")},
            "stride": s, **{t: layer.macs[t] for t in LR_TERMS}, "closed form": layer.total,
            "fvcore": fv_count, "secondary formula": float(secondary),
            "secondary - terms (no prior)": float(secondary - without_prior),
            "predicted excess": float(secondary_excess(C, H, W, k, m, s))}


def verify(names: tuple[str, ...] = tuple(NETWORKS), *, size: int = 224, impl: str = "unfold",
           models: Mapping[str, nn.Module] | None = None, flop_counter: bool = True,
           out_dir: Path | str | None = "reports/verify") -> VerifyReport:
    """Verify ``names`` (built as specified, or taken from ``models``) and write the reports.

    Args:
        names: networks (keys of :data:`lrbench.models.NETWORKS`).
        size: input height and width.
        impl: implementation the LR layers are traced with (all count the same; unfold is the
            fastest to trace on a CPU).
        models: replacement models by name (the tests pass deliberately changed ones).
        flop_counter: also run the ``FlopCounterMode`` cross-check.
        out_dir: where the CSV and Markdown files go; ``None`` writes nothing.
    """
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise ValueError(f"names must be among {list(NETWORKS)}, got {unknown}")
    report = VerifyReport()
    models = models or {}
    for name in names:
        kwargs = {"impl": impl} if CONFIGS[name].spatial == "lr" else {}
        model = models[name] if name in models else build(name, **kwargs)
        verify_network(name, model, report, size, flop_counter)
    report.gaps = gap_rows(tuple(n for n in PAPER_GFLOPS if n in names))
    if out_dir is not None:
        from lrbench.complexity.verify_report import write_reports

        report.files = write_reports(report, Path(out_dir))
    return report
