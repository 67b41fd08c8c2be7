"""Rows of the two memory formats are never set against each other: every table and figure that
pairs or groups rows by shape keeps NCHW and channels_last apart, and names channels_last where
it shows it; CSVs from before the format axis read as contiguous."""

from __future__ import annotations

import pandas as pd
import pytest

from lrbench.bench.figures.roofline import roofline
from lrbench.bench.figures.rows import families, family_title, sweep
from lrbench.bench.figures.stages import per_stage
from lrbench.bench.matrix.presets import LRNET50_STAGES, RESNET50_STAGES
from lrbench.bench.results import records
from lrbench.bench.results.report import layer_vs_conv
from lrbench.bench.sections.peers import against_the_peers
from tests.helpers import planted_row

FORMATS = ("contiguous", "channels_last")
SLOWER = {"contiguous": 1.0, "channels_last": 3.0}  # channels_last rows planted 3x as slow


@pytest.fixture
def frame(tmp_path):
    """One LR-Net-50 stage (op, layer, conv3x3) and a size sweep of the op, in both formats,
    written and read back."""
    stage, conv = LRNET50_STAGES[0], RESNET50_STAGES[0]
    rows = []
    for seed, fmt in enumerate(FORMATS):
        slow = SLOWER[fmt]
        common = {"memory_format": fmt, "seed": seed}
        rows += [planted_row("op", "unfold", 10 * slow, B=8, **stage, **common),
                 planted_row("op", "fused_cpu", 1 * slow, B=8, **stage, **common),
                 planted_row("layer", "fused_cpu", 2 * slow, B=8, **stage, **common),
                 planted_row("conv3x3", "torch", 0.5 * slow, B=8, C=conv["C"], H=conv["H"],
                             W=conv["W"], k=3, m=1, **common)]
        rows += [planted_row("op", "fused_cpu", slow * size * size / 64, H=size, W=size, **common)
                 for size in (8, 16, 24, 32)]
    records.write(pd.DataFrame(rows), tmp_path)
    return records.load(tmp_path)


def test_the_layer_is_set_against_the_conv_of_its_own_format(frame):
    table = layer_vs_conv(frame)
    assert len(table) == 2  # one per format, not four
    assert sorted(table["layer / conv3x3"].round(6)) == [4.0, 4.0]  # 2/0.5 and 6/1.5
    assert table["layer"].str.endswith("-channels_last").sum() == 1
    assert table["conv3x3"].str.endswith("-channels_last").sum() == 1
    same = table["layer"].str.endswith("-channels_last") == table["conv3x3"].str.endswith(
        "-channels_last")
    assert same.all()


def test_a_sweep_family_holds_one_format_and_its_title_names_channels_last(frame):
    found = families(frame, "H", least=3)
    assert len(found) == 2
    for family in found:
        assert family["memory_format"].nunique() == 1 and family["H"].nunique() == 4
    titles = [family_title(family, "H") for family in found]
    assert [t.endswith(", channels_last") for t in titles] == [False, True]  # NCHW first
    assert sweep(frame, "H")["memory_format"].unique().tolist() == ["contiguous"]  # the figures'


def test_a_network_row_adds_no_second_legend_entry(frame, tmp_path):
    network = planted_row("lrnet50", "fused_cpu", 300.0, B=8, C=3, H=224, W=224)
    records.write(pd.concat([frame, pd.DataFrame([{**network, "memory_format": "channels_last"}])]),
                  tmp_path)
    legend = [text.get_text() for ax in roofline(records.load(tmp_path)).axes
              for text in ax.get_legend().get_texts()]
    assert len(legend) == len(set(legend)) and "fused_cpu fwd" in legend


def test_stage_panels_roofline_and_peers_keep_formats_apart(frame):
    figure = per_stage(frame)
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert sorted(t.rsplit(", ", 1)[1] for t in titles if "op" in t) == sorted(FORMATS)
    legend = [text.get_text() for ax in roofline(frame).axes for text in ax.get_legend().get_texts()]
    assert {"fused_cpu fwd", "fused_cpu fwd channels_last"} <= set(legend)
    assert len(legend) == len(set(legend))  # one entry per series
    peers = against_the_peers(frame)  # the conv3x3 peer, against our best in each format
    peers = peers.set_index(peers["stage"].str.endswith("-channels_last").map(
        {False: "contiguous", True: "channels_last"}))
    assert sorted(peers.index) == sorted(FORMATS)
    for fmt in FORMATS:
        assert peers.loc[fmt, "ours ms"] == pytest.approx(SLOWER[fmt], rel=0.2)


def test_rows_from_before_the_format_axis_read_as_contiguous(tmp_path):
    old = {**planted_row("op", "unfold", 1.0), "memory_format": ""}
    network = {**planted_row("resnet50", "torch", 90.0, C=3, k=3, m=1), "memory_format": ""}
    records.write(pd.DataFrame([old, network]), tmp_path)
    rows = records.load(tmp_path).set_index("target")["memory_format"]
    assert rows["op"] == "contiguous"
    assert rows["resnet50"] == ""  # a network's format is its trial's: not known, not guessed
