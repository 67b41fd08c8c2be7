"""The floor of the network preset: LR-Net with the op replaced by a free stand-in, as rows of its
own (never an implementation of the op), paired in the report with LR-Net and ResNet-50."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lrbench import registry
from lrbench.bench.matrix.cases import FLOOR, expand
from lrbench.bench.matrix.macs import case_macs
from lrbench.bench.matrix.presets import get_preset
from lrbench.bench.measure.floor import floor_network, stand_in
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.results import records
from lrbench.bench.results.floor import against_the_floor
from lrbench.bench.results.metrics import derive
from lrbench.complexity import op_macs
from lrbench.complexity.network import network_layers
from lrbench.inputs import Shape, make_inputs
from lrbench.layer import LocalRelation2d
from lrbench.models import CONFIGS, lrnet50, resnet26
from lrbench.op import local_relation


@pytest.mark.parametrize("stride,size", [(1, 7), (2, 7), (2, 8), (3, 10)])
def test_stand_in_has_the_ops_shape_and_a_gradient_for_x_only(stride, size):
    shape = Shape(B=2, C=6, H=size, W=size + 1, k=3, m=2, stride=stride)
    x, query, key, prior = make_inputs(shape, requires_grad=True)
    out = stand_in(x, query, key, prior, kernel_size=3, stride=stride)
    expected = local_relation(x, query, key, prior, kernel_size=3, stride=stride, impl="unfold")
    assert out.shape == expected.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert query.grad is None and key.grad is None and prior.grad is None


def test_floor_network_swaps_every_layers_op_and_keeps_the_output_shape():
    torch.manual_seed(0)
    model = floor_network(lrnet50(impl="unfold"))
    layers = [mod for mod in model.modules() if isinstance(mod, LocalRelation2d)]
    assert len(layers) == 17 and all(layer.op is stand_in for layer in layers)  # stem + 16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    assert LocalRelation2d.op is local_relation  # other networks keep the op
    with pytest.raises(ValueError, match="LocalRelation2d"):
        floor_network(resnet26())


def test_every_lrnet_case_of_the_network_preset_has_a_floor_row_outside_the_registry():
    for impls in (None, ["fused_cpu"]):
        cases = expand(get_preset("network"), {"impl": impls})
        lrnet = {(c.label(), c.dtype, c.device, c.pass_) for c in cases if c.target == "lrnet50"}
        floors = [c for c in cases if c.impl == FLOOR]
        assert {(c.label(), c.dtype, c.device, c.pass_) for c in floors} == lrnet
        assert all(c.target == "lrnet50" and c.baseline == "" for c in floors)
    assert FLOOR not in registry.implementations()
    assert not [c for c in expand(get_preset("paper")) if c.impl == FLOOR]


def test_floor_macs_are_the_networks_less_the_ops_terms():
    case = next(c for c in expand(get_preset("network")) if c.impl == FLOOR)
    layers = network_layers(CONFIGS["lrnet50"], 224, 224)
    lr_layers = [layer for layer in layers if layer.kind == "lr"]
    op = 0
    for layer in lr_layers:
        info = layer.info
        Ho = (info["H"] - 1) // info["stride"] + 1
        op += op_macs(1, info["C"], info["G"], info["k"], Ho, Ho)
    full = sum(layer.total for layer in layers)
    assert len(lr_layers) == 17 and op > 0
    assert case_macs(case)[0] == case.B * (full - op)


def _row(target, impl, pass_, seconds, fmt="contiguous"):
    return {"case_id": f"{target}:{impl}:B8-224x224:float32:cpu:{pass_}", "target": target,
            "impl": impl, "B": 8, "dtype": "float32", "device": "cpu", "pass": pass_,
            "status": "ok", "median_s": seconds, "memory_format": fmt, "macs": 1.0,
            "baseline": "unfold" if impl not in ("torch", FLOOR) else ""}


def test_the_report_pairs_lrnet_with_resnet_and_its_floor():
    frame = pd.DataFrame([
        _row("lrnet50", "fused_cpu", "train", 3.0, "channels_last"),
        _row("lrnet50", "unfold", "train", 6.0),
        _row("lrnet50", FLOOR, "train", 2.0),
        _row("resnet50", "torch", "train", 1.5),
        _row("lrnet50", "fused_cpu", "fwd", 1.0),  # no floor, no ResNet for fwd: no row
    ])
    table = against_the_floor(frame).set_index("impl")
    assert list(table.index) == ["fused_cpu", "unfold"]
    fused = table.loc["fused_cpu"]
    assert fused["LR-Net / ResNet-50"] == pytest.approx(2.0)
    assert fused["floor / ResNet-50"] == pytest.approx(2.0 / 1.5)
    assert fused["op share %"] == pytest.approx(100 / 3)
    assert fused["formats (LR-Net, floor, ResNet)"] == "channels_last, contiguous, contiguous"
    assert table.loc["unfold", "op share %"] == pytest.approx(100 * 4 / 6)
    derived = derive(frame.assign(**{c: float("nan") for c in ("cpu", "gpu", "threads")}))
    floor = derived[derived["impl"] == FLOOR].iloc[0]
    assert floor["baseline"] == "" and pd.isna(floor["speedup_vs_baseline"])


def test_a_floor_case_is_gated_and_timed(tmp_path):
    config = {"description": "test", "timing": {}, "groups": [{
        "target": "lrnet50", "impls": ["unfold"], "shapes": [{"B": 1, "H": 32, "W": 32}],
        "dtypes": ["float32"], "devices": ["cpu"], "passes": ["fwd"]}]}
    cases = [c for c in expand(config) if c.impl == FLOOR]
    run_matrix(cases, tmp_path, timing=Timing(min_rounds=1, max_time=0.001))
    row = records.load(tmp_path).iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["oracle"].startswith("none (floor") and row["median_s"] > 0
