"""The ratios the report shows between two rows of one run, and its table of the backward against
the forward: each ratio with the interval of the rows' rounds, every LR-Net-50 layer named."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lrbench.bench.comparison.ratios import Ratio, ratio
from lrbench.bench.matrix.presets import LRNET50_LAYERS
from lrbench.bench.results import records
from lrbench.bench.results.report import build_markdown
from lrbench.bench.results.stats import passes_interval
from lrbench.bench.sections.backward import BWD_OVER_FWD, FWD_BWD_OVER_FWD, backward_cost, layer_name
from tests.helpers import planted_row, planted_run


def test_a_ratio_is_of_the_medians_with_the_rounds_interval_and_none_without_rounds():
    slow = pd.Series(planted_row("op", "unfold", 3.0, pass_="fwd_bwd", seed=1))
    fast = pd.Series(planted_row("op", "unfold", 1.0, seed=2))
    r = ratio(slow, fast)
    assert r.value == pytest.approx(slow["median_s"] / fast["median_s"])
    assert r.passes == 4 and r.low < r.value < r.high
    expected = passes_interval(records.parse_passes(fast["rounds_s"]),
                               records.parse_passes(slow["rounds_s"]))
    assert (r.low, r.high) == pytest.approx(expected)
    old = pd.Series({**planted_row("op", "unfold", 1.0, seed=2, rounds=False), "rounds_s": math.nan})
    bare = ratio(slow, old)
    assert bare.passes == 0 and math.isnan(bare.low) and bare.text() == f"{bare.value:.2f}"
    assert r.text() == f"{r.value:.2f} [{r.low:.2f}, {r.high:.2f}]"
    assert r.text(unit="x").startswith(f"{r.value:.2f}x [")
    for missing in (None, math.nan, pd.NA, ""):
        assert records.parse_passes(missing) == []
        assert ratio(slow, pd.Series({**fast, "rounds_s": missing})).passes == 0
    with pytest.raises(ValueError, match="to: a row with a positive median_s"):
        ratio(slow, pd.Series({**fast, "median_s": 0.0}))
    share = Ratio(0.8, 0.7, 0.9, 3).complement()
    assert (share.value, share.low, share.high) == pytest.approx((20.0, 10.0, 30.0))


def _layer_rows(name: str, impl: str, fwd_ms: float, passes=("fwd", "bwd", "fwd_bwd"), **extra):
    layer = LRNET50_LAYERS[name]
    times = {"fwd": fwd_ms, "bwd": 2.5 * fwd_ms, "fwd_bwd": 3.5 * fwd_ms}
    return [planted_row("op", impl, times[p], pass_=p, B=8, k=7, m=8, seed=i, **layer, **extra)
            for i, p in enumerate(passes)]


def test_the_backward_table_pairs_each_case_forward_and_backward():
    frame = pd.DataFrame([
        *_layer_rows("stem", "fused_cpu", 12.0),
        *_layer_rows("res4.0", "unfold", 40.0, passes=("fwd", "fwd_bwd")),
        *_layer_rows("res5", "fused_cpu", 0.7, passes=("fwd",)),  # no backward: no row
        {**planted_row("op", "fused_cpu", 9.0, pass_="bwd", B=8, k=7, m=8, **LRNET50_LAYERS["res2"]),
         "status": "failed"},  # a failed row pairs with nothing
        *_layer_rows("res2", "fused_cpu", 3.0, passes=("fwd",)),
        planted_row("op", "fused_cpu", 1.0, B=2),  # not an LR-Net-50 layer
        planted_row("op", "fused_cpu", 2.5, pass_="bwd", B=2),
    ])
    table = backward_cost(frame).set_index("LR-Net-50 layer")
    assert sorted(table.index) == ["", "res4.0", "stem"]
    stem = table.loc["stem"]
    rows = {r["pass"]: pd.Series(r) for r in frame.to_dict("records")[:3]}
    assert stem[FWD_BWD_OVER_FWD] == ratio(rows["fwd_bwd"], rows["fwd"]).text()
    assert stem[BWD_OVER_FWD] == ratio(rows["bwd"], rows["fwd"]).text()
    assert stem[FWD_BWD_OVER_FWD].startswith("3.5") and stem["passes"] == 4
    assert stem["impl"] == "fused_cpu" and stem["shape"] == "B8-C64-224x224-k7-m8-s2"
    unfold = table.loc["res4.0"]
    assert unfold["impl"] == "unfold" and unfold[BWD_OVER_FWD] == "" and pd.isna(unfold["bwd ms"])
    assert table.loc[""][BWD_OVER_FWD].startswith("2.5")


def test_layer_names_need_the_whole_shape():
    stem = pd.Series({"B": 8, "k": 7, "m": 8, **LRNET50_LAYERS["stem"]})
    assert layer_name(stem) == "stem"
    for field, other in (("B", 4), ("k", 5), ("m", 4), ("stride", 1), ("C", 65)):
        changed = stem.copy()
        changed[field] = other
        assert layer_name(changed) == "", field


def test_the_report_has_the_backward_section(tmp_path):
    frame = planted_run(tmp_path)
    markdown = build_markdown(frame, tmp_path, [])
    section = markdown.split("## The backward against the forward")[1].split("\n## ")[0]
    assert "Welch's t-interval" in section  # the section says what its intervals are
    table = backward_cost(frame)
    assert len(table) == 3 * 8  # 3 implementations x (4 kernel sizes + 4 sizes)
    for cell in table[FWD_BWD_OVER_FWD]:
        assert f" {cell} |" in section and "[" in cell  # the planted rounds give an interval


def test_a_compiled_variant_is_a_case_of_its_own():
    eager = _layer_rows("res3", "unfold", 10.0, passes=("fwd", "fwd_bwd"))
    compiled = [planted_row("op", "unfold", ms, pass_=p, compile="inductor", B=8, k=7, m=8, seed=9,
                            **LRNET50_LAYERS["res3"]) for p, ms in (("fwd", 5.0), ("fwd_bwd", 25.0))]
    table = backward_cost(pd.DataFrame([*eager, *compiled])).set_index("impl")
    assert sorted(table.index) == ["unfold", "unfold@inductor"]
    assert table.loc["unfold", FWD_BWD_OVER_FWD].startswith("3.5")
    assert table.loc["unfold@inductor", FWD_BWD_OVER_FWD].startswith("5.0")


def test_each_memory_format_is_a_case_of_its_own():
    nchw = _layer_rows("stem", "fused_cpu", 12.0, passes=("fwd", "fwd_bwd"))
    nhwc = [planted_row("op", "fused_cpu", ms, pass_=p, memory_format="channels_last", B=8, k=7,
                        m=8, seed=5, **LRNET50_LAYERS["stem"]) for p, ms in (("fwd", 10.0),
                                                                             ("fwd_bwd", 40.0))]
    table = backward_cost(pd.DataFrame([*nchw, *nhwc])).set_index("memory format")
    assert sorted(table.index) == ["channels_last", "contiguous"]
    assert set(table["LR-Net-50 layer"]) == {"stem"}  # the layer is named in either format
    assert table.loc["channels_last", FWD_BWD_OVER_FWD].startswith("4.0")
    assert table.loc["contiguous", FWD_BWD_OVER_FWD].startswith("3.5")
