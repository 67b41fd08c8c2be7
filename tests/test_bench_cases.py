"""The matrix: presets expand to unique cases, overrides replace axes, shards partition."""

from __future__ import annotations

import pytest

from lrbench.bench.matrix import axes
from lrbench.bench.matrix.axes import parse_values
from lrbench.bench.matrix.cases import (
    DEFAULT_BASELINE,
    Case,
    expand,
    parse_case_id,
    parse_shard,
    shard,
    with_impl,
)
from lrbench.bench.matrix.plan import make_plan
from lrbench.bench.matrix.presets import LRNET50_LAYERS, LRNET50_STAGES, PRESETS, get_preset
from lrbench.complexity.network import network_layers
from lrbench.models import CONFIGS


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_expands_to_unique_valid_cases(name):
    cases = expand(get_preset(name))
    ids = [case.case_id for case in cases]
    assert cases and len(ids) == len(set(ids))
    assert {case.target for case in cases} == {g["target"] for g in PRESETS[name]["groups"]}


def test_paper_preset_has_the_lrnet50_stage_shapes_and_the_resnet_conv():
    cases = expand(get_preset("paper"))
    op_shapes = {(c.B, c.C, c.H, c.k, c.m) for c in cases if c.target == "op"}
    assert op_shapes == {(8, s["C"], s["H"], 7, 8) for s in LRNET50_STAGES}
    convs = {(c.C, c.H) for c in cases if c.target == "conv3x3"}
    assert convs == {(64, 56), (128, 28), (256, 14), (512, 7)}
    assert {c.impl for c in cases if c.target == "layer"} >= {"unfold", "fused_cpu"}


def test_layers_preset_has_every_lr_layer_shape_of_lrnet50_forward_and_backward():
    """LRNET50_LAYERS is the network's own list (network_layers, the complexity model's), with
    no shape left out or repeated; the preset times each one forward, backward and both."""
    layers = [layer.info for layer in network_layers(CONFIGS["lrnet50"], 224, 224)
              if layer.kind == "lr"]
    distinct = list(dict.fromkeys((i["C"], i["H"], i["W"], i["stride"], i["k"], i["m"])
                                  for i in layers))
    assert [(s["C"], s["H"], s["W"], s["stride"], 7, 8) for s in LRNET50_LAYERS.values()] == distinct
    assert [name for name, s in LRNET50_LAYERS.items() if s["stride"] == 2] == [
        "stem", "res3.0", "res4.0", "res5.0"]
    cases = expand(get_preset("layers"))
    fused = {(c.C, c.H, c.stride, c.pass_, c.memory_format) for c in cases if c.impl == "fused_cpu"}
    assert fused == {(s["C"], s["H"], s["stride"], p, f) for s in LRNET50_LAYERS.values()
                     for p in ("fwd", "bwd", "fwd_bwd") for f in ("contiguous", "channels_last")}
    assert {(c.B, c.k, c.m, c.target) for c in cases} == {(8, 7, 8, "op")}


def test_the_baseline_comes_first_and_every_case_names_it():
    cases = [c for c in expand(get_preset("paper")) if c.target == "op"]
    assert {c.baseline for c in cases} == {DEFAULT_BASELINE}
    first_seen = {}
    for index, case in enumerate(cases):
        first_seen.setdefault(with_impl(case.case_id, "x"), index)
        if case.impl == case.baseline:
            assert first_seen[with_impl(case.case_id, "x")] == index


def test_a_group_can_name_another_baseline_and_fixed_targets_have_none():
    preset = {"groups": [
        {"target": "op", "impls": ["unfold", "reference"], "baseline": "reference",
         "shapes": [{"B": 1, "C": 4, "H": 5, "W": 5, "k": 3, "m": 2, "stride": 1}],
         "dtypes": ["float32"], "devices": ["cpu"], "passes": ["fwd"]},
        {"target": "conv3x3", "shapes": [{"B": 1, "C": 4, "H": 5, "W": 5, "stride": 1}],
         "dtypes": ["float32"], "devices": ["cpu"], "passes": ["fwd"]}]}
    cases = expand(preset)
    assert [(c.impl, c.baseline) for c in cases if c.target == "op"] == [
        ("reference", "reference"), ("unfold", "reference")]
    assert [c.baseline for c in cases if c.target == "conv3x3"] == [""]


def test_case_ids_round_trip_through_one_vocabulary():
    case = expand(get_preset("quick"))[0]
    parts = parse_case_id(case.case_id)
    assert parts == {"target": case.target, "impl": case.impl, "shape": case.label(),
                     "dtype": case.dtype, "device": case.device, "pass": case.pass_}
    assert parse_case_id(with_impl(case.case_id, "other"))["impl"] == "other"
    with pytest.raises(ValueError, match="case id"):
        parse_case_id("op:unfold:B1")


def test_every_axis_is_a_cli_option_and_an_override():
    from lrbench.commands.run import run_cmd

    options = {p.name for p in run_cmd.params}
    for axis in axes.AXES:
        assert f"{axis.name}_axis" in options
    plan = make_plan("quick", {"kernel": "3", "channels": "8", "m": "4", "batch": "1",
                               "size": "6", "stride": "2", "impl": "unfold", "dtype": "float32",
                               "device": "cpu", "pass": "fwd"})
    op = [c for c in plan.cases if c.target == "op"]
    assert {(c.k, c.C, c.m, c.B, c.H, c.stride, c.impl) for c in op} == {
        (3, 8, 4, 1, 6, 2, "unfold")}


def test_overrides_replace_axes_only_where_they_apply():
    cases = expand(get_preset("quick"), {"kernel": [3, 5], "impl": ["unfold"], "pass": ["fwd"]})
    lr = [c for c in cases if c.target in ("op", "layer")]
    assert {c.k for c in lr} == {3, 5} and {c.impl for c in lr} == {"unfold"}
    assert {c.pass_ for c in cases} == {"fwd"}
    conv = [c for c in cases if c.target == "conv3x3"]
    assert conv and {c.k for c in conv} == {3} and {c.impl for c in conv} == {"torch"}


def test_size_override_sets_height_and_width():
    cases = expand(get_preset("quick"), {"size": [10, 12]})
    assert {(c.H, c.W) for c in cases} == {(10, 10), (12, 12)}


@pytest.mark.parametrize("overrides, match", [
    ({"impl": ["magic"]}, "--impl"),
    ({"dtype": ["float8"]}, "--dtype"),
    ({"device": ["tpu"]}, "--device"),
    ({"pass": ["sideways"]}, "--pass"),
    ({"format": ["nhwc"]}, "--format"),
    ({"kernel": [4]}, "kernel_size"),
    ({"pass": ["train"]}, "no case"),
])
def test_bad_overrides_are_value_errors_naming_the_axis(overrides, match):
    with pytest.raises(ValueError, match=match):
        expand(get_preset("quick"), overrides)


def test_parse_values():
    assert parse_values("kernel", "3, 5,7") == [3, 5, 7]
    with pytest.raises(ValueError, match="--kernel"):
        parse_values("kernel", "3,x")
    with pytest.raises(ValueError, match="--batch"):
        parse_values("batch", "0")
    with pytest.raises(ValueError, match="unknown override"):
        parse_values("colour", "red")


@pytest.mark.parametrize("text", ["3/2", "0/2", "1/0", "a/b", "1", "1/2/3"])
def test_bad_shards(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_shards_partition_the_matrix():
    cases = expand(get_preset("paper"))
    pieces = [shard(cases, i, 3) for i in (1, 2, 3)]
    ids = [c.case_id for piece in pieces for c in piece]
    assert sorted(ids) == sorted(c.case_id for c in cases)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_case_ids_name_every_axis():
    case = Case("op", "unfold", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd_bwd")
    assert case.case_id == "op:unfold:B8-C100-56x56-k7-m8-s1:float32:cpu:fwd_bwd"  # as ever
    nhwc = Case("op", "unfold", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd_bwd",
                memory_format="channels_last")
    assert nhwc.case_id == "op:unfold:B8-C100-56x56-k7-m8-s1-channels_last:float32:cpu:fwd_bwd"
    assert nhwc.as_row()["memory_format"] == "channels_last"
    with pytest.raises(ValueError, match="target"):
        Case("nothing", "unfold", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd")
    with pytest.raises(ValueError, match="memory_format of a natten case must be one of"):
        Case("natten", "natten", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd",
             memory_format="channels_last")
    with pytest.raises(ValueError, match="memory_format"):
        Case("op", "unfold", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd", memory_format="nhwc")


def test_format_override_applies_to_the_targets_with_the_axis_only():
    preset = {"groups": get_preset("peers")["groups"] + get_preset("network")["groups"]}
    cases = expand(preset, {"format": ["contiguous", "channels_last"]})
    by_target = {}
    for case in cases:
        by_target.setdefault(case.target, set()).add(case.memory_format)
    for target in ("op", "conv3x3"):
        assert by_target[target] == {"contiguous", "channels_last"}
    for target in ("natten", "lrnet50", "resnet50"):  # natten: NCHW only; networks: a trial
        assert by_target[target] == {"contiguous"}
    rows = {case.target: case.as_row()["memory_format"] for case in cases}
    assert rows["lrnet50"] == ""  # the trial's, filled in by the run
    assert rows["natten"] == "contiguous"
    # the default stays NCHW: a preset without formats has the case ids it always had
    assert {c.memory_format for c in expand(preset)} == {"contiguous"}


def test_plan_applies_timing_overrides_and_shard_label():
    plan = make_plan("quick", {"impl": "unfold"}, "1/2", min_rounds=2, max_time=0.01)
    assert plan.timing.min_rounds == 2 and plan.timing.max_time == 0.01
    assert plan.label == "quick-shard-1-of-2"
    with pytest.raises(ValueError, match="preset"):
        make_plan("nope")


def test_a_preset_group_with_an_unknown_format_is_an_error_not_an_empty_matrix():
    group = {**get_preset("layers")["groups"][0], "formats": ["channels-last"]}
    with pytest.raises(ValueError, match="unknown 'channels-last'"):
        expand({"groups": [group]})
