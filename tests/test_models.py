"""The networks of SPEC section 3: layout, parameter counts, stride placement, stage table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench import LocalRelation2d, set_implementation
from lrbench.complexity.network import network_params
from lrbench.models import (
    CONFIGS,
    NETWORKS,
    BottleneckNet,
    NetConfig,
    build,
    describe,
    lrnet26,
    lrnet50,
    parameter_count,
    resnet50,
    stage_rows,
)
from lrbench.models.config import STAGE_STRIDES


def test_resnet50_has_torchvisions_parameter_count():
    assert parameter_count(resnet50()) == 25_557_032


@pytest.mark.parametrize("name,paper_millions", [("lrnet50", 23.3), ("lrnet26", 14.7),
                                                 ("resnet50", 25.5)])
def test_parameters_within_one_percent_of_the_paper(name, paper_millions):
    params = parameter_count(build(name))
    assert abs(params / 1e6 - paper_millions) <= 0.01 * paper_millions


@pytest.mark.parametrize("name", list(NETWORKS))
def test_built_parameters_equal_the_closed_form(name):
    assert parameter_count(build(name)) == network_params(CONFIGS[name])


def test_lrnet_uses_local_relation_with_the_specified_settings():
    model = lrnet50()
    layers = [m for m in model.modules() if isinstance(m, LocalRelation2d)]
    assert len(layers) == 1 + sum(CONFIGS["lrnet50"].blocks)  # the stem's and one per block
    stem = model.conv1[3]
    assert isinstance(stem, LocalRelation2d)
    assert (stem.channels, stem.kernel_size, stem.stride, stem.m) == (64, 7, 2, 8)
    assert isinstance(model.conv1[0], nn.Conv2d) and model.conv1[0].kernel_size == (1, 1)
    widths = [model.layer1[0].conv2.channels, model.layer2[0].conv2.channels,
              model.layer3[0].conv2.channels, model.layer4[0].conv2.channels]
    assert widths == [100, 200, 400, 800]
    assert all(layer.kernel_size == 7 and layer.m == 8 for layer in layers)


@pytest.mark.parametrize("stride_on", ["spatial", "first"])
def test_stride_placement(stride_on):
    model = BottleneckNet(CONFIGS["resnet26"].with_(stride_on=stride_on))
    for i, stride in enumerate(STAGE_STRIDES):
        block = getattr(model, f"layer{i + 1}")[0]
        on_spatial = block.conv2.stride[0]
        on_first = block.conv1.stride[0]
        expected = (stride, 1) if stride_on == "spatial" else (1, stride)
        assert (on_spatial, on_first) == expected


def test_forward_shapes_follow_the_stage_table():
    model = lrnet26(kernel_size=3, impl="unfold").eval()
    size = 64
    seen = {}
    for name in ("maxpool", "layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda mod, args, out, name=name: seen.__setitem__(name, tuple(out.shape)))
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 1000)
    rows = {r["stage"]: r["output size"] for r in stage_rows(model.config, size)}
    for stage, module in zip(("res2", "res3", "res4", "res5"),
                             ("layer1", "layer2", "layer3", "layer4"), strict=True):
        hw = seen[module][-1]
        assert rows[stage] == f"{hw}x{hw}"
    assert seen["layer4"][1] == 2048


def test_describe_prints_the_papers_rows():
    config = CONFIGS["lrnet50"]
    text = describe(config)
    for n, mid, out in zip(config.blocks, config.widths, config.out_widths, strict=True):
        assert f"[1x1, {mid}; 7x7 LR, {mid}; 1x1, {out}] x {n}" in text
    assert "1x1, 64; 7x7 LR, 64, stride 2" in text
    assert [r["output size"] for r in stage_rows(config)][:5] == [
        "112x112", "56x56", "28x28", "14x14", "7x7"]


def test_state_dict_does_not_depend_on_the_implementation():
    a, b = lrnet26(impl="unfold"), lrnet26(impl="reference")
    assert a.state_dict().keys() == b.state_dict().keys()
    assert set_implementation(a, "im2col_matmul") == 1 + sum(CONFIGS["lrnet26"].blocks)
    assert all(m.impl == "im2col_matmul" for m in a.modules() if isinstance(m, LocalRelation2d))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="name"):
        build("resnet18")
    with pytest.raises(ValueError, match="spatial"):
        NetConfig("x", (1, 1, 1, 1), (8, 8, 8, 8), spatial="attention", kernel_size=3,
                  stem="conv7")
    with pytest.raises(ValueError, match="blocks"):
        NetConfig("x", (1, 1, 1), (8, 8, 8, 8), spatial="conv", kernel_size=3, stem="conv7")
    with pytest.raises(ValueError, match="impl"):
        lrnet26(impl="nope")
