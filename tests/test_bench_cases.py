"""The matrix: presets expand to unique cases, overrides replace axes, shards partition."""

from __future__ import annotations

import pytest

from lrbench.bench.cases import Case, expand, parse_list, parse_shard, shard
from lrbench.bench.plan import make_plan
from lrbench.bench.presets import LRNET50_STAGES, PRESETS, get_preset


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


def test_unfold_comes_first_so_speedups_have_a_baseline():
    cases = [c for c in expand(get_preset("paper")) if c.target == "op"]
    first_seen = {}
    for index, case in enumerate(cases):
        first_seen.setdefault(case.baseline("x").case_id, index)
        if case.impl == "unfold":
            assert first_seen[case.baseline("x").case_id] == index


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
    ({"kernel": [4]}, "kernel_size"),
    ({"pass": ["train"]}, "no case"),
])
def test_bad_overrides_are_value_errors_naming_the_axis(overrides, match):
    with pytest.raises(ValueError, match=match):
        expand(get_preset("quick"), overrides)


def test_parse_list():
    assert parse_list("3, 5,7", name="kernel", kind=int) == [3, 5, 7]
    with pytest.raises(ValueError, match="--kernel"):
        parse_list("3,x", name="kernel", kind=int)
    with pytest.raises(ValueError, match="--batch"):
        parse_list("0", name="batch", kind=int)


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
    assert case.case_id == "op:unfold:B8-C100-56x56-k7-m8-s1:float32:cpu:fwd_bwd"
    with pytest.raises(ValueError, match="target"):
        Case("nothing", "unfold", 8, 100, 56, 56, 7, 8, 1, "float32", "cpu", "fwd")


def test_plan_applies_timing_overrides_and_shard_label():
    plan = make_plan("quick", {"impl": "unfold"}, "1/2", min_rounds=2, max_time=0.01)
    assert plan.timing.min_rounds == 2 and plan.timing.max_time == 0.01
    assert plan.label == "quick-shard-1-of-2"
    with pytest.raises(ValueError, match="preset"):
        make_plan("nope")
