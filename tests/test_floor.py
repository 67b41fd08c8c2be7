"""The floor of the network preset: LR-Net with the op replaced by a free stand-in, as rows of its
own (never an implementation of the op), paired in the report with LR-Net and ResNet-50."""

from __future__ import annotations

import numpy as np
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
from lrbench.bench.results.metrics import derive
from lrbench.bench.results.stats import passes_interval
from lrbench.bench.sections.floor import MEASURES, against_the_floor, floor_table
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


def _row(target, impl, pass_, seconds, fmt="contiguous", passes=None):
    """A timed row; ``passes``: its rounds per pass (its median then theirs), else none kept."""
    if passes is not None:
        seconds = float(np.median([t for rounds in passes for t in rounds]))
    return {"case_id": f"{target}:{impl}:B8-224x224:float32:cpu:{pass_}", "target": target,
            "impl": impl, "B": 8, "dtype": "float32", "device": "cpu", "pass": pass_,
            "status": "ok", "median_s": seconds, "memory_format": fmt, "macs": 1.0,
            "baseline": "unfold" if impl not in ("torch", FLOOR) else "",
            "rounds_s": records.format_passes(passes) if passes is not None else float("nan")}


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
    # rows without rounds: no interval, and the report shows the bare ratio
    assert table[[f"{m} {end}" for m in MEASURES for end in ("low", "high")]].isna().all().all()
    assert (table["passes"] == 0).all()
    shown = floor_table(frame).set_index("impl")
    assert shown.loc["fused_cpu", "LR-Net / ResNet-50"] == "2.00"
    assert shown.loc["fused_cpu", "op share %"] == "33.3"
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


def _drifting(median_s, n_passes, seed, drift=0.08):
    """Rounds of ``n_passes`` passes, each moved as a whole by the machine (log-normal drift)."""
    rng = np.random.default_rng(seed)
    return [list(median_s * np.exp(rng.normal(0.0, drift)) * np.exp(rng.normal(0.0, 0.01, 7)))
            for _ in range(n_passes)]


@pytest.mark.parametrize("n_passes", [1, 3])
def test_each_ratio_of_the_network_section_comes_with_its_interval(n_passes):
    lr, floor, resnet = (_drifting(s, n_passes, seed) for s, seed in ((1.4, 1), (1.2, 2), (1.0, 3)))
    frame = pd.DataFrame([
        _row("lrnet50", "fused_cpu", "train", 0, "channels_last", passes=lr),
        _row("lrnet50", FLOOR, "train", 0, passes=floor),
        _row("resnet50", "torch", "train", 0, passes=resnet[:2] if n_passes > 1 else resnet),
    ])
    row = against_the_floor(frame).iloc[0]
    assert row["passes"] == min(n_passes, 2)
    for name in MEASURES:
        assert row[f"{name} low"] < row[name] < row[f"{name} high"], name
    expected = passes_interval(resnet[:2] if n_passes > 1 else resnet, lr)
    # the rows keep their rounds to 7 digits
    interval = (row["LR-Net / ResNet-50 low"], row["LR-Net / ResNet-50 high"])
    assert interval == pytest.approx(expected, rel=1e-5)
    low, high = passes_interval(lr, floor)  # floor / LR-Net; the share is 100 (1 - that)
    assert row["op share % low"] == pytest.approx(100 * (1 - high), rel=1e-5)
    assert row["op share % high"] == pytest.approx(100 * (1 - low), rel=1e-5)
    shown = floor_table(frame).iloc[0]
    assert shown["LR-Net / ResNet-50"] == (f"{row['LR-Net / ResNet-50']:.2f} "
                                           f"[{expected[0]:.2f}, {expected[1]:.2f}]")
    assert "LR-Net / ResNet-50 low" not in shown.index
