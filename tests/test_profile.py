"""lrbench profile: every forward operator and backward node charged to the module (kind, LR layer)
that made it, the op's backward to the op; the command writes its table, CSV and PNG."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch.profiler import ProfilerActivity, profile

from lrbench.bench.measure.profile import OP, OTHER, ProfileConfig, attribute, instrument, run_profile
from lrbench.cli import main
from lrbench.layer import LocalRelation2d


def test_each_part_of_a_layer_is_charged_to_its_kind_forward_and_backward():
    layer = LocalRelation2d(16, 5, impl="unfold")
    assert instrument(layer) == [""]
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    layer(x).sum().backward()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        layer(x).sum().backward()
    spent = attribute(prof.events())
    for kind in (OP, "LR final 1x1", "LR key/query 1x1", "LR prior"):
        assert spent[(kind, "", "fwd")] > 0 and spent[(kind, "", "bwd")] > 0, kind
    # unfold's op is many autograd nodes: all of them are the op's, none is left to "other"
    # (which holds only the sum and the gradient accumulation into .grad).
    assert spent[(OP, "", "bwd")] > spent.get((OTHER, "", "bwd"), 0.0)
    kinds = {kind for kind, _, _ in spent}
    assert "conv 1x1" not in kinds  # the prior's convs are the prior's


def test_the_ops_backward_run_inside_the_layers_node_is_the_ops_and_counted_once():
    """The fast path runs the op's backward inside its own node's (a nested autograd.grad): the
    kernel's time goes to the op, not to the layer's key/query node, and nothing is counted twice
    (the charged times add up to no more than the top-level events')."""
    layer = LocalRelation2d(16, 5, stride=2, impl="fused_cpu")
    instrument(layer)
    x = torch.randn(2, 16, 15, 15, requires_grad=True)
    layer(x).sum().backward()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        layer(x).sum().backward()
    events = prof.events()
    spent = attribute(events)
    kernel = sum(e.cpu_time_total for e in events if e.name == "lrbench::fused_cpu_backward") / 1e3
    assert spent[(OP, "", "bwd")] >= kernel > 0
    top = sum(e.cpu_time_total for e in events if e.cpu_parent is None) / 1e3
    assert 0 < sum(spent.values()) <= top * 1.001


@pytest.mark.parametrize("impl", ["fused_cpu", "floor"])
def test_a_training_step_profile_has_every_lr_layer_and_sums_to_the_pass(impl):
    config = ProfileConfig("lrnet26", train=True, impl=impl, batch=2, size=32, rounds=1)
    result = run_profile(config)
    assert len(result.layers) == 9  # stem + 2 blocks x 4 stages
    attributed = sum(v["fwd"] + v["bwd"] for v in result.kinds.values())
    assert 0 < attributed <= result.profiled_ms * 1.01
    assert result.kinds["conv 1x1"]["bwd"] > 0 and result.kinds["batch norm"]["fwd"] > 0
    for name, v in result.layers.items():
        assert v["layer fwd"] >= v["op fwd"] and v["layer bwd"] >= v["op bwd"] > 0, name
    if impl == "floor":  # a view of x: its forward is nearly free
        assert result.kinds[OP]["fwd"] < result.kinds["LR final 1x1"]["fwd"]


def test_profile_config_rejects_bad_input():
    with pytest.raises(ValueError, match="network must be one of"):
        ProfileConfig("lrnet51")
    with pytest.raises(ValueError, match="impl applies to LR-Net only"):
        ProfileConfig("resnet50", impl="unfold")
    with pytest.raises(ValueError, match="batch must be >= 2 with train"):
        ProfileConfig("lrnet26", train=True, batch=1)


def test_the_command_writes_table_csv_and_png_with_its_command_line(tmp_path):
    out = tmp_path / "prof"
    args = ["profile", "resnet26", "--channels-last", "--batch", "1", "--size", "32",
            "--rounds", "1", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = (out / "profile.md").read_text()
    assert f"`lrbench profile resnet26 --channels-last --batch 1 --size 32 --rounds 1 --out {out}`" in text
    assert "| conv 3x3 |" in text and "channels_last" in text and "Time per LR layer" not in text
    assert (out / "profile.png").stat().st_size > 1000
    assert (out / "profile.csv").read_text().startswith("section,name,part,ms")
    bad = CliRunner().invoke(main, ["profile", "lrnet26", "--impl", "nope"])
    assert bad.exit_code == 2 and "--impl" in bad.output and "floor" in bad.output
